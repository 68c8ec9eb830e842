"""The CVAT API test server driven by the real cvat-sdk, and our connection on top of it.

The server checks every JSON answer against cvat-sdk 2.80's models (strict
mode) and the sdk parses them again on its side, so these tests fail when
the server drifts from CVAT's schema. Failures (5xx, timeouts, 401/403,
server down, not a CVAT server) must reach the user as one line.
"""
from __future__ import annotations

import http.server
import threading
import time

import numpy as np
import pytest
import urllib3
from PIL import Image
from cvat_sdk import make_client, models
from cvat_sdk.api_client.exceptions import ApiException
from cvat_sdk.core.client import Client, Config
from cvat_sdk.core.uploading import DataUploader

from exporters import cvat_label
from annotator.core import skeleton as sk
from annotator.cvat.client import ENV_PASSWORD, ENV_TOKEN, ENV_URL, ENV_USER, connect, resolve_credentials
from annotator.core.errors import UserError
from annotator.core.model import OCCLUDED

from tests.conftest import MEDIA
from tests.cvat_fixtures import conn, server  # noqa: F401 (fixtures)
from tests.cvat_server import CvatTestServer
from tests.test_cvat_xml import assert_same_people, gt_frames

IMAGES = MEDIA / "images"
FIVE = ["openpifpaf_000000081988.jpg", "alphapose_demo_2.jpg", "openpose_COCO_val2014_000000000241.jpg",
        "openpose_COCO_val2014_000000000536.jpg", "openpose_COCO_val2014_000000000294.jpg"]


def sdk_client(server, tmp_path, user="alice", password="alice-pw") -> Client:
    c = Client(server.url, config=Config(cache_dir=tmp_path / "sdk-cache", status_check_period=0.01))
    c.login((user, password))
    return c


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


# -- auth and versions ---------------------------------------------------------------------------
def test_sdk_logs_in_by_password_and_parses_the_answers(server):
    with make_client(server.url, credentials=("alice", "alice-pw")) as c:     # includes sdk's version check
        assert str(c.get_server_version()) == "2.80.0"
        assert c.users.retrieve_current_user().username == "alice"
        assert "sessionid" in c.api_client.cookies and "csrftoken" in c.api_client.cookies
        p = c.projects.create(models.ProjectWriteRequest(name="by-session"))      # POST passes the CSRF check
        assert p.owner.username == "alice"


def test_sdk_logs_in_by_access_token_legacy_key_and_basic_auth(server):
    pat = server.issue_token("alice")
    with make_client(server.url, access_token=pat) as c:
        assert c.users.retrieve_current_user().username == "alice"
    with Client(server.url) as c:
        c.api_client.configuration.api_key["tokenAuth"] = server.legacy_key("alice")
        c.api_client.configuration.api_key_prefix["tokenAuth"] = "Token"
        assert c.users.retrieve_current_user().username == "alice"
    with Client(server.url) as c:                                  # HTTP basic auth
        c.api_client.configuration.username, c.api_client.configuration.password = "alice", "alice-pw"
        assert c.users.retrieve_current_user().username == "alice"
        c.api_client.configuration.password = "wrong"
        with pytest.raises(ApiException) as e:
            c.users.retrieve_current_user()
        assert e.value.status == 401
    with make_client(server.url, access_token="not-a-token") as c:
        with pytest.raises(ApiException) as e:
            c.users.retrieve_current_user()
        assert e.value.status == 401


def test_session_without_csrf_token_is_refused(server):
    http = urllib3.PoolManager()
    r = http.request("POST", server.url + "/api/auth/login", json={"username": "alice", "password": "alice-pw"})
    sid = r.headers.getlist("Set-Cookie")[0].split(";")[0]
    r = http.request("POST", server.url + "/api/projects", json={"name": "x"}, headers={"Cookie": sid})
    assert r.status == 403 and b"CSRF" in r.data
    assert http.request("GET", server.url + "/api/projects", headers={"Cookie": sid}).status == 200


def test_old_server_breaks_the_sdk_version_check_but_connect_works(tmp_path):
    with CvatTestServer(version="2.23.1") as old:
        old.add_user("alice", "alice-pw")
        # the failure users hit with sdk 2.80 against CVAT 2.23, reproduced
        with pytest.raises(TypeError, match="logo_url"):
            make_client(old.url, credentials=("alice", "alice-pw"))
        c = connect(old.url, "alice", "alice-pw", env={}, cache_dir=tmp_path)
        assert (c.server_version, c.user, c.auth) == ("2.23.1", "alice", "password")
        # old servers have no personal access tokens: the key login hands out is the token
        c2 = connect(old.url, token=old.legacy_key("alice"), env={})
        assert (c2.user, c2.auth) == ("alice", "legacy-token")
        assert not old.pats_supported
        # and the data path works on it
        project, lmap, diffs, created = c.ensure_project("old-server poses")
        assert created and diffs == []
        task = c.create_task("t", [IMAGES / FIVE[0]], project_id=project["id"])
        assert task["size"] == 1


def test_connect_by_token_on_new_server_uses_a_personal_access_token(server):
    c = connect(server.url, token=server.issue_token("alice"), env={})
    assert (c.user, c.auth, c.server_version) == ("alice", "token", "2.80.0")
    c = connect(server.url, token=server.legacy_key("alice"), env={})     # a legacy key still works
    assert (c.user, c.auth) == ("alice", "legacy-token")


def test_credentials_from_env_and_errors_without_them(server, monkeypatch):
    env = {ENV_URL: server.url, ENV_USER: "alice", ENV_PASSWORD: "alice-pw"}
    c = connect(env=env)
    assert c.user == "alice" and c.url == server.url
    c = connect(env={ENV_URL: server.url, ENV_TOKEN: server.issue_token("alice")})
    assert c.auth == "token"
    with pytest.raises(UserError, match="no CVAT server URL"):
        connect(env={})
    with pytest.raises(UserError, match="no CVAT credentials") as e:
        connect(server.url, env={}, interactive=False)
    one_line(e)
    with pytest.raises(UserError, match="no CVAT password"):
        resolve_credentials("alice", env={}, interactive=False)
    # a prompt when interactive
    monkeypatch.setattr("builtins.input", lambda prompt: "alice")
    monkeypatch.setattr("getpass.getpass", lambda prompt: "alice-pw")
    assert connect(server.url, env={}, interactive=True).user == "alice"


def test_the_password_is_not_kept(server):
    secret = "s3cret-Passw0rd!"
    server.add_user("carol", secret)
    c = connect(server.url, "carol", secret, env={})
    cfg = c.client.api_client.configuration
    assert secret not in repr(vars(c)) and secret not in repr(c)
    assert cfg.password is None and secret not in repr(cfg.api_key)


# -- projects, labels, tasks -----------------------------------------------------------------------
def test_project_with_the_skeleton_label(server, tmp_path):
    c = sdk_client(server, tmp_path)
    p = c.projects.create(models.ProjectWriteRequest(name="poses", labels=[cvat_label.label_spec()]))
    (label,) = p.get_labels()                      # sdk models: Label with Sublabel/Attribute inside
    assert label.name == "person" and label.type == "skeleton" and len(label.sublabels) == 33
    assert [s.name for s in label.sublabels] == list(sk.NAMES)
    for s in label.sublabels:                      # the server rewrote names into ids, as CVAT does
        assert f'data-label-id="{s.id}"' in label.svg
        assert [a.name for a in s.attributes] == ["confidence", "provenance"]
        assert s.attributes[0].values == ["-1", "100", "1"] and s.attributes[1].values == [""]
    assert "data-label-name" not in label.svg
    as_json = label.to_dict()
    assert cvat_label.diff_label(as_json) == []
    lmap = cvat_label.LabelMap.from_labels([as_json])
    assert lmap.label_id == label.id and set(lmap.sub_id) == set(sk.NAMES)
    assert all(set(a) == {"confidence", "provenance"} for a in lmap.attr_id.values())


def test_a_different_server_label_is_reported_not_modified(conn):
    spec = cvat_label.label_spec()
    spec["sublabels"] = [s for s in spec["sublabels"] if s["name"] != "left_heel"]
    spec["sublabels"][0]["attributes"] = spec["sublabels"][0]["attributes"][1:]     # nose: no confidence
    spec["svg"] = spec["svg"].replace('data-node-from="28" data-node-to="32"', 'data-node-from="28" data-node-to="1"')
    made = conn.call("POST", "/api/projects", body={"name": "hand-made", "labels": [spec]})
    before = conn.project_labels(made["id"])
    with pytest.raises(UserError, match="lacks points left_heel"):
        conn.ensure_project("hand-made")
    diffs = cvat_label.diff_label(cvat_label.find_label(before))
    assert "point 'left_heel' missing" in diffs
    assert "point 'nose': attribute 'confidence' missing" in diffs
    assert "edge left_ankle-left_heel missing" in diffs and "edge left_foot_index-left_heel missing" in diffs
    assert "edge left_ankle-left_foot_index missing" in diffs and "unexpected edge left_ankle-nose" in diffs
    assert conn.project_labels(made["id"]) == before           # untouched
    # a label that only lacks an attribute is usable: reported, not modified
    spec2 = cvat_label.label_spec()
    spec2["sublabels"][0]["attributes"] = []
    conn.call("POST", "/api/projects", body={"name": "almost", "labels": [spec2]})
    _, lmap, diffs, created = conn.ensure_project("almost")
    assert not created and diffs == ["point 'nose': attribute 'confidence' missing",
                                     "point 'nose': attribute 'provenance' missing"]
    assert lmap.attr_id[lmap.sub_id["nose"]] == {}


def test_ensure_project_creates_once_and_needs_the_label(conn):
    p1, _, diffs, created = conn.ensure_project("pose team")
    p2, _, _, created2 = conn.ensure_project("pose team")
    assert created and not created2 and p1["id"] == p2["id"] and diffs == []
    assert len(conn.paginate("/api/projects")) == 1
    conn.call("POST", "/api/projects", body={"name": "boxes", "labels": [{"name": "car", "type": "rectangle"}]})
    with pytest.raises(UserError, match="has no skeleton label 'person'"):
        conn.ensure_project("boxes")
    _, lmap, diffs, _ = conn.ensure_project("boxes", add_missing_label=True)
    assert diffs == [] and len(conn.project_labels(p1["id"])) == 1


def test_create_task_from_real_images(conn, server, tmp_path):
    project, _, _, _ = conn.ensure_project("poses")
    files = [IMAGES / n for n in FIVE]
    seen = []
    task = conn.create_task("batch-1", files, project_id=project["id"], segment_size=2,
                            progress=lambda what, done, total: seen.append((what, done, total)))
    assert task["size"] == 5 and task["project_id"] == project["id"] and task["mode"] == "annotation"
    total = sum(f.stat().st_size for f in files)
    assert seen[0] == ("upload", 0, total) and seen[-1] == ("upload", total, total)
    frames = conn.task_frames(task["id"])
    assert [f["name"] for f in frames] == FIVE                # our order, not sorted
    for f, path in zip(frames, files):
        with Image.open(path) as im:
            assert (f["width"], f["height"]) == im.size
    jobs = conn.list_jobs(task["id"])
    assert [(j["start_frame"], j["stop_frame"]) for j in jobs] == [(0, 1), (2, 3), (4, 4)]
    assert all((j["state"], j["stage"], j["status"], j["assignee"]) == ("new", "annotation", "annotation", None)
               for j in jobs)
    with Image.open(__import__("io").BytesIO(conn.frame_bytes(task["id"], 3))) as im:
        assert im.size == Image.open(files[3]).size
    # the same through the sdk's own models and its chunk-based dataset reader
    c = sdk_client(server, tmp_path)
    t = c.tasks.retrieve(task["id"])
    assert t.size == 5 and [j.id for j in t.get_jobs()] == [j["id"] for j in jobs]
    from cvat_sdk.datasets import TaskDataset
    ds = TaskDataset(c, task["id"], load_annotations=True)
    assert [s.frame_name for s in ds.samples] == FIVE
    assert ds.samples[2].media.load_image().size == Image.open(files[2]).size


def test_sdk_create_from_data_and_tus_uploads(server, tmp_path):
    c = sdk_client(server, tmp_path)
    p = c.projects.create(models.ProjectWriteRequest(name="p", labels=[cvat_label.label_spec()]))
    files = [IMAGES / n for n in FIVE[:3]]
    t = c.tasks.create_from_data(models.TaskWriteRequest(name="t", project_id=p.id), files)
    assert [f.name for f in t.get_meta().frames] == sorted(FIVE[:3])      # CVAT's default: lexicographic
    assert len(t.get_jobs()) == 1
    # files bigger than a request go through TUS (resumable chunks)
    t2 = c.tasks.create(models.TaskWriteRequest(name="t2", project_id=p.id))
    url = c.api_map.make_endpoint_url("/api/tasks/{id}/data/", kwsub={"id": t2.id})
    r = DataUploader(c, max_request_size=1).upload_files(url, files, image_quality=80, sorting_method="natural")
    c.wait_for_completion(__import__("json").loads(r.data)["rq_id"], status_check_period=0.01)
    assert len(server.requests_to(f"/api/tasks/{t2.id}/data/", "PATCH")) == 3
    assert c.tasks.retrieve(t2.id).size == 3


@pytest.mark.parametrize("requests_api", [True, False])
def test_waits_for_background_processing(requests_api):
    """Task creation is polled until done: /api/requests, or the task status endpoint before it existed."""
    with CvatTestServer(processing_polls=2, requests_api=requests_api) as s:
        s.add_user("alice", "alice-pw")
        c = connect(s.url, "alice", "alice-pw", env={})
        project, _, _, _ = c.ensure_project("p")
        task = c.create_task("t", [IMAGES / FIVE[1]], project_id=project["id"], poll_interval=0.01)
        assert task["size"] == 1 and len(c.list_jobs(task["id"])) == 1
        polled = s.requests_to("/api/requests/") + s.requests_to(f"/api/tasks/{task['id']}/status")
        assert [code for _, _, code in polled] == ([200, 200, 200] if requests_api else [404, 200, 200, 200])


def test_exif_rotated_photo_gets_rotated_frame_size(conn, tmp_path):
    src = Image.open(IMAGES / FIVE[0])
    exif = src.getexif()
    exif[0x0112] = 6                                # "rotate 90 CW to display", as phones write it
    phone = tmp_path / "phone.jpg"
    src.save(phone, exif=exif)
    project, _, _, _ = conn.ensure_project("poses")
    task = conn.create_task("rotated", [phone], project_id=project["id"])
    (frame,) = conn.task_frames(task["id"])
    assert (frame["width"], frame["height"]) == (src.height, src.width)


def test_bad_upload_fails_the_background_request(conn, tmp_path):
    project, _, _, _ = conn.ensure_project("poses")
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("not an image")
    with pytest.raises(UserError, match="processing images of task .* failed: Couldn't read the image 'notes.jpg'") as e:
        conn.create_task("bad", [bogus], project_id=project["id"])
    one_line(e)
    with pytest.raises(UserError, match="same file name"):
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / FIVE[0]).write_bytes((IMAGES / FIVE[0]).read_bytes())
        conn.create_task("dup", [IMAGES / FIVE[0], tmp_path / "sub" / FIVE[0]], project_id=project["id"])


# -- annotations ---------------------------------------------------------------------------------
@pytest.fixture
def gt_task(conn, gt_dev):
    """A task of 4 real GT photos (2 jobs) and their people as Persons, per frame."""
    frames = gt_frames(gt_dev, 4)
    project, lmap, _, _ = conn.ensure_project("gt")
    task = conn.create_task("gt", [f.meta_path for f in frames], project_id=project["id"], segment_size=2)
    return task, lmap, frames


def test_skeleton_annotations_round_trip(conn, server, gt_task, tmp_path):
    task, lmap, frames = gt_task
    jobs = conn.list_jobs(task["id"])
    for job in jobs:
        shapes = [cvat_label.person_to_shape(p, k, lmap) for k in range(job["start_frame"], job["stop_frame"] + 1)
                  for p in frames[k].persons]
        written = conn.put_job_annotations(job["id"], {"shapes": shapes})
        assert len(written["shapes"]) == len(shapes) and all(s["id"] for s in written["shapes"])
        assert all(len(s["elements"]) == 33 and all(e["id"] for e in s["elements"]) for s in written["shapes"])
    # read back through the sdk's models (schema check) ...
    c = sdk_client(server, tmp_path)
    sdk_ann = c.jobs.retrieve(jobs[0]["id"]).get_annotations()
    assert sdk_ann.version == 0 and sdk_ann.shapes[0].type.value == "skeleton"
    assert len(sdk_ann.shapes[0].elements) == 33 and sdk_ann.shapes[0].points == []
    # ... and as JSON into Persons: what we pushed is what we get
    ann = conn.get_task_annotations(task["id"])
    got: dict[int, list] = {}
    shapes = sorted(ann["shapes"], key=lambda s: s["id"])     # CVAT's order within a frame is not creation order
    for s in shapes:
        got.setdefault(s["frame"], []).append(cvat_label.shape_to_person(s, lmap))
    for k, f in enumerate(frames):
        assert_same_people(f.persons, got.get(k, []), xy_tol=1e-9)
    p = got[0][0]
    assert p.meta["cvat_source"] == "auto" and p.meta["cvat_id"] == shapes[0]["id"]


def test_patch_update_keeps_ids_and_touches_the_job(conn, gt_task):
    task, lmap, frames = gt_task
    job = conn.list_jobs(task["id"])[0]
    written = conn.patch_job_annotations(job["id"], "create",
                                         {"shapes": [cvat_label.person_to_shape(frames[0].persons[0], 0, lmap)]})
    (shape,) = written["shapes"]
    before = conn.get_job(job["id"])["updated_date"]
    time.sleep(0.002)
    person = cvat_label.shape_to_person(shape, lmap)
    person.xy[sk.INDEX["left_wrist"]] += (5.0, -3.0)
    person.vis[sk.INDEX["nose"]] = OCCLUDED
    upd = cvat_label.person_to_shape(person, 0, lmap, shape_id=shape["id"])
    for e_new, e_old in zip(upd["elements"], shape["elements"]):
        e_new["id"] = e_old["id"]
    conn.patch_job_annotations(job["id"], "update", {"shapes": [upd]})
    (now,) = conn.get_job_annotations(job["id"])["shapes"]
    assert now["id"] == shape["id"] and [e["id"] for e in now["elements"]] == [e["id"] for e in shape["elements"]]
    back = cvat_label.shape_to_person(now, lmap)
    assert back.vis[sk.INDEX["nose"]] == OCCLUDED
    assert np.allclose(back.xy[sk.INDEX["left_wrist"]], person.xy[sk.INDEX["left_wrist"]])
    after = conn.get_job(job["id"])["updated_date"]
    assert after > before                       # CVAT's change signal (its `version` stays 0)
    assert conn.get_job_annotations(job["id"])["version"] == 0
    conn.patch_job_annotations(job["id"], "delete", {"shapes": [now]})
    assert conn.get_job_annotations(job["id"])["shapes"] == []


def test_version_counter_knob(tmp_path, gt_dev):
    """CVAT 2.x always answers version 0; count_versions=True makes the server count changes instead."""
    with CvatTestServer(count_versions=True) as s:
        s.add_user("alice", "alice-pw")
        c = connect(s.url, "alice", "alice-pw", env={})
        frames = gt_frames(gt_dev, 1)
        project, lmap, _, _ = c.ensure_project("v")
        task = c.create_task("v", [frames[0].meta_path], project_id=project["id"])
        job = c.list_jobs(task["id"])[0]
        assert c.get_job_annotations(job["id"])["version"] == 0
        shape = cvat_label.person_to_shape(frames[0].persons[0], 0, lmap)
        assert c.put_job_annotations(job["id"], {"shapes": [shape]})["version"] == 1
        c.patch_job_annotations(job["id"], "delete", c.get_job_annotations(job["id"]))
        assert c.get_job_annotations(job["id"])["version"] == 2
        assert c.get_task_annotations(task["id"])["version"] == 2


def test_missing_attributes_come_back_with_defaults(conn, gt_task):
    task, lmap, frames = gt_task
    job = conn.list_jobs(task["id"])[0]
    shape = cvat_label.person_to_shape(frames[0].persons[0], 0, lmap)
    for e in shape["elements"]:
        e["attributes"] = []                      # as a CVAT user drawing by hand would leave them
    conn.put_job_annotations(job["id"], {"shapes": [shape]})
    (s,) = conn.get_job_annotations(job["id"])["shapes"]
    assert all(sorted(a["value"] for a in e["attributes"]) == ["", "-1"] for e in s["elements"])
    p = cvat_label.shape_to_person(s, lmap)
    assert np.isnan(p.conf).all() and p.source == [""] * 33


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.update(label_id=9999), "label_id `9999` is invalid"),
    (lambda s: s["elements"][0].update(label_id=s["label_id"]), "not a sublabel"),
    (lambda s: s["elements"][0]["attributes"].append({"spec_id": 123456, "value": "1"}), "spec_id `123456`"),
    (lambda s: s.update(frame=3), "outside the frame range"),
    (lambda s: s["elements"].__setitem__(1, dict(s["elements"][0])), "two elements"),
    (lambda s: s.update(type="hexagon"), "not a valid choice"),
    (lambda s: s["elements"][0].update(points=[1.0]), "exactly one point"),
])
def test_invalid_annotations_are_refused_like_cvat(conn, server, gt_task, mutate, message):
    task, lmap, frames = gt_task
    job = conn.list_jobs(task["id"])[0]
    shape = cvat_label.person_to_shape(frames[0].persons[0], 0, lmap)
    mutate(shape)
    with pytest.raises(UserError, match="refused writing annotations of job") as e:
        conn.put_job_annotations(job["id"], {"shapes": [shape]})
    assert "(HTTP 400)" in one_line(e) and message in str(e.value)
    assert conn.get_job_annotations(job["id"])["shapes"] == []


def test_job_stage_and_state(conn, server, gt_task, tmp_path):
    task, _, _ = gt_task
    job = conn.list_jobs(task["id"])[0]
    bob = server.add_user("bob", "bob-pw", role="worker")
    j = conn.update_job(job["id"], state="in progress", assignee_id=bob.id)
    assert (j["state"], j["stage"], j["status"], j["assignee"]["username"]) == ("in progress", "annotation",
                                                                                "annotation", "bob")
    j = conn.update_job(job["id"], stage="validation")
    assert (j["state"], j["status"]) == ("new", "validation")        # a new stage starts as new, like CVAT
    c = sdk_client(server, tmp_path)
    sj = c.jobs.retrieve(job["id"])
    sj.update(models.PatchedJobWriteRequest(stage="acceptance", state="completed"))
    assert (sj.stage.value if hasattr(sj.stage, "value") else sj.stage) == "acceptance"
    assert conn.get_job(job["id"])["status"] == "completed"
    # the assignee sees their job (and only works on it)
    as_bob = connect(server.url, "bob", "bob-pw", env={})
    assert [x["id"] for x in as_bob.list_jobs(task["id"])] == [job["id"]]
    with pytest.raises(UserError, match=r"refused updating job .*HTTP 400.*not a valid choice"):
        conn.update_job(job["id"], stage="done")


# -- failures ------------------------------------------------------------------------------------
def test_transient_5xx_on_reads_is_retried(conn, server):
    server.fail_next(2, 503, method="GET", path="/api/tasks")
    assert conn.list_tasks() == []
    assert [s for _, _, s in server.requests_to("/api/tasks", "GET")] == [503, 503, 200]


def test_persistent_5xx_is_one_line_after_retries(conn, server):
    server.fail_next(10, 500, path="/api/projects")
    with pytest.raises(UserError) as e:
        conn.find_project("x")
    msg = one_line(e)
    assert "failed with HTTP 500" in msg and "after 3 tries" in msg and "looking up project 'x'" in msg
    assert len(server.requests_to("/api/projects")) == 3


def test_non_idempotent_calls_are_not_replayed(conn, server, gt_task):
    task, lmap, frames = gt_task
    job = conn.list_jobs(task["id"])[0]
    server.fail_next(1, 502, method="PATCH")
    with pytest.raises(UserError, match="failed with HTTP 502 while create annotations in job") as e:
        conn.patch_job_annotations(job["id"], "create",
                                   {"shapes": [cvat_label.person_to_shape(frames[0].persons[0], 0, lmap)]})
    assert "tries" not in one_line(e)
    assert len(server.requests_to(f"/api/jobs/{job['id']}/annotations", "PATCH")) == 1
    assert conn.get_job_annotations(job["id"])["shapes"] == []


def test_timeout(server):
    server.delay = 1.0
    t0 = time.monotonic()
    with pytest.raises(UserError) as e:
        connect(server.url, "alice", "alice-pw", env={}, timeout=0.2, retries=1, backoff=0.01)
    assert "did not answer within 0.2 s while reading the server version" in one_line(e)
    assert time.monotonic() - t0 < 5


def test_timeout_on_a_slow_endpoint_after_connecting(conn, server):
    conn_fast = connect(server.url, "alice", "alice-pw", env={}, timeout=0.3, retries=0)
    server.delay, server.delay_path = 1.0, "/api/tasks"
    with pytest.raises(UserError, match=r"did not answer within 0.3 s while listing tasks \(timeout\)") as e:
        conn_fast.list_tasks()
    one_line(e)


def test_bad_password_and_revoked_user_are_401(server, conn):
    with pytest.raises(UserError, match="rejected user 'alice' or the password") as e:
        connect(server.url, "alice", "wrong", env={})
    one_line(e)
    with pytest.raises(UserError, match="rejected the access token"):
        connect(server.url, token="nope", env={})
    server.set_user_status("alice", "unauthorized")          # e.g. deactivated while logged in
    with pytest.raises(UserError, match=r"did not accept the credentials \(401\) while listing tasks") as e:
        conn.list_tasks()
    one_line(e)


def test_no_permission_is_403(server, conn):
    server.add_user("wendy", "wendy-pw", role="worker")
    worker = connect(server.url, "wendy", "wendy-pw", env={})
    with pytest.raises(UserError, match=r"no permission for creating project 'team' on CVAT .* \(403\)") as e:
        worker.ensure_project("team")
    one_line(e)
    project, _, _, _ = conn.ensure_project("alice's")
    with pytest.raises(UserError, match=r"no permission for reading labels of project \d+ .*\(403\)"):
        worker.project_labels(project["id"])
    server.set_user_status("alice", "forbidden")
    with pytest.raises(UserError, match="no permission for listing tasks"):
        conn.list_tasks()


def test_server_down(conn, server):
    assert conn.list_tasks() == []                # a pooled keep-alive connection exists now
    server.stop()
    with pytest.raises(UserError) as e:
        conn.list_tasks()
    assert "connection refused (is the server running?)" in one_line(e)
    with pytest.raises(UserError, match="connection refused"):
        connect(server.url, "alice", "alice-pw", env={}, retries=0)
    server.start()                                # back on the same port: the connection recovers
    assert conn.list_tasks() == []


def test_not_a_cvat_server():
    class Plain(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>hello</html>"
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(UserError, match="does not look like a CVAT server") as e:
            connect(f"http://127.0.0.1:{httpd.server_address[1]}", "a", "b", env={})
        one_line(e)
    finally:
        httpd.shutdown()
        httpd.server_close()
    with pytest.raises(UserError, match="not a usable CVAT URL"):
        connect("ftp://example.invalid", "a", "b", env={})

"""CVAT conflicts in the app's headless state: a real conflict (test CVAT server, cvat-sdk edit, pull),
flagged, shown with the server's version, settled keep-local / take-server as undoable commands."""
from __future__ import annotations

import pytest

from annotator.core import skeleton as sk
from annotator.cvat.sync import status
from annotator.core.errors import UserError
from annotator.gui.conflicts import ghost_segments
from annotator.gui.state import AppState
from annotator.core.project import Project

from tests.test_cvat_sync import _conflict_setup, creds, cvat, element, server, server_shapes  # noqa: F401 (fixture)

pytestmark = pytest.mark.needs_data
ELBOW = sk.INDEX["left_elbow"]


def elbow(proj, pid):
    return tuple(float(v) for v in proj.store.load_person(pid).xy[ELBOW])


def test_conflict_flagged_shown_and_settled_undoably(server, tmp_path, gt_dev, capsys):
    root, pid, shape, lmap = _conflict_setup(server, tmp_path, gt_dev, capsys)
    assert cvat("cvat", "pull", root, *creds(server), capsys=capsys)[0] == 0
    proj = Project.open(root)
    try:
        st = AppState(proj, annotator="me", prefetch=0, background_queue=False, user_config=tmp_path / "none.toml")
        image = proj.store.person_image(pid)
        assert st.conflicts.images() == [image]
        other = next(r[0] for r in proj.store.db.execute("SELECT id FROM images WHERE id!=?", (image,)))
        st.show(other)
        assert st.conflicts_here() == []
        with pytest.raises(UserError, match="no CVAT conflict"):
            st.conflict_target()
        assert st.next_conflict() and st.image_id == image
        assert st.sel_person == pid                               # the person in conflict is selected
        (c,) = st.conflicts_here()
        assert c.kind == "changed on both sides" and c.cvat_user == "bob" and not c.local_deleted
        assert tuple(c.server.xy[ELBOW]) == (1.0, 2.0) and elbow(proj, pid) == (3.0, 4.0)
        # the ghost is dashed: more segments than drawn edges
        vis = c.server.vis > 0
        n_edges = sum(1 for a, b in sk.EDGES if vis[a] and vis[b])
        assert len(ghost_segments(c.server.xy * 4, vis, sk.EDGES)) > n_edges

        # take server (its key), then undo brings back ours AND the conflict, redo settles it again
        assert st.on_key("s", {"alt"}) == "conflict_take_server"
        assert elbow(proj, pid) == (1.0, 2.0) and st.conflicts.images() == []
        assert proj.store.history(pid, 1)[0]["command"] == "cvat_pull"
        st.undo()
        assert elbow(proj, pid) == (3.0, 4.0) and [x["person_id"] for x in status(proj)["conflicts"]] == [pid]
        st.redo()
        assert elbow(proj, pid) == (1.0, 2.0) and not status(proj)["conflicts"]
        st.undo()
        assert status(proj)["conflicts"] and status(proj)["pending"]["update"] == 0   # conflicted: never pushed

        # keep local: logged as its own command, undoable, and the next push sends ours
        st.resolve_conflict("local")
        assert elbow(proj, pid) == (3.0, 4.0) and not status(proj)["conflicts"]
        assert proj.store.history(pid, 1)[0]["command"] == "cvat_keep_local"
        assert status(proj)["pending"]["update"] == 1
        st.undo()
        assert status(proj)["conflicts"] and status(proj)["pending"]["update"] == 0
        st.redo()
        assert not status(proj)["conflicts"]
        st.close()
    finally:
        proj.close()
    rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    s = next(s for s in server_shapes(server) if s["id"] == shape["id"])
    assert element(s, lmap, "left_elbow")["points"] == [3.0, 4.0]

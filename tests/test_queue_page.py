"""image_queue's two-step first page gives exactly the order of one aggregate over every image."""
from __future__ import annotations

import time

import numpy as np

from annotator.core.project import Project
from annotator.review.queue import _reference_image_queue, image_queue
from tests.gui_project import DEMO_IMAGES


def test_first_page_equals_the_single_aggregate(tmp_path):
    """Mixed project: no people, verified people, deleted people, NULL conf/suspicion, failed images,
    all review states; every page size (across the positive/zero-gain boundary) and every filter."""
    proj, _ = Project.create(tmp_path / "p", [DEMO_IMAGES])
    rng = np.random.default_rng(1)
    now = time.time()
    with proj:
        st = proj.store
        src = st.db.execute("SELECT source_id FROM images LIMIT 1").fetchone()[0]
        with st.tx():
            st.db.executemany("INSERT INTO images(source_id, file_name, width, height, status, review_state)"
                              " VALUES(?,?,640,480,?,?)",
                              [(src, f"s/{k}.jpg", "failed" if k % 17 == 0 else "done",
                                ("to_review", "in_progress", "verified")[k % 3]) for k in range(300)])
            ids = [r[0] for r in st.db.execute("SELECT id FROM images")]
            for iid in rng.choice(ids, 120, replace=False):
                for _ in range(int(rng.integers(1, 4))):
                    pid = st.db.execute("INSERT INTO persons(image_id, created_at, deleted) VALUES(?,?,?)",
                                        (int(iid), now, int(rng.random() < 0.1))).lastrowid
                    kind = rng.integers(4)        # 0 all verified, 1 conf only, 2 suspicion, 3 NULLs / exact 1.0
                    rows = []
                    for i in range(33):
                        conf = None if kind == 3 and i % 2 else float(rng.uniform(0, 1)) if kind != 3 else 1.0
                        sus = float(rng.uniform(0, 1)) if kind == 2 else None
                        rows.append((pid, i, 1.0, 1.0, 2, conf, int(kind == 0 or rng.random() < 0.2), "t", now, sus))
                    st.db.executemany("INSERT INTO points(person_id, idx, x, y, vis, conf, verified, source,"
                                      " updated_at, suspicion) VALUES(?,?,?,?,?,?,?,?,?,?)", rows)
            # expected missed people (review/missing.py) on some images, with and without people;
            # a few of them confirmed complete by a human (their missing term is 0)
            for k, iid in enumerate(rng.choice(ids, 60, replace=False)):
                st.db.execute("INSERT INTO kv(key, value) VALUES(?, ?)",
                              (f"review.missing:{iid}", str(round(float(rng.uniform(0, 0.5)) * (k % 4 != 0), 4))))
                if k % 7 == 0:
                    st.db.execute("INSERT INTO kv(key, value) VALUES(?, ?)",
                                  (f"review.people_confirmed:{iid}", '{"by": "annotator:t"}'))
        for states in (("to_review", "in_progress"), ("to_review",), ("verified",),
                       ("to_review", "in_progress", "verified")):
            full = _reference_image_queue(st, states)
            assert any(r[2] == 0 for r in full) and any(r[2] > 0 for r in full)
            for n in (1, 7, 40, 80, 150, len(full), len(full) + 50):
                got = [(it.image_id, it.file_name, it.score, it.top, it.review_state, it.n_unverified)
                       for it in image_queue(st, states, limit=n)]
                assert got == [tuple(r) for r in full[:n]], (states, n)

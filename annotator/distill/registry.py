"""Distillation rounds stored in the project: which round produced which model, and how it did.

Own tables beside the store's schema (created idempotently, never migrated by
store.py): `distill_rounds` (one row per round: status, model file + sha256,
and a JSON record of counts, thresholds, training curve, gold metrics, times,
reason) and `distill_split` (each verified image's frozen train/gold
assignment). Model files live in PROJECT/models/round-K.pt. Needs no torch.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from annotator.core.errors import UserError

_TABLES = (
    """CREATE TABLE IF NOT EXISTS distill_rounds (
        k INTEGER PRIMARY KEY,
        status TEXT NOT NULL,               -- running, interrupted, accepted, rejected, failed
        stage TEXT,                         -- last finished stage of a running/interrupted round
        teacher TEXT NOT NULL,              -- 'mediapipe' or 'round J'
        mode TEXT NOT NULL,
        model_path TEXT, model_sha256 TEXT, -- relative to the project folder
        started_at REAL NOT NULL, finished_at REAL,
        reason TEXT,
        record TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE IF NOT EXISTS distill_split (
        image_id INTEGER PRIMARY KEY REFERENCES images(id),
        split TEXT NOT NULL CHECK (split IN ('gold', 'train')),
        assigned_at REAL NOT NULL,
        assigned_round INTEGER
    )""",
)


def ensure_tables(store) -> None:
    with store.tx():
        for t in _TABLES:
            store.db.execute(t)


def _readable(store) -> bool:
    """Whether the round tables can be read: created if missing, except through a read-only
    connection (the web viewer), where missing tables mean no rounds yet."""
    if getattr(store, "readonly", False):
        return store.db.execute("SELECT 1 FROM sqlite_master WHERE name='distill_rounds'").fetchone() is not None
    ensure_tables(store)
    return True


def model_name(k: int) -> str:
    """Provenance of points a round's student predicted."""
    return f"round {k}"


def model_file(project, k: int) -> Path:
    return Path(project.root) / "models" / f"round-{k}.pt"


def _row(r) -> dict:
    keys = ("k", "status", "stage", "teacher", "mode", "model_path", "model_sha256", "started_at",
            "finished_at", "reason", "record")
    d = dict(zip(keys, r))
    d["record"] = json.loads(d["record"] or "{}")
    return d


_COLS = "k, status, stage, teacher, mode, model_path, model_sha256, started_at, finished_at, reason, record"


def rounds(store) -> list[dict]:
    if not _readable(store):
        return []
    return [_row(r) for r in store.db.execute(f"SELECT {_COLS} FROM distill_rounds ORDER BY k")]


def get_round(store, k: int) -> dict | None:
    if not _readable(store):
        return None
    r = store.db.execute(f"SELECT {_COLS} FROM distill_rounds WHERE k=?", (int(k),)).fetchone()
    return None if r is None else _row(r)


def latest_accepted(store) -> dict | None:
    if not _readable(store):
        return None
    r = store.db.execute(f"SELECT {_COLS} FROM distill_rounds WHERE status='accepted' ORDER BY k DESC LIMIT 1"
                         ).fetchone()
    return None if r is None else _row(r)


def unfinished(store) -> dict | None:
    """A round that started and did not end (crash, Ctrl+C): the next run resumes it."""
    if not _readable(store):
        return None
    r = store.db.execute(f"SELECT {_COLS} FROM distill_rounds WHERE status IN ('running', 'interrupted')"
                         " ORDER BY k DESC LIMIT 1").fetchone()
    return None if r is None else _row(r)


def start_round(store, k: int, teacher: str, mode: str, record: dict) -> None:
    ensure_tables(store)
    with store.tx():
        store.db.execute("INSERT INTO distill_rounds(k, status, stage, teacher, mode, started_at, record)"
                         " VALUES(?, 'running', NULL, ?, ?, ?, ?)",
                         (int(k), teacher, mode, time.time(), json.dumps(record)))


def update_round(store, k: int, **fields) -> None:
    """Set columns (record is merged into the stored one, not replaced)."""
    cur = get_round(store, k)
    if cur is None:
        raise KeyError(f"no round {k}")
    if "record" in fields:
        fields["record"] = json.dumps({**cur["record"], **fields["record"]}, default=_json_default)
    cols = ", ".join(f"{c}=?" for c in fields)
    with store.tx():
        store.db.execute(f"UPDATE distill_rounds SET {cols} WHERE k=?", (*fields.values(), int(k)))


def _json_default(o):
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def next_k(store) -> int:
    ensure_tables(store)
    r = store.db.execute("SELECT max(k) FROM distill_rounds").fetchone()[0]
    return (r or 0) + 1


# -- gold split ---------------------------------------------------------------------------
def split(store) -> dict[int, str]:
    if not _readable(store):
        return {}
    return dict(store.db.execute("SELECT image_id, split FROM distill_split"))


def assign_split(store, image_ids, gold_fraction: float, k: int | None = None) -> dict[int, str]:
    """Give each not-yet-assigned image a frozen split; earlier assignments never change.

    The choice hashes the image's base file name (stable across machines,
    project folders and reruns), so which images are gold does not depend on the order they
    were verified in.
    """
    import hashlib
    ensure_tables(store)
    known = split(store)
    new = []
    for iid in image_ids:
        if iid in known:
            continue
        name = Path(store.image(iid).file_name).name    # not the folder: same choice wherever the project is
        u = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        new.append((iid, "gold" if u < gold_fraction else "train", time.time(), k))
    if new:
        with store.tx():
            store.db.executemany("INSERT OR IGNORE INTO distill_split(image_id, split, assigned_at, assigned_round)"
                                 " VALUES(?,?,?,?)", new)
    return split(store)


# -- model lookup (pre-fill, app) ------------------------------------------------------------
def resolve_model(project, name: str) -> tuple[str, str]:
    """'round-K', 'round K', 'K' or 'latest' -> (student spec "path#sha256=...", provenance name).

    Only accepted rounds are offered: a rejected round's model did worse on gold.
    """
    store = project.store
    s = str(name).strip().lower()
    if s == "latest":
        r = latest_accepted(store)
        if r is None:
            raise UserError(f"{project.root}: no accepted distillation round yet (run pose-annotator distill)")
    else:
        num = s.replace("round", "").strip(" -_")
        if not num.isdigit():
            raise UserError(f"--model {name!r}: expected 'mediapipe', 'latest' or 'round-K'")
        r = get_round(store, int(num))
        if r is None:
            raise UserError(f"{project.root}: no distillation round {num}")
        if r["status"] != "accepted":
            raise UserError(f"round {num} was not accepted ({r['status']}: {r['reason'] or 'unfinished'})")
    return _spec(project, r)


def _spec(project, r: dict) -> tuple[str, str]:
    """(student spec, provenance name) of an accepted round's row; UserError if its file is gone."""
    path = Path(project.root) / r["model_path"]
    if not path.exists():
        raise UserError(f"{path}: model file of round {r['k']} is missing")
    from annotator.prefill.student_runtime import make_spec
    return make_spec(path, r["model_sha256"]), model_name(r["k"])


def project_model(project, name: str = "auto") -> tuple[str | None, str | None, str]:
    """The landmark model pre-fill should use: (student spec or None, provenance or None, a note).

    'auto' is what the app does by default: the latest accepted round when
    there is one and its runtime (the `train` extra) is installed, else
    MediaPipe's own network. 'mediapipe' forces the latter; anything else is
    resolved strictly (resolve_model).
    """
    s = str(name or "auto").strip().lower()
    if s == "mediapipe":
        return None, None, "MediaPipe's landmark network"
    if s != "auto":
        spec, prov = resolve_model(project, name)
        return spec, prov, prov
    r = latest_accepted(project.store)
    if r is None:
        return None, None, "MediaPipe's landmark network (no accepted distillation round)"
    try:
        import onnxruntime  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return None, None, (f"MediaPipe's landmark network: round {r['k']} is accepted but its runtime is not"
                            " installed (pip install .[train])")
    spec, prov = _spec(project, r)
    return spec, prov, f"{prov} (the latest accepted distillation round)"

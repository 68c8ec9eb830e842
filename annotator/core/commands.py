"""Every user action is a command on the core: logged, undoable, saved at once.

The GUI, the CLI, CVAT sync and the tests all call these methods; none of
them writes points directly. Each command computes the new state of the
persons it touches and hands (before, after) pairs to the store, which writes
them and the history entry in one transaction. Undo and redo are new history
entries that restore a previous state, so the log stays append-only and the
audit trail shows the undo too (the SLEAP command pattern, but persistent).
"""
from __future__ import annotations

import uuid
from typing import Callable

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.model import NOT_LABELLED, OCCLUDED, VISIBLE, Person
from annotator.core.store import KV_CROWD_REGIONS, Store

# kv key (+ image id) of the annotator's "nobody is missing here" check: {"by", "action"} or null.
KV_PEOPLE_CONFIRMED = "review.people_confirmed:"
# mark_crowd: a person is inside a crowd box when more than this share of its points is
CROWD_SHARE = 0.5


def people_confirmed(store: Store, image_id: int) -> dict | None:
    """Who confirmed that every person in the image is labelled (None: nobody has yet)."""
    return store.get_kv(f"{KV_PEOPLE_CONFIRMED}{image_id}")


def is_complete(store: Store, image_id: int) -> bool:
    """Complete = nobody missing (confirmed by a human) and every person fully verified."""
    return people_confirmed(store, image_id) is not None and not store.db.execute(
        "SELECT 1 FROM points p JOIN persons q ON q.id=p.person_id WHERE q.image_id=? AND q.deleted=0"
        " AND p.verified=0 LIMIT 1", (image_id,)).fetchone()


def complete_images(store: Store) -> set[int]:
    """Ids of the complete images (see is_complete), in one query."""
    n = len(KV_PEOPLE_CONFIRMED)
    confirmed = {int(k[n:]) for k, v in store.db.execute(
        "SELECT key, value FROM kv WHERE key LIKE ? AND value != 'null'", (KV_PEOPLE_CONFIRMED + "%",))}
    if not confirmed:
        return set()
    # unverified points only on the confirmed images (the app asks on every queue refresh: not a
    # scan of every point of a large project)
    open_ = {r[0] for r in store.db.execute(
        "SELECT DISTINCT q.image_id FROM points p JOIN persons q ON q.id=p.person_id"
        " WHERE q.deleted=0 AND p.verified=0 AND q.image_id IN (SELECT CAST(substr(key, ?) AS INTEGER)"
        " FROM kv WHERE key LIKE ? AND value != 'null')", (n + 1, KV_PEOPLE_CONFIRMED + "%"))}
    return confirmed - open_


class Session:
    """One annotator's editing session on a project store."""

    def __init__(self, store: Store, annotator: str = ""):
        self.store = store
        self.annotator = annotator or "anonymous"
        self.id = uuid.uuid4().hex[:12]
        self._undo: list[int] = []
        self._redo: list[int] = []
        self.listeners: list[Callable[[set[int]], None]] = []
        self._attached: dict[int, tuple[Callable[[], None], Callable[[], None]]] = {}

    @property
    def actor(self) -> str:
        return f"annotator:{self.annotator}"

    # -- plumbing ----------------------------------------------------------
    def _get(self, person_id: int) -> Person:
        p = self.store.load_person(person_id)
        if p is None:
            raise UserError(f"person {person_id} is deleted")
        return p

    def _commit(self, command: str, changes, args: dict | None = None, undoable: bool = True,
                actor: str | None = None, predicted: bool = False, **kw) -> tuple[int, list[int]]:
        aid, ids = self.store.apply_changes(changes, actor or self.actor, command, args, self.id,
                                            predicted=predicted, **kw)
        if undoable:
            self._undo.append(aid)
            self._redo.clear()
        images = {img for _, img, _, _ in changes} or ({args["image"]} if args and "image" in args else set())
        for img in images:
            self._update_review_state(img)
        for fn in self.listeners:
            fn(images)
        return aid, ids

    def _edit(self, command: str, person_id: int, fn: Callable[[Person], None], args: dict) -> int:
        before = self._get(person_id)
        after = before.copy()
        fn(after)
        img = self.store.person_image(person_id)
        return self._commit(command, [(person_id, img, before, after)], {"person": person_id, **args})[0]

    def _mark(self, p: Person, idx) -> None:
        """A point a human set is verified and carries that human's name."""
        for i in np.atleast_1d(idx):
            p.verified[i] = True
            p.source[i] = self.actor

    def _update_review_state(self, image_id: int) -> None:
        frame = self.store.load_frame(image_id)        # two queries for all its people, not two a person
        people = frame.persons
        if people and all(p.fully_verified for p in people):
            state = "verified"
        elif any(p.verified.any() for p in people) or self._edited_by_hand(image_id):
            state = "in_progress"
        else:
            state = "to_review"
        if frame.review_state != state:
            self.store.set_review_state(image_id, state)

    def _edited_by_hand(self, image_id: int) -> bool:
        """An annotator's edit of this image's people still stands (not undone, or redone as often as
        undone): undoing the only edit returns the image to "to review"."""
        rows = self.store.db.execute(
            "SELECT DISTINCT a.id, a.actor, a.undo_of, a.redo_of FROM changes c JOIN actions a ON a.id=c.action_id"
            " JOIN persons q ON q.id=c.person_id WHERE q.image_id=?", (image_id,)).fetchall()
        net: dict[int, int] = {}
        for aid, actor, undo_of, redo_of in rows:
            if undo_of is not None:
                net[undo_of] = net.get(undo_of, 0) - 1
            elif redo_of is not None:
                net[redo_of] = net.get(redo_of, 0) + 1
            elif actor.startswith("annotator:"):
                net[aid] = net.get(aid, 0) + 1
        by_hand = {aid for aid, actor, u, r in rows if u is None and r is None and actor.startswith("annotator:")}
        return any(net[aid] > 0 for aid in by_hand)

    # -- point edits ---------------------------------------------------------
    def move_point(self, person_id: int, idx: int, x: float, y: float) -> int:
        """Move one point (a point that was not labelled becomes visible)."""
        def f(p):
            p.xy[idx] = (x, y)
            if p.vis[idx] == NOT_LABELLED:
                p.vis[idx] = VISIBLE
            self._mark(p, idx)
        return self._edit("move_point", person_id, f, {"idx": idx, "x": x, "y": y})

    def set_point(self, person_id: int, idx: int, x: float | None = None, y: float | None = None,
                  vis: int | None = None) -> int:
        """Points-table edit: any of x, y, visibility."""
        if vis is not None and vis not in (NOT_LABELLED, OCCLUDED, VISIBLE):
            raise UserError(f"visibility must be 0, 1 or 2, not {vis}")

        def f(p):
            if x is not None:
                p.xy[idx, 0] = x
            if y is not None:
                p.xy[idx, 1] = y
            if vis is not None:
                p.vis[idx] = vis
            self._mark(p, idx)
        return self._edit("set_point", person_id, f, {"idx": idx, "x": x, "y": y, "vis": vis})

    def set_visibility(self, person_id: int, idx: int, vis: int) -> int:
        return self.set_point(person_id, idx, vis=vis)

    def cycle_visibility(self, person_id: int, idx: int) -> int:
        """visible -> occluded -> not labelled -> visible (one key in the GUI)."""
        cur = int(self._get(person_id).vis[idx])
        nxt = {VISIBLE: OCCLUDED, OCCLUDED: NOT_LABELLED, NOT_LABELLED: VISIBLE}[cur]
        return self.set_point(person_id, idx, vis=nxt)

    def move_person(self, person_id: int, dx: float, dy: float) -> int:
        """Translate all labelled points (explicit modifier-drag in the GUI, never by accident)."""
        def f(p):
            m = p.labelled
            p.xy[m] += (dx, dy)
            p.source = [self.actor if m[i] else s for i, s in enumerate(p.source)]
        return self._edit("move_person", person_id, f, {"dx": dx, "dy": dy})

    def swap_left_right(self, person_id: int) -> int:
        """Exchange left and right labels (the model's most common error)."""
        def f(p):
            q = p.flipped_lr()
            p.xy, p.vis, p.conf, p.suspicion = q.xy, q.vis, q.conf, q.suspicion
            p.verified = q.verified
            p.source = [self.actor if sk.FLIP[i] != i else s for i, s in enumerate(q.source)]
        return self._edit("swap_left_right", person_id, f, {})

    def verify_person(self, person_id: int) -> int:
        """The annotator accepts every point of this person as it is."""
        def f(p):
            todo = np.flatnonzero(~p.verified)
            self._mark(p, todo)
        return self._edit("verify_person", person_id, f, {})

    def unverify_person(self, person_id: int) -> int:
        def f(p):
            p.verified[:] = False
        return self._edit("unverify_person", person_id, f, {})

    def verify_image(self, image_id: int) -> int | None:
        changes = []
        for pid in self.store.person_ids(image_id):
            before = self._get(pid)
            if before.fully_verified:
                continue
            after = before.copy()
            self._mark(after, np.flatnonzero(~after.verified))
            changes.append((pid, image_id, before, after))
        if not changes:
            if not self.store.person_ids(image_id):   # an image verified as "nobody here": nobody is missing
                self.store.set_review_state(image_id, "verified")
                if people_confirmed(self.store, image_id) is None:
                    return self.confirm_people(image_id)
            return None
        return self._commit("verify_image", changes, {"image": image_id})[0]

    def log_action(self, command: str, args: dict) -> int:
        """An undoable action that changes no person (its other changes are attached to it)."""
        aid, _ = self.store.apply_changes([], self.actor, command, args, self.id)
        self._undo.append(aid)
        self._redo.clear()
        return aid

    def confirm_people(self, image_id: int, confirmed: bool = True) -> int:
        """The annotator looked for people the model missed and found none left: every person in
        the image is labelled. A logged, undoable command (no person changes; the check lives in
        the kv table), so `complete` survives a restart and the audit trail says who checked."""
        self.store.image(image_id)                    # KeyError for an unknown image
        key = f"{KV_PEOPLE_CONFIRMED}{image_id}"
        old = self.store.get_kv(key)
        with self.store.tx():
            aid, _ = self.store.apply_changes([], self.actor, "confirm_people" if confirmed else "unconfirm_people",
                                              {"image": image_id}, self.id)
            new = {"by": self.actor, "action": aid} if confirmed else None
            self.store.set_kv(key, new)
        self._undo.append(aid)
        self._redo.clear()
        self.attach(aid, lambda: self.store.set_kv(key, old), lambda: self.store.set_kv(key, new))
        for fn in self.listeners:
            fn({image_id})
        return aid

    # -- persons -------------------------------------------------------------
    def add_person(self, image_id: int, person: Person, source: str | None = None) -> int:
        """Add a person (from a template or a pre-fill inside a user-drawn box)."""
        p = person.copy()
        if source:
            p.source = [source] * sk.N
        _, ids = self._commit("add_person", [(None, image_id, None, p)], {"image": image_id})
        return ids[0]

    def delete_person(self, person_id: int) -> int:
        before = self._get(person_id)
        img = self.store.person_image(person_id)
        return self._commit("delete_person", [(person_id, img, before, None)], {"person": person_id})[0]

    def mark_crowd(self, image_id: int, box_xywh, min_share: float = CROWD_SHARE) -> tuple[int, list[int], list[int]]:
        """The box becomes one of the image's crowd regions (COCO iscrowd on export, so a model trained
        or scored on the export is not told nobody is there), and every person nobody has verified a
        point of with more than `min_share` of its points inside is deleted: ONE undoable command,
        (action id, ids deleted, verified ids kept).

        A crowd the dataset does not label person by person holds 10-20 pre-filled people on some
        photos, among the people it does label: fix and verify those, then one drag removes the rest
        instead of a delete each (SLEAP's "delete predictions" keeps user instances the same way)."""
        x, y, w, h = (float(v) for v in box_xywh)
        if not (w > 0 and h > 0):
            raise UserError(f"box {box_xywh}: width and height must be > 0")
        inside = [p for p in self.store.load_frame(image_id).persons if p.share_in_box((x, y, w, h)) > min_share]
        gone = [p for p in inside if not p.verified.any()]
        new = self.store.crowd_regions(image_id) + [[round(x, 2), round(y, 2), round(w, 2), round(h, 2)]]
        aid = self._set_crowd_regions(image_id, new, "mark_crowd", [(p.id, image_id, p, None) for p in gone],
                                      {"image": image_id, "box": [x, y, w, h], "persons": [p.id for p in gone]})
        return aid, [p.id for p in gone], [p.id for p in inside if p.verified.any()]

    def remove_crowd_region(self, image_id: int, index: int) -> int:
        """Crowd region `index` of the image is no longer one (marked by mistake, or the people
        there are to be labelled after all): one undoable command. The people the crowd box deleted
        stay deleted; undoing the mark_crowd brings them back."""
        old = self.store.crowd_regions(image_id)
        if not 0 <= int(index) < len(old):
            raise UserError(f"image {image_id} has {len(old)} crowd region(s): no region {index}")
        return self._set_crowd_regions(image_id, old[:int(index)] + old[int(index) + 1:], "remove_crowd_region", [],
                                       {"image": image_id, "box": old[int(index)]})

    def _set_crowd_regions(self, image_id: int, new: list, command: str, changes, args: dict) -> int:
        """The image's crowd regions become `new` with the command's person changes, in one
        transaction, and undo / redo put them back: the region is written first, so the listeners
        the commit calls see the people and the region."""
        key = f"{KV_CROWD_REGIONS}{image_id}"
        old = self.store.crowd_regions(image_id)
        with self.store.tx():
            self.store.set_kv(key, new)
            aid = self._commit(command, changes, args)[0]
        self.attach(aid, lambda: self.store.set_kv(key, old), lambda: self.store.set_kv(key, new))
        return aid

    def replace_person(self, person_id: int, after: Person, command: str = "replace_person",
                       args: dict | None = None) -> int:
        """Set a person's whole state (CVAT pull, conflict resolution)."""
        return self.replace_persons([(person_id, after)], command, {"person": person_id, **(args or {})})

    def replace_persons(self, afters: list[tuple[int, Person]], command: str = "replace_persons",
                        args: dict | None = None) -> int | None:
        """Several people's new states as ONE undoable command (propagation over video frames)."""
        changes = [(pid, self.store.person_image(pid), self._get(pid), after.copy()) for pid, after in afters]
        if not changes:
            return None
        return self._commit(command, changes, args)[0]

    def import_people(self, changes: list[tuple[int | None, int, Person]], args: dict | None = None) -> int | None:
        """People read from another file, as ONE undoable command: (person id, or None for a new
        person; image id; new state). One action, so an import lands whole or not at all."""
        full = [(pid, img, None if pid is None else self._get(pid), after.copy()) for pid, img, after in changes]
        if not full:
            return None
        return self._commit("import", full, args)[0]

    # -- model output ------------------------------------------------------------
    def set_predictions(self, image_id: int, persons: list[Person], model: str, undoable: bool = False) -> list[int]:
        """Replace the image's unverified people with a model's prediction.

        Images holding verified points are not touched here (pre-fill skips
        them); that rule is enforced again so no caller can overwrite a human.
        """
        if self.store.has_verified(image_id):
            raise UserError(f"image {image_id} has verified points; refusing to replace them with predictions")
        changes = [(pid, image_id, self._get(pid), None) for pid in self.store.person_ids(image_id)]
        for p in persons:
            q = p.copy()
            q.verified[:] = False
            q.source = [model] * sk.N
            changes.append((None, image_id, None, q))
        if not changes:
            return []
        _, ids = self._commit("predict", changes, {"image": image_id, "model": model}, undoable=undoable,
                              actor=f"model:{model}", predicted=True)
        return ids[len(changes) - len(persons):]

    def repredict_person(self, person_id: int, pred: Person, model: str) -> int | None:
        """A model's new guess for the points of this person that no human verified."""
        before = self._get(person_id)
        after = before.copy()
        todo = ~before.verified
        if not todo.any():
            return None
        after.xy[todo] = pred.xy[todo]
        after.vis[todo] = pred.vis[todo]
        after.conf[todo] = pred.conf[todo]
        after.suspicion[todo] = np.nan
        for i in np.flatnonzero(todo):
            after.source[i] = model
        img = self.store.person_image(person_id)
        return self._commit("repredict", [(person_id, img, before, after)], {"person": person_id, "model": model},
                            undoable=False, actor=f"model:{model}", predicted=True)[0]

    # -- undo / redo -------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def _restore(self, action_id: int, use_before: bool, **kw) -> int:
        a = self.store.action(action_id)
        changes = []
        for pid, before, after in a["changes"]:
            target = before if use_before else after
            current = self.store.load_person(pid)
            if current is not None and target is not None:
                target = target.copy()
                target.suspicion = current.suspicion
            changes.append((pid, self.store.person_image(pid), current, target))
        aid, _ = self.store.apply_changes(changes, self.actor, ("undo " if use_before else "redo ") + a["command"],
                                          {"of": action_id}, self.id, **kw)
        images = {img for _, img, _, _ in changes} or ({a["args"]["image"]} if "image" in a["args"] else set())
        for img in images:
            self._update_review_state(img)
        for fn in self.listeners:
            fn(images)
        return aid

    def attach(self, action_id: int, undo: Callable[[], None], redo: Callable[[], None]) -> None:
        """Changes to other tables that belong to a command (e.g. the CVAT sync rows a conflict
        resolution moved): run with its undo / redo, in the same transaction, so a crash never
        leaves the points undone and the rest not (or the other way round)."""
        self._attached[action_id] = (undo, redo)

    def undo(self) -> int | None:
        """Undo this session's last command; returns the undone action id."""
        if not self._undo:
            return None
        aid = self._replay(self._undo[-1], undo=True)
        self._redo.append(self._undo.pop())         # only once the transaction has committed
        return aid

    def redo(self) -> int | None:
        if not self._redo:
            return None
        aid = self._replay(self._redo[-1], undo=False)
        self._undo.append(self._redo.pop())
        return aid

    def _replay(self, aid: int, undo: bool) -> int:
        """The action's before (undo) or after (redo) state, and its attached changes, in one transaction."""
        with self.store.tx():
            if aid in self._attached:       # first: the listeners _restore calls see all of it
                self._attached[aid][0 if undo else 1]()
            self._restore(aid, use_before=undo, **({"undo_of": aid} if undo else {"redo_of": aid}))
        return aid

"""Our pre-fill as a cvat-sdk auto-annotation function, so CVAT tasks get 33-point skeletons.

    cvat-cli task auto-annotate TASK --function-module annotator.cvat.function
    cvat-cli task auto-annotate TASK --function-module annotator.cvat.function -p landmark_model=str:student.pt
    python -m annotator.cvat.function TASK      # same, through our connect(): works with old servers too

The spec declares the `person` skeleton label of exporters.cvat_label (33
point sublabels with `confidence` and `provenance` attributes); CVAT matches
it to the task's label by name. detect() runs the project's pose estimator
(annotator.prefill.blazepose, engine "detector"; imported on first use so this module
imports without it) and returns one skeleton per person with all 33
elements: low-visibility points are `occluded`, confidence is integer
percent. The model is loaded once per process.
"""
from __future__ import annotations

import os
import threading

import cvat_sdk.auto_annotation as cvataa
from cvat_sdk import models

from exporters import cvat_label
from annotator.core import skeleton as sk
from annotator.core.model import NOT_LABELLED, OCCLUDED

LABEL_ID = 0
ATTR_CONF_ID, ATTR_PROV_ID = 0, 1
ENV_LANDMARK_MODEL = "POSE_ANNOTATOR_LANDMARK_MODEL"


def _make_spec() -> cvataa.DetectionFunctionSpec:
    sublabels = [
        cvataa.keypoint_spec(name, i, attributes=[
            cvataa.number_attribute_spec(cvat_label.ATTR_CONFIDENCE, ATTR_CONF_ID, list(cvat_label.CONF_VALUES),
                                         default_value=str(cvat_label.NO_CONFIDENCE)),
            cvataa.text_attribute_spec(cvat_label.ATTR_PROVENANCE, ATTR_PROV_ID, default_value=""),
        ])
        for i, name in enumerate(sk.NAMES)
    ]
    return cvataa.DetectionFunctionSpec(labels=[
        cvataa.skeleton_label_spec(cvat_label.LABEL_NAME, LABEL_ID, sublabels, svg=cvat_label.svg())])


spec = _make_spec()


def person_to_detection(person, provenance: str) -> models.LabeledShapeRequest:
    """A Person as an auto-annotation skeleton (function-spec ids; no id/source, frame 0)."""
    elements = []
    for i in range(sk.N):
        v = int(person.vis[i])
        x, y = float(person.xy[i, 0]), float(person.xy[i, 1])
        elements.append(cvataa.keypoint(i, [x, y], occluded=v == OCCLUDED, outside=v == NOT_LABELLED, attributes=[
            models.AttributeValRequest(spec_id=ATTR_CONF_ID, value=cvat_label.conf_value(person.conf[i])),
            models.AttributeValRequest(spec_id=ATTR_PROV_ID, value=person.source[i] or provenance),
        ]))
    return cvataa.skeleton(LABEL_ID, elements)


class PoseFunction:
    """A DetectionFunction: spec + detect(context, image). Loads the estimator on first use."""

    spec = spec

    def __init__(self, estimator_kwargs: dict | None = None, landmark_model: str | None = None,
                 vis_threshold: float = 0.5):
        from annotator.core import settings
        from annotator.prefill.run import estimator_settings
        self.kwargs = dict(estimator_settings(settings.DEFAULTS), **(estimator_kwargs or {}))
        self.landmark_model = landmark_model or os.environ.get(ENV_LANDMARK_MODEL) or None
        self.vis_threshold = vis_threshold
        self._est = None
        self._lock = threading.Lock()

    @property
    def provenance(self) -> str:
        from annotator.prefill.run import default_model_name
        name = default_model_name(self.kwargs)
        if self.landmark_model:
            name += f"+{os.path.basename(self.landmark_model)}"
        return f"cvat-auto:{name}"

    def estimator(self):
        with self._lock:
            if self._est is None:
                try:
                    from annotator.prefill.run import make_estimator
                    self._est = make_estimator(self.kwargs, self.landmark_model)
                except ImportError as e:
                    raise ImportError(f"the pose estimator (annotator.prefill.blazepose) cannot be loaded: {e}") from e
            return self._est

    def detect(self, context, image) -> list[models.LabeledShapeRequest]:
        import numpy as np

        from annotator.prefill.run import to_person
        rgb = np.asarray(image.convert("RGB"))
        h, w = rgb.shape[:2]
        threshold = getattr(context, "conf_threshold", None)
        out = []
        prov = self.provenance
        for pose in self.estimator().predict(rgb):
            if threshold is not None and float(pose.score) < threshold:
                continue
            person = to_person(pose, w, h, self.vis_threshold)
            out.append(person_to_detection(person, prov))
        return out


def create(landmark_model: str = "", model_complexity: int = 2, max_people: int = 20,
           min_detection_confidence: float = 0.5, vis_threshold: float = 0.5) -> PoseFunction:
    """Factory cvat-cli calls with -p NAME=TYPE:VALUE parameters (the engine is the project default,
    "detector"; model_complexity 2 = BlazePose Heavy, after `pose-annotator models install`)."""
    return PoseFunction({"model_complexity": int(model_complexity), "max_people": int(max_people),
                         "min_detection_confidence": float(min_detection_confidence)},
                        landmark_model or None, float(vis_threshold))


_default: PoseFunction | None = None
_default_lock = threading.Lock()


def detect(context, image) -> list[models.LabeledShapeRequest]:
    """Module-level detect, so the module itself is a DetectionFunction (annotate_task(client, id, module))."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PoseFunction()
    return _default.detect(context, image)


def main(argv: list[str] | None = None) -> int:
    """Pre-fill a CVAT task through our own connection (works where cvat-cli's version check fails)."""
    import argparse
    import sys

    from cvat_sdk.core.helpers import DeferredTqdmProgressReporter

    from annotator.cvat.client import connect
    from annotator.core.errors import UserError

    ap = argparse.ArgumentParser(prog="python -m annotator.cvat.function",
                                 description="Pre-fill a CVAT task with 33-point skeletons.")
    ap.add_argument("task_id", type=int)
    ap.add_argument("--url", help="CVAT URL (default: $CVAT_URL)")
    ap.add_argument("--user", help="CVAT user (default: $CVAT_USER; password from $CVAT_PASSWORD or a prompt)")
    ap.add_argument("--clear-existing", action="store_true", help="remove the task's annotations first")
    ap.add_argument("--conf-threshold", type=float, default=None, help="drop people scored below this")
    ap.add_argument("--landmark-model", default="", help="student landmark model to use")
    args = ap.parse_args(argv)
    try:
        with connect(args.url, args.user) as conn, conn._errors(f"pre-filling task {args.task_id}"):
            cvataa.annotate_task(conn.client, args.task_id, create(args.landmark_model),
                                 pbar=DeferredTqdmProgressReporter(), clear_existing=args.clear_existing,
                                 conf_threshold=args.conf_threshold)
    except (UserError, cvataa.BadFunctionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

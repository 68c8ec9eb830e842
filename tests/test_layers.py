"""The package layers of annotator/__init__.py hold: imports point down, never up or sideways,
and no two modules import each other, even through imports inside functions."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# lower rank = lower layer; packages of one rank may not import each other
RANKS = {
    "annotator.core": 0,
    "exporters": 1,
    "annotator.review": 2,
    "annotator.prefill": 3,
    "annotator.distill": 4, "annotator.cvat": 4,
    "annotator.gui": 5, "annotator.web": 5,
    "annotator.cli": 6,
    "annotator.__main__": 7, "annotator.cvat_function": 7,      # entry points and kept aliases
}


def layer_of(module: str) -> str | None:
    for name in sorted(RANKS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str, known: set[str]) -> list[tuple[int, str]]:
    """Every module this file imports (top level or inside functions), absolute."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:                     # `from pkg import module` imports the module
                out.append((node.lineno, f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod))
    return out


def scan(root: Path) -> tuple[list[str], dict[str, set[str]]]:
    """(layer violations, module import graph) for the annotator and exporters trees under root."""
    files = {module_name(root, p): p for top in ("annotator", "exporters") for p in (root / top).rglob("*.py")}
    problems, graph = [], {m: set() for m in files}
    for mod, path in sorted(files.items()):
        src = layer_of(mod)
        for line, target in imports_of(path, mod, set(files)):
            if target not in files:
                continue
            if target != mod and not (path.name == "__init__.py" and target.startswith(mod + ".")):
                graph[mod].add(target)
            dst = layer_of(target)
            if src is None or dst is None:
                if src != dst:
                    problems.append(f"{path.relative_to(root)}:{line}: {mod} or {target} is in no layer")
                continue
            if src == dst:
                continue
            if RANKS[dst] > RANKS[src] or (RANKS[dst] == RANKS[src]):
                problems.append(f"{path.relative_to(root)}:{line}: {src} may not import {target} ({dst})")
    return problems, graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_imports_point_down_the_layers():
    problems, _ = scan(REPO)
    assert problems == []


def test_no_import_cycles():
    _, graph = scan(REPO)
    assert cycles(graph) == []


def test_every_module_is_in_a_layer():
    _, graph = scan(REPO)
    assert [m for m in graph if m not in ("annotator",) and layer_of(m) is None] == []


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_the_checker_finds_a_planted_upward_import_and_cycle(tmp_path):
    """The checks above can fail: core importing the GUI inside a function, and two review modules
    importing each other, are both reported."""
    root = _plant(tmp_path, {
        "annotator/__init__.py": "", "exporters/__init__.py": "",
        "annotator/core/__init__.py": "", "annotator/gui/__init__.py": "", "annotator/review/__init__.py": "",
        "annotator/gui/state.py": "from annotator.core import store\n",
        "annotator/core/store.py": "def f():\n    from annotator.gui import state\n",
        "annotator/review/a.py": "from . import b\n",
        "annotator/review/b.py": "def g():\n    from annotator.review.a import x\n",
    })
    problems, graph = scan(root)
    assert len(problems) == 1 and "annotator.core may not import annotator.gui.state" in problems[0]
    assert ["annotator.review.a", "annotator.review.b"] in cycles(graph)
    assert any("annotator.core.store" in c for c in cycles(graph))      # core -> gui -> core


def test_core_imports_no_gui_torch_cvat_or_model():
    code = ("import pkgutil, importlib, sys, annotator.core as c\n"
            "for m in pkgutil.iter_modules(c.__path__): importlib.import_module('annotator.core.' + m.name)\n"
            "bad = ('dearpygui', 'torch', 'cvat_sdk', 'mediapipe', 'ai_edge_litert', 'onnxruntime',\n"
            "       'annotator.gui', 'annotator.cvat', 'annotator.distill', 'annotator.prefill', 'annotator.review')\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] in bad or k.startswith(bad)))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

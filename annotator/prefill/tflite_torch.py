"""MediaPipe's pose landmark TFLite model rebuilt as a trainable torch module.

The student network must start exactly where MediaPipe is (same weights, same
numbers) so that fine-tuning on verified points only moves it where people
corrected it. So instead of a hand-written architecture we read the TFLite
flatbuffer with the schema bindings that ship in the mediapipe wheel and
interpret its op list: every CONV_2D / DEPTHWISE_CONV_2D becomes an
nn.Conv2d whose weights (stored float16, DEQUANTIZEd to float32) are real
parameters; the other ops (ADD, PAD, MAX_POOL_2D, RESIZE_BILINEAR, RESHAPE,
CONCATENATION, LOGISTIC, ...) are replayed with TFLite's semantics (NHWC
shapes, 'SAME' padding that puts the odd pixel after, half-pixel resize).

Layout: the module takes float32 NHWC images (N, 256, 256, 3) in [0, 1], as
MediaPipe's ImageToTensorCalculator feeds the model, and returns outputs in
TFLite's layout (maps stay NHWC). Internally it runs NCHW.
"""
from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from annotator.prefill import models as mp_models
from annotator.core.errors import UserError

# TFLite output tensor names of pose_landmark_*.tflite -> what they mean.
POSE_OUTPUTS = {
    "Identity": "landmarks",          # (N, 195): 39 points x (x, y, z, visibility, presence), x/y in 0..256
    "Identity_1": "pose_flag",        # (N, 1): sigmoid, "a person is in the crop"
    "Identity_2": "segmentation",     # (N, 256, 256, 1): logits
    "Identity_3": "heatmap",          # (N, 64, 64, 39)
    "Identity_4": "world_landmarks",  # (N, 117): 39 x (x, y, z) metres
}
FEATURES = "features"  # the map that feeds the landmark head (N, 2, 2, 288 for the full model)

_ACT = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


@dataclass
class Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    """The first subgraph of a TFLite model, in plain Python."""
    path: Path
    names: list[str]
    shapes: list[tuple[int, ...]]
    dtypes: list[str]
    consts: dict[int, np.ndarray]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]

    def histogram(self) -> Counter:
        return Counter(op.kind for op in self.ops)


def _options(s, op) -> dict:
    """Every scalar field of an op's builtin options table, by schema name."""
    kind = op.BuiltinOptionsType()
    if not kind:
        return {}
    names = {v: k for k, v in vars(s.BuiltinOptions).items() if not k.startswith("_")}
    cls = getattr(s, names[kind])
    table = op.BuiltinOptions()
    o = cls()
    o.Init(table.Bytes, table.Pos)
    out = {}
    for k in dir(o):
        if not k[0].isupper() or k.startswith(("Init", "GetRoot")) or k.endswith(("AsNumpy", "Length", "IsNone")) \
                or "Identifier" in k:
            continue
        try:
            out[k] = getattr(o, k)()
        except TypeError:
            pass
    return out


def read_graph(path: str | os.PathLike | None = None) -> Graph:
    """Parse a .tflite flatbuffer (default: MediaPipe's pose_landmark_full)."""
    s = mp_models.tflite_schema()
    path = Path(path) if path is not None else mp_models.landmark_path(1)
    try:
        buf = path.read_bytes()
        if buf[4:8] != b"TFL3":
            raise ValueError("no TFL3 identifier")
        model = s.Model.GetRootAsModel(buf, 0)
        g = model.Subgraphs(0)
    except (OSError, ValueError, IndexError) as e:
        raise UserError(f"{path}: not a readable TFLite model ({e})") from None
    tnames = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    opnames = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    np_dtype = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32, "INT64": np.int64,
                "UINT8": np.uint8, "INT8": np.int8}
    names, shapes, dtypes, consts = [], [], [], {}
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        names.append(t.Name().decode())
        shapes.append(tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ())
        dt = tnames[t.Type()]
        dtypes.append(dt)
        b = model.Buffers(t.Buffer())
        if b.Offset() > 1:  # large models keep data after the flatbuffer
            raw = np.frombuffer(buf, np.uint8, count=b.Size(), offset=b.Offset())
        elif b.DataLength():
            raw = b.DataAsNumpy()
        else:
            continue
        if dt not in np_dtype:
            raise UserError(f"{path}: constant tensor {names[-1]!r} has unsupported type {dt}")
        consts[i] = np.frombuffer(raw.tobytes(), np_dtype[dt]).reshape(shapes[-1])
    ops = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        oc = model.OperatorCodes(op.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        kind = opnames.get(code, str(code))
        if kind == "CUSTOM":
            kind = "CUSTOM:" + oc.CustomCode().decode()
        ops.append(Op(kind, [int(op.Inputs(j)) for j in range(op.InputsLength())],
                      [int(op.Outputs(j)) for j in range(op.OutputsLength())], _options(s, op)))
    return Graph(path, names, shapes, dtypes, consts, ops,
                 [int(g.Inputs(i)) for i in range(g.InputsLength())],
                 [int(g.Outputs(i)) for i in range(g.OutputsLength())])


def _same_pad(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite/TF 'SAME': total padding split with the extra pixel after."""
    out = -(-size // stride)
    eff = (k - 1) * dilation + 1
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _activate(x: torch.Tensor, act: str | None) -> torch.Tensor:
    if act is None:
        return x
    if act == "relu":
        return F.relu(x)
    if act == "relu6":
        return F.relu6(x)
    if act == "relu_n1_to_1":
        return x.clamp(-1.0, 1.0)
    return torch.tanh(x)


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


class TFLiteModule(nn.Module):
    """A TFLite graph replayed op by op, with its conv weights as nn.Parameters.

    forward(x, outputs=None) -> dict name -> tensor. x: float32 (N, H, W, C)
    NHWC as the TFLite input. Only the ops needed for the requested outputs
    run, so asking for ("landmarks",) skips the segmentation decoder.
    """

    def __init__(self, graph: Graph, aliases: dict[str, str] | None = None, features_of: str | None = None):
        super().__init__()
        self.graph = replace(graph, consts=dict(graph.consts))   # DEQUANTIZE results get folded in
        self.source = str(graph.path)
        self.input_id = graph.inputs[0]
        self.input_shape = graph.shapes[self.input_id]
        aliases = aliases or {}
        self.output_ids: dict[str, int] = {aliases.get(graph.names[t], graph.names[t]): t for t in graph.outputs}
        self.layers = nn.ModuleDict()
        self._steps: dict[int, tuple] = {}      # op index -> (runner, static args, input ids, output id)
        self._conv_names: dict[int, str] = {}   # op index -> its layer's name
        self._producer: dict[int, int] = {}     # tensor id -> op index
        self._plans: dict[tuple, list[int]] = {}
        self._build()
        self.graph.consts = {}   # weights now live in the layers; drop the float16/float32 copies
        if features_of is not None:
            self.output_ids[FEATURES] = self._head_input(self.output_ids[features_of])

    # -- building -------------------------------------------------------
    def _const(self, t: int) -> np.ndarray:
        if t not in self.graph.consts:
            raise UserError(f"{self.source}: tensor {self.graph.names[t]!r} should be a constant")
        return self.graph.consts[t]

    def _build(self):
        folded = self.graph.consts
        for i, op in enumerate(self.graph.ops):
            if op.kind == "DEQUANTIZE" and op.inputs[0] in folded \
                    and folded[op.inputs[0]].dtype == np.float16:
                # float16 weights -> float32, once at load time (int8 would need scales: unsupported)
                folded[op.outputs[0]] = folded[op.inputs[0]].astype(np.float32)
                continue
            build = getattr(self, "_op_" + op.kind.lower().replace(":", "_"), None)
            if build is None:
                raise UserError(f"{self.source}: op {op.kind} (#{i}) is not supported by the torch rebuild")
            runner, static = build(i, op)
            ins = [t for t in op.inputs if t >= 0 and t not in folded]
            self._steps[i] = (getattr(type(self), "_run_" + runner), static, ins, op.outputs[0])
            self._producer[op.outputs[0]] = i

    # Builders turn one TFLite op into (runner name, static arguments). Steps are
    # plain data and runners look layers up on `self`, so deepcopy/state_dict work.
    def _conv(self, i: int, op: Op, depthwise: bool):
        g, o = self.graph, op.options
        w = self._const(op.inputs[1])
        b = self._const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        cin = g.shapes[op.inputs[0]][3]
        if depthwise:   # [1, KH, KW, Cin*M] -> [Cin*M, 1, KH, KW], one group per input channel
            kh, kw, cout = w.shape[1:]
            weight, groups = w.reshape(kh, kw, cout).transpose(2, 0, 1)[:, None], cin
        else:           # [Cout, KH, KW, Cin] -> [Cout, Cin, KH, KW]
            cout, kh, kw = w.shape[:3]
            weight, groups = w.transpose(0, 3, 1, 2), cin // w.shape[3]
        dh, dw = o.get("DilationHFactor", 1), o.get("DilationWFactor", 1)
        sh, sw = o["StrideH"], o["StrideW"]
        conv = nn.Conv2d(cin, cout, (kh, kw), (sh, sw), 0, (dh, dw), groups, bias=b is not None)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight, np.float32)))
            if b is not None:
                conv.bias.copy_(torch.from_numpy(b.astype(np.float32)))
        name = f"op{i:03d}_" + re.sub(r"\W", "_", g.names[op.outputs[0]].split(";")[0])[-40:]
        self.layers[name] = conv
        self._conv_names[i] = name
        pad = None
        if o["Padding"] == 0:   # SAME
            h, wd = g.shapes[op.inputs[0]][1:3]
            (t, bt), (l, r) = _same_pad(h, kh, sh, dh), _same_pad(wd, kw, sw, dw)
            pad = (l, r, t, bt) if (t, bt, l, r) != (0, 0, 0, 0) else None
        return "conv", (name, pad, _ACT[o.get("FusedActivationFunction", 0)])

    def _run_conv(self, st, x):
        name, pad, act = st
        if pad is not None:
            x = F.pad(x, pad)
        return _activate(self.layers[name](x), act)

    def _op_conv_2d(self, i, op):
        return self._conv(i, op, depthwise=False)

    def _op_depthwise_conv_2d(self, i, op):
        return self._conv(i, op, depthwise=True)

    def _binary(self, op: Op, fn: str):
        """ADD/MUL: a constant operand becomes an NCHW buffer once."""
        consts = {}
        for k, t in enumerate(op.inputs):
            if t in self.graph.consts:
                c = torch.from_numpy(self.graph.consts[t].astype(np.float32))
                if c.dim() == 4:
                    c = _nchw(c)
                elif c.dim() == 1 and len(self.graph.shapes[op.outputs[0]]) == 4:
                    c = c.view(1, -1, 1, 1)
                self.register_buffer(f"const{t}", c.contiguous(), persistent=False)
                consts[k] = f"const{t}"
        return "binary", (fn, consts, _ACT[op.options.get("FusedActivationFunction", 0)])

    def _run_binary(self, st, *xs):
        fn, consts, act = st
        it = iter(xs)
        a, b = (getattr(self, consts[k]) if k in consts else next(it) for k in range(2))
        return _activate(a + b if fn == "add" else a * b, act)

    def _op_add(self, i, op):
        return self._binary(op, "add")

    def _op_mul(self, i, op):
        return self._binary(op, "mul")

    def _op_pad(self, i, op):
        p = self._const(op.inputs[1]).astype(int)   # NHWC [[before, after]] per dim
        if p.shape != (4, 2) or p[0].any():
            raise UserError(f"{self.source}: PAD #{i} pads the batch or is not 4-D")
        return "pad", (int(p[2, 0]), int(p[2, 1]), int(p[1, 0]), int(p[1, 1]), int(p[3, 0]), int(p[3, 1]))

    def _run_pad(self, st, x):
        return F.pad(x, st)

    def _op_max_pool_2d(self, i, op):
        o = op.options
        kh, kw, sh, sw = o["FilterHeight"], o["FilterWidth"], o["StrideH"], o["StrideW"]
        pad = None
        if o["Padding"] == 0:
            h, w = self.graph.shapes[op.inputs[0]][1:3]
            (t, b), (l, r) = _same_pad(h, kh, sh, 1), _same_pad(w, kw, sw, 1)
            pad = (l, r, t, b) if (t, b, l, r) != (0, 0, 0, 0) else None
        return "max_pool", ((kh, kw), (sh, sw), pad, _ACT[o.get("FusedActivationFunction", 0)])

    def _run_max_pool(self, st, x):
        k, stride, pad, act = st
        if pad is not None:   # padded cells never win the max
            x = F.pad(x, pad, value=float("-inf"))
        return _activate(F.max_pool2d(x, k, stride), act)

    def _op_resize_bilinear(self, i, op):
        size = tuple(int(v) for v in self._const(op.inputs[1]))
        o = op.options
        if not o.get("AlignCorners") and not o.get("HalfPixelCenters"):
            raise UserError(f"{self.source}: RESIZE_BILINEAR #{i} uses legacy (non half-pixel) sampling")
        # TF half-pixel centres clamp at the border exactly like torch's align_corners=False.
        return "resize", (size, bool(o.get("AlignCorners")))

    def _run_resize(self, st, x):
        size, corners = st
        return F.interpolate(x, size=size, mode="bilinear", align_corners=corners)

    def _op_reshape(self, i, op):
        return "reshape", tuple(self.graph.shapes[op.outputs[0]][1:])

    def _run_reshape(self, st, x):
        return _nchw(_nhwc(x).reshape((x.shape[0],) + st))

    def _op_concatenation(self, i, op):
        rank = len(self.graph.shapes[op.outputs[0]])
        axis = op.options.get("Axis", 0) % rank
        if rank == 4:
            axis = _NHWC_TO_NCHW_AXIS[axis]
        return "concat", (axis, _ACT[op.options.get("FusedActivationFunction", 0)])

    def _run_concat(self, st, *xs):
        return _activate(torch.cat(xs, dim=st[0]), st[1])

    def _op_logistic(self, i, op):
        return "act", "sigmoid"

    def _op_relu(self, i, op):
        return "act", "relu"

    def _op_relu6(self, i, op):
        return "act", "relu6"

    def _op_tanh(self, i, op):
        return "act", "tanh"

    def _run_act(self, st, x):
        return torch.sigmoid(x) if st == "sigmoid" else _activate(x, st)

    def _head_input(self, out: int) -> int:
        """Walk back from an output through shape-only ops to the conv that makes it; its input."""
        t = out
        while True:
            i = self._producer[t]
            op = self.graph.ops[i]
            if op.kind in ("RESHAPE", "LOGISTIC"):
                t = op.inputs[0]
                continue
            return op.inputs[0]

    # -- running --------------------------------------------------------
    def _plan(self, known: tuple[int, ...], want: tuple[int, ...]) -> list[tuple[int, list[int]]]:
        """Ops needed for `want` given `known` tensors, each with the tensors free after it."""
        key = (known, want)
        if key not in self._plans:
            need, stack = set(), list(want)
            while stack:
                t = stack.pop()
                if t in known or t not in self._producer:
                    continue
                i = self._producer[t]
                if i not in need:
                    need.add(i)
                    stack.extend(self._steps[i][2])
            order = sorted(need)
            last = {}
            for i in order:
                for t in self._steps[i][2]:
                    last[t] = i
            free: dict[int, list[int]] = {i: [] for i in order}
            for t, i in last.items():
                if t not in want:
                    free[i].append(t)
            self._plans[key] = [(i, free[i]) for i in order]
        return self._plans[key]

    def _names(self, outputs) -> list[str]:
        names = list(self.output_ids) if outputs is None else list(outputs)
        for n in names:
            if n not in self.output_ids:
                raise ValueError(f"unknown output {n!r}; this model has {sorted(self.output_ids)}")
        return names

    def _execute(self, env: dict[int, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
        want = tuple(self.output_ids[n] for n in names)
        for i, free in self._plan(tuple(sorted(env)), want):
            runner, static, ins, out = self._steps[i]
            env[out] = runner(self, static, *(env[t] for t in ins))
            for t in free:   # keep peak memory to what is still needed
                del env[t]
        return {n: _nhwc(env[self.output_ids[n]]) for n in names}

    def forward(self, x: torch.Tensor, outputs: tuple[str, ...] | list[str] | None = None) -> dict:
        shape = tuple(self.input_shape[1:])
        if x.dim() != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"expected NHWC input (N, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
        return self._execute({self.input_id: _nchw(x)}, self._names(outputs))

    def forward_from(self, name: str, value: torch.Tensor, outputs) -> dict:
        """Run the graph from an intermediate output (e.g. cached 'features') onward."""
        return self._execute({self.output_ids[name]: _nchw(value)}, self._names(outputs))

    def head_parameters(self, output: str = "landmarks") -> list[nn.Parameter]:
        """Parameters of the ops between 'features' and `output` (the landmark head)."""
        plan = [i for i, _ in self._plan((self.output_ids[FEATURES],), (self.output_ids[output],))]
        return [p for i in plan if i in self._conv_names for p in self.layers[self._conv_names[i]].parameters()]


def load_pose_landmark(path: str | os.PathLike | None = None) -> TFLiteModule:
    """pose_landmark_full.tflite (or `path`) as a float32 torch module with named outputs + 'features'."""
    graph = read_graph(path)
    return TFLiteModule(graph, POSE_OUTPUTS, features_of="landmarks")


class _Tuple(nn.Module):
    """Fixed output order for exporters that want tuples, not dicts."""

    def __init__(self, module: TFLiteModule, names: list[str]):
        super().__init__()
        self.module, self.names = module, names

    def forward(self, x):
        out = self.module(x, self.names)
        return tuple(out[n] for n in self.names)


def export_onnx(module: TFLiteModule, path: str | os.PathLike, outputs: list[str] | None = None,
                opset: int = 17) -> Path:
    """Write an ONNX file (NHWC float32 input 'input_1', dynamic batch) with the named outputs."""
    names = module._names(outputs if outputs is not None else list(POSE_OUTPUTS.values()))
    return export_tuple_net(_Tuple(module, names).eval(), names, path, tuple(module.input_shape[1:]), opset)


def export_tuple_net(net: nn.Module, names: list[str], path: str | os.PathLike,
                     input_hwc: tuple = (256, 256, 3), opset: int = 17) -> Path:
    """ONNX export of a module that maps an NHWC batch to a tuple of outputs called `names`."""
    path = Path(path)
    dummy = torch.zeros((1,) + tuple(input_hwc))
    # The TorchScript exporter (the torch.export one needs onnxscript); its notices are expected here.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(net, (dummy,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input_1"], output_names=names,
                          dynamic_axes={"input_1": {0: "batch"}, **{n: {0: "batch"} for n in names}})
    return path

"""ArcFace recognition networks from insightface's ONNX files, run in JAX.

Users bring insightface's recognition models as ONNX files (`w600k_r50.onnx`, an
IResNet-50 with batch norm and PReLU: a 112x112 aligned RGB face -> a 512-d embedding;
`glintr100.onnx`, `w600k_mbf.onnx`, older MXNet conversions). `load_params(path)` reads the
file with the `onnx` package and returns an `OnnxNet`: the graph (static) and its float
initializers (a pytree of float32 arrays). `embed(net, chips)` runs the graph node by node
with `jax.numpy` / `jax.lax`, so it jits, and shards under `map_batches` like any pure
`fn(params, batch)`.

Why an interpreter of the ONNX graph rather than a fixed IResNet whose parameters are
renamed from the file: the graph is the exact definition of the model, whatever exported
it. Exporters fold batch norms into the convolutions they follow (or not), name tensors by
number (`onnx::Conv_683`), and insightface ships several architectures (IResNet-50/100,
MobileFaceNet with grouped convolutions, MXNet conversions with the input scaling inside
the graph); one interpreter of the ~25 operators those models use runs all of them, op by
op as onnxruntime does, with no pattern matching that an export detail could break.
An operator outside that set is refused at load time, naming it.

Choices:
- Tensors keep ONNX's NCHW layout (XLA picks the physical layout); chips come in as
  (N, H, W, 3) RGB 0..255 and are transposed inside `embed`.
- Input scaling follows insightface's `ArcFaceONNX`: (x - 127.5) / 127.5, unless one of the
  first 8 nodes is named `Sub...`/`_minus...` and one `Mul...`/`_mul...` (graphs that scale
  their input themselves), then raw 0..255; `load_params` can override both.
- Integer tensors (shapes for Reshape, indices) and Constant nodes are static, so shape
  arithmetic (Shape -> Gather -> Concat -> Reshape, as older exporters write a flatten) is
  evaluated while tracing; float initializers are the traced parameters.
- The shapes of the whole graph are checked at load time by tracing it abstractly
  (`jax.eval_shape`), so a mis-shaped tensor is reported with the node that uses it.
- Convolutions and matmuls use `Precision.HIGHEST` (GPUs would default to TF32-like
  accuracy); float32 throughout.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.errors import MissingCapabilityError, TalkjaxError

CHIP_SIZE = 112
_HIGHEST = jax.lax.Precision.HIGHEST
_FIX = ("give an insightface recognition model exported to ONNX (e.g. w600k_r50.onnx from "
        "the buffalo_l pack)")


@dataclasses.dataclass(frozen=True)
class Node:
  op: str
  name: str
  inputs: tuple
  outputs: tuple
  attrs: tuple   # sorted (name, value) pairs; tensors as _Static


@dataclasses.dataclass(frozen=True)
class _Static:
  """A constant tensor kept out of the traced parameters (hashable)."""
  dtype: str
  shape: tuple
  data: bytes

  @staticmethod
  def of(array: np.ndarray) -> _Static:
    array = np.asarray(array).copy(order="C")   # (keeps 0-d arrays 0-d)
    return _Static(array.dtype.str, array.shape, array.tobytes())

  def array(self) -> np.ndarray:
    return np.frombuffer(self.data, np.dtype(self.dtype)).reshape(self.shape).copy()


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class OnnxNet:
  """An ONNX recognition graph: `weights` (name -> float32 array) are the pytree's leaves;
  everything else is static (part of the compiled function's key)."""
  weights: dict
  nodes: tuple
  constants: tuple       # (name, _Static) pairs
  input_name: str
  output_name: str
  input_size: tuple      # (height, width)
  input_mean: float
  input_std: float

  def tree_flatten(self):
    static = (self.nodes, self.constants, self.input_name, self.output_name,
              self.input_size, self.input_mean, self.input_std)
    return (self.weights,), static

  @classmethod
  def tree_unflatten(cls, static, children):
    return cls(children[0], *static)

  @property
  def embed_dim(self) -> int:
    x = jax.ShapeDtypeStruct((1,) + tuple(self.input_size) + (3,), jnp.float32)
    return int(jax.eval_shape(embed, self, x).shape[-1])


# ---- the operators -------------------------------------------------------------------------

def _is_static(*xs) -> bool:
  return all(isinstance(x, (np.ndarray, np.generic)) for x in xs if x is not None)


def _xp(*xs):
  return np if _is_static(*xs) else jnp


def _pairs(pads, n):
  pads = list(pads) if pads else [0] * (2 * n)
  return [(int(pads[i]), int(pads[i + n])) for i in range(n)]


def _auto_pads(a, x_shape, kernel, strides, dilations):
  mode = a.get("auto_pad", "NOTSET")
  n = len(kernel)
  if mode in ("NOTSET", ""):
    return _pairs(a.get("pads"), n)
  if mode == "VALID":
    return [(0, 0)] * n
  out = []
  for size, k, s, d in zip(x_shape[2:], kernel, strides, dilations):
    total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
    small, big = total // 2, total - total // 2
    out.append((small, big) if mode == "SAME_UPPER" else (big, small))
  return out


def _conv(a, x, w, b=None):
  if x.ndim != 4 or w.ndim != 4:
    raise ValueError(f"only 2-D convolutions are supported (input {x.shape}, weight {w.shape})")
  group = int(a.get("group", 1))
  if x.shape[1] != w.shape[1] * group:
    raise ValueError(f"input has {x.shape[1]} channels, the weight {w.shape} with group "
                     f"{group} expects {w.shape[1] * group}")
  strides = tuple(int(s) for s in a.get("strides", (1, 1)))
  dilations = tuple(int(d) for d in a.get("dilations", (1, 1)))
  pads = _auto_pads(a, x.shape, w.shape[2:], strides, dilations)
  y = jax.lax.conv_general_dilated(
      jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), strides, pads,
      rhs_dilation=dilations, dimension_numbers=("NCHW", "OIHW", "NCHW"),
      feature_group_count=group, precision=_HIGHEST)
  if b is not None:
    if b.shape != (w.shape[0],):
      raise ValueError(f"bias shape {b.shape} does not match {w.shape[0]} filters")
    y = y + jnp.reshape(b, (1, -1, 1, 1))
  return y


def _batch_norm(a, x, scale, bias, mean, var):
  if int(a.get("training_mode", 0)):
    raise ValueError("batch norm in training mode")
  c = x.shape[1]
  for what, t in (("scale", scale), ("bias", bias), ("mean", mean), ("var", var)):
    if t.shape != (c,):
      raise ValueError(f"batch norm {what} has shape {t.shape}, the input has {c} channels")
  shape = (1, c) + (1,) * (x.ndim - 2)
  r = lambda t: jnp.reshape(t, shape)
  inv = jax.lax.rsqrt(r(var) + float(a.get("epsilon", 1e-5)))
  return (x - r(mean)) * inv * r(scale) + r(bias)


def _pool(a, x, kind):
  kernel = tuple(int(k) for k in a["kernel_shape"])
  n = len(kernel)
  strides = tuple(int(s) for s in a.get("strides", (1,) * n))
  dilations = tuple(int(d) for d in a.get("dilations", (1,) * n))
  if int(a.get("ceil_mode", 0)) or any(d != 1 for d in dilations):
    raise ValueError("pooling with ceil_mode or dilations is not supported")
  pads = [(0, 0), (0, 0)] + _auto_pads(a, x.shape, kernel, strides, dilations)
  window, steps = (1, 1) + kernel, (1, 1) + strides
  if kind == "max":
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, steps, pads)
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, steps, pads)
  if int(a.get("count_include_pad", 0)):
    return total / float(np.prod(kernel))
  count = jax.lax.reduce_window(jnp.ones(x.shape[2:], x.dtype), 0.0, jax.lax.add,
                                kernel, strides, pads[2:])
  return total / count


def _gemm(a, A, B, C=None):
  A = A.T if int(a.get("transA", 0)) else A
  B = B.T if int(a.get("transB", 0)) else B
  y = float(a.get("alpha", 1.0)) * jnp.matmul(A, B, precision=_HIGHEST)
  if C is not None:
    y = y + float(a.get("beta", 1.0)) * C
  return y


def _reshape(a, x, shape=None):
  shape = a.get("shape") if shape is None else shape
  if not _is_static(shape):
    raise ValueError("Reshape needs a constant shape")
  shape = [int(s) for s in np.asarray(shape).reshape(-1)]
  if not int(a.get("allowzero", 0)):
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
  return _xp(x).reshape(x, shape)


def _axes(a, axes):
  axes = a.get("axes") if axes is None else axes
  return None if axes is None else tuple(int(v) for v in np.asarray(axes).reshape(-1))


def _unsqueeze(a, x, axes=None):
  axes = _axes(a, axes)
  rank = x.ndim + len(axes)
  out = x
  for axis in sorted(ax % rank for ax in axes):
    out = _xp(x).expand_dims(out, axis)
  return out


def _squeeze(a, x, axes=None):
  axes = _axes(a, axes)
  if axes is None:
    axes = tuple(i for i, s in enumerate(x.shape) if s == 1)
  return _xp(x).squeeze(x, tuple(ax % x.ndim for ax in axes))


def _flatten(a, x):
  axis = int(a.get("axis", 1)) % max(x.ndim, 1)
  return _xp(x).reshape(x, (int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))))


def _gather(a, x, idx):
  axis = int(a.get("axis", 0))
  if _is_static(x, idx):
    return np.asarray(np.take(x, idx, axis=axis))
  return jnp.take(x, jnp.asarray(idx), axis=axis)


_CASTS = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float32, 11: np.float32}


def _cast(a, x):
  to = _CASTS.get(int(a["to"]))
  if to is None:
    raise ValueError(f"Cast to ONNX type {a['to']} is not supported")
  return x.astype(to) if _is_static(x) else x.astype(jnp.dtype(to))


def _binary(fn):
  return lambda a, x, y: fn(x, y)


OPS = {
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
    "PRelu": lambda a, x, slope: jnp.where(x < 0, x * slope, x),
    "Relu": lambda a, x: jnp.maximum(x, 0),
    "LeakyRelu": lambda a, x: jnp.where(x < 0, x * float(a.get("alpha", 0.01)), x),
    "Sigmoid": lambda a, x: jax.nn.sigmoid(x),
    "Add": _binary(lambda x, y: x + y),
    "Sub": _binary(lambda x, y: x - y),
    "Mul": _binary(lambda x, y: x * y),
    "Div": _binary(lambda x, y: x // y if _is_static(x, y) and x.dtype.kind in "iu" else x / y),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Gemm": _gemm,
    "MatMul": lambda a, x, y: jnp.matmul(x, y, precision=_HIGHEST),
    "Identity": lambda a, x: x,
    "Dropout": lambda a, x, *rest: x,
    "GlobalAveragePool": lambda a, x: jnp.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True),
    "MaxPool": lambda a, x: _pool(a, x, "max"),
    "AveragePool": lambda a, x: _pool(a, x, "avg"),
    "Shape": lambda a, x: np.asarray(x.shape, np.int64),
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda a, *xs: _xp(*xs).concatenate(xs, axis=int(a["axis"])),
    "Transpose": lambda a, x: _xp(x).transpose(x, a.get("perm")),
    "Cast": _cast,
}
_KNOWN = set(OPS) | {"Constant"}   # Constant nodes become static tensors at load time
# Operators whose outputs past the first are optional and must stay unused.
_SINGLE_OUTPUT = {"BatchNormalization", "Dropout", "MaxPool"}


# ---- running a graph -----------------------------------------------------------------------

def _run(net: OnnxNet, x):
  values = {name: static.array() for name, static in net.constants}
  values.update(net.weights)
  values[net.input_name] = x
  for node in net.nodes:
    args = [values[i] if i else None for i in node.inputs]
    while args and args[-1] is None:
      args.pop()
    attrs = {k: (v.array() if isinstance(v, _Static) else v) for k, v in node.attrs}
    try:
      out = OPS[node.op](attrs, *args)
    except (ValueError, TypeError, KeyError, IndexError) as e:
      raise _NodeError(node, e) from e
    values[node.outputs[0]] = out
  return values[net.output_name]


class _NodeError(Exception):
  def __init__(self, node: Node, error: Exception):
    self.node, self.error = node, error
    super().__init__(f"node {node.name or node.outputs[0]!r} ({node.op}): {error}")


def embed(net: OnnxNet, chips):
  """(N, H, W, 3) aligned RGB chips (0..255, H x W = `net.input_size`) -> (N, D) float32
  embeddings, as the graph outputs them (not normalised). Pure and batch-leading: run it
  with `talkjax.eval.extract.map_batches(embed, net, chips)`."""
  x = (jnp.asarray(chips, jnp.float32) - net.input_mean) / net.input_std
  y = _run(net, jnp.transpose(x, (0, 3, 1, 2)))
  return jnp.reshape(jnp.asarray(y, jnp.float32), (y.shape[0], -1))


# ---- reading the file ----------------------------------------------------------------------

def _onnx():
  try:
    import onnx
    from onnx import numpy_helper
  except ImportError as e:
    raise MissingCapabilityError("reading ArcFace ONNX models needs the onnx package",
                                 fix="pip install onnx") from e
  return onnx, numpy_helper


def _attr_value(attr, onnx, numpy_helper):
  kind = onnx.AttributeProto
  if attr.type == kind.INT:
    return int(attr.i)
  if attr.type == kind.FLOAT:
    return float(attr.f)
  if attr.type == kind.STRING:
    return attr.s.decode("utf-8", "replace")
  if attr.type == kind.INTS:
    return tuple(int(v) for v in attr.ints)
  if attr.type == kind.FLOATS:
    return tuple(float(v) for v in attr.floats)
  if attr.type == kind.TENSOR:
    return _Static.of(numpy_helper.to_array(attr.t))
  raise ValueError(f"attribute {attr.name!r} has an unsupported type {attr.type}")


def _insightface_scaling(graph) -> tuple[float, float]:
  """insightface's rule: graphs that subtract and multiply near their input take 0..255."""
  names = [n.name for n in graph.node[:8]]
  sub = any(n.startswith(("Sub", "_minus")) for n in names)
  mul = any(n.startswith(("Mul", "_mul")) for n in names)
  return (0.0, 1.0) if sub and mul else (127.5, 127.5)


def load_params(path, *, input_mean: float | None = None,
                input_std: float | None = None) -> OnnxNet:
  """An insightface recognition model (.onnx) as an `OnnxNet` for `embed`."""
  path = Path(path)
  if not path.is_file():
    raise TalkjaxError("ArcFace ONNX model not found", path=path, fix=_FIX)
  onnx, numpy_helper = _onnx()
  try:
    model = onnx.load(str(path))
  except Exception as e:   # protobuf's DecodeError and friends: the bytes are not ONNX
    raise TalkjaxError(f"not an ONNX model ({type(e).__name__}: {e})", path=path,
                       fix=_FIX) from e
  graph = model.graph
  if not graph.node:
    raise TalkjaxError("the ONNX file holds no graph (is it an ONNX model?)", path=path,
                       fix=_FIX)
  bad = sorted({n.op_type for n in graph.node if n.domain not in ("", "ai.onnx")}
               | {n.op_type for n in graph.node if n.op_type not in _KNOWN})
  if bad:
    raise TalkjaxError(f"the graph uses operators this importer does not run: "
                       f"{', '.join(bad)} (supported: {', '.join(sorted(_KNOWN))})",
                       path=path, fix=_FIX)

  weights, constants = {}, {}
  initializers = {init.name for init in graph.initializer}
  try:
    for init in graph.initializer:
      array = numpy_helper.to_array(init)
      if array.dtype.kind == "f":
        weights[init.name] = np.asarray(array, np.float32)
      else:
        constants[init.name] = _Static.of(array)
  except Exception as e:
    raise TalkjaxError(f"the ONNX initializers cannot be read ({e})", path=path, fix=_FIX) from e
  inputs = [i for i in graph.input if i.name not in weights and i.name not in constants]
  if len(inputs) != 1:
    raise TalkjaxError(f"the graph has {len(inputs)} data inputs "
                       f"({', '.join(i.name for i in inputs)}), a recognition model has one",
                       path=path, fix=_FIX)
  dims = [d.dim_value if d.HasField("dim_value") else None
          for d in inputs[0].type.tensor_type.shape.dim]
  if len(dims) != 4 or dims[1] != 3 or not dims[2] or not dims[3]:
    raise TalkjaxError(f"the graph's input {inputs[0].name!r} has shape {dims}, expected "
                       "(batch, 3, height, width)", path=path, fix=_FIX)

  nodes, defined, used = [], {inputs[0].name} | set(weights) | set(constants), set()
  for index, n in enumerate(graph.node):
    label = n.name or f"#{index}"
    missing = [i for i in n.input if i and i not in defined]
    if missing:
      raise TalkjaxError(f"tensor {missing[0]!r} (input of node {label}, {n.op_type}) is "
                         "missing: no initializer or earlier node makes it", path=path, fix=_FIX)
    used.update(i for i in n.input if i)
    try:
      attrs = tuple(sorted((a.name, _attr_value(a, onnx, numpy_helper)) for a in n.attribute))
    except ValueError as e:
      raise TalkjaxError(f"node {label} ({n.op_type}): {e}", path=path, fix=_FIX) from e
    if n.op_type == "Constant":
      value = dict(attrs).get("value")
      if not isinstance(value, _Static):
        raise TalkjaxError(f"Constant node {label} has no tensor value", path=path, fix=_FIX)
      constants[n.output[0]] = value
    else:
      nodes.append(Node(n.op_type, label, tuple(n.input), tuple(n.output), attrs))
    defined.update(n.output)
  output_name = graph.output[0].name if graph.output else nodes[-1].outputs[0]
  if output_name not in defined:
    raise TalkjaxError(f"the graph's output {output_name!r} is made by no node", path=path,
                       fix=_FIX)
  for node in nodes:
    if node.op in _SINGLE_OUTPUT and any(o in used for o in node.outputs[1:]):
      raise TalkjaxError(f"node {node.name} ({node.op}) uses training-only outputs",
                         path=path, fix=_FIX)
  unused = sorted(initializers - used - {output_name})
  if unused:
    raise TalkjaxError(f"unexpected tensors no node uses: {', '.join(unused[:5])}"
                       + (f" and {len(unused) - 5} more" if len(unused) > 5 else ""),
                       path=path, fix=_FIX)

  mean, std = _insightface_scaling(graph)
  net = OnnxNet(weights, tuple(nodes), tuple(sorted(constants.items())), inputs[0].name,
                output_name, (int(dims[2]), int(dims[3])),
                float(mean if input_mean is None else input_mean),
                float(std if input_std is None else input_std))
  try:   # every shape of the graph, checked once without computing anything
    _ = net.embed_dim
  except _NodeError as e:
    raise TalkjaxError(f"the graph does not run: {e}", path=path, fix=_FIX) from e
  return net

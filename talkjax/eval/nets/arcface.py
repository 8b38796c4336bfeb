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
from talkjax.eval.nets.onnx_ops import KNOWN, OPS, SINGLE_OUTPUT

CHIP_SIZE = 112
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
               | {n.op_type for n in graph.node if n.op_type not in KNOWN})
  if bad:
    raise TalkjaxError(f"the graph uses operators this importer does not run: "
                       f"{', '.join(bad)} (supported: {', '.join(sorted(KNOWN))})",
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
    if node.op in SINGLE_OUTPUT and any(o in used for o in node.outputs[1:]):
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

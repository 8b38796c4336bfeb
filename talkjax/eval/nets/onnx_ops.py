"""The ONNX operators an insightface recognition model uses, in jax.numpy / jax.lax.

Each takes the node's attributes `a` and its inputs, ONNX layouts (NCHW) throughout.
Integer tensors (shapes, indices) stay static numpy so shape arithmetic runs while tracing.
`OPS` maps an op type to its function; `KNOWN` is every op `arcface.load_params` accepts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_HIGHEST = jax.lax.Precision.HIGHEST


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
KNOWN = set(OPS) | {"Constant"}   # Constant nodes become static tensors at load time
# Operators whose outputs past the first are optional and must stay unused.
SINGLE_OUTPUT = {"BatchNormalization", "Dropout", "MaxPool"}

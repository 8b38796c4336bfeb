"""Dense layers whose parameters carry logical axis names.

Every parameter is boxed with `nn.with_logical_partitioning`, so one rules table per config
decides how it is laid out on the mesh (see talkjax/parallel.py).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def logical_init(init, axes: Sequence[str | None]):
  return nn.with_logical_partitioning(init, tuple(axes))


class Dense(nn.Module):
  """y = x . W + b, contracting the last `len(axes) - n_out` axes of x.

  `features` are the output dimensions; `axes` names every kernel dimension (inputs then
  outputs), e.g. Dense((heads, head_dim), axes=("embed", "heads", "kv")).
  """
  features: int | Sequence[int]
  axes: Sequence[str | None]
  use_bias: bool = True
  dtype: jnp.dtype | None = None
  kernel_init: Callable = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):
    out = (self.features,) if isinstance(self.features, int) else tuple(self.features)
    n_in = len(self.axes) - len(out)
    in_shape = x.shape[x.ndim - n_in:]
    # lecun_normal on a flattened (fan_in, fan_out) view, reshaped to the named layout.
    def init(key, shape, dtype=jnp.float32):
      flat = self.kernel_init(key, (math.prod(in_shape), math.prod(out)), dtype)
      return flat.reshape(shape)
    kernel = self.param("kernel", logical_init(init, self.axes), in_shape + out)
    dtype = self.dtype or x.dtype
    contract = tuple(range(x.ndim - n_in, x.ndim))
    y = jax.lax.dot_general(x.astype(dtype), kernel.astype(dtype),
                            ((contract, tuple(range(n_in))), ((), ())))
    if self.use_bias:
      bias = self.param("bias", logical_init(nn.initializers.zeros, self.axes[n_in:]), out)
      y = y + bias.astype(dtype)
    return y

"""talkjax.flops: FLOPs counted from the jaxpr, against hand-computed literals and 6 x N x D."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from talkjax import flops
from talkjax.nn.dit import dit_trunk
from talkjax.nn.layers import Dense


def conv(x, w, strides=(1, 1), padding="VALID", **kw):
  return jax.lax.conv_general_dilated(x, w, strides, padding, **kw)


def test_dot_general_is_2mnk_with_batch_dims():
  a, b = jnp.ones((16, 32)), jnp.ones((32, 8))
  assert flops.count_flops(jnp.matmul, a, b).matmul == 2 * 16 * 32 * 8
  q, k = jnp.ones((3, 5, 16, 4)), jnp.ones((3, 5, 12, 4))  # (batch, heads, length, dim)
  count = flops.count_flops(lambda q, k: jnp.einsum("bhqd,bhkd->bhqk", q, k), q, k)
  assert count.matmul == 2 * 3 * 5 * 16 * 12 * 4 and count.conv == 0
  # XLA's cost analysis of the lowered program agrees on a bare matmul.
  assert flops.lowered_flops(jnp.matmul, a, b) == 2 * 16 * 32 * 8


@pytest.mark.parametrize("x_shape, w_shape, kw, literal", [
    # stride 2, VALID: out (2, 6, 4, 4); 2 x 192 outputs x 9 taps x 4 in-channels
    ((2, 4, 9, 9), (6, 4, 3, 3), dict(strides=(2, 2)), 2 * 192 * 9 * 4),
    # kernel (rhs) dilation 2: effective 5x5 kernel, out 5x5, still 9 taps each
    ((2, 4, 9, 9), (6, 4, 3, 3), dict(rhs_dilation=(2, 2)), 2 * (2 * 6 * 25) * 9 * 4),
    # SAME, stride 1: taps on the padding are not counted: 9*3 - 2 = 25 taps per row/column
    ((2, 4, 9, 9), (6, 4, 3, 3), dict(padding="SAME"), 2 * 2 * 6 * 25 * 25 * 4),
    # depthwise: feature_group_count = channels, one input channel per kernel
    ((2, 8, 9, 9), (8, 1, 3, 3), dict(feature_group_count=8), 2 * (2 * 8 * 49) * 9 * 1),
    # 2 groups of 2 input channels: out (3, 6, 7, 7)
    ((3, 4, 9, 9), (6, 2, 3, 3), dict(feature_group_count=2), 2 * (3 * 6 * 49) * 9 * 2),
    # batch_group_count 2: out batch 4 / 2, each output sums 9 taps x 3 channels
    ((4, 3, 9, 9), (6, 3, 3, 3), dict(batch_group_count=2), 2 * (2 * 6 * 49) * 9 * 3),
])
def test_conv_counts(x_shape, w_shape, kw, literal):
  x, w = jnp.ones(x_shape), jnp.ones(w_shape)
  fn = lambda x, w: conv(x, w, **kw)
  count = flops.count_flops(fn, x, w)
  assert count.conv == literal and count.matmul == 0
  assert flops.lowered_flops(fn, x, w) == literal  # XLA's HloCostAnalysis counts the same


def test_input_dilated_conv_counts_only_real_inputs():
  # A transposed 1-D conv: 4 inputs dilated by 2 (7 positions, 3 of them holes), padded by
  # 2 each side, 3 taps -> 9 outputs. Each real input meets each tap once: 12 products, not
  # the 9 x 3 = 27 a tap count over all outputs would give.
  x, w = jnp.ones((1, 2, 4)), jnp.ones((3, 2, 3))
  fn = lambda x, w: conv(x, w, (1,), ((2, 2),), lhs_dilation=(2,))
  assert fn(x, w).shape == (1, 3, 9)
  assert flops.count_flops(fn, x, w).conv == 2 * 12 * 2 * 3
  assert flops.lowered_flops(fn, x, w) == 2 * 12 * 2 * 3


def test_both_gradients_of_a_strided_conv_count_what_the_forward_counts():
  x, w = jnp.ones((2, 4, 9, 9)), jnp.ones((6, 4, 3, 3))
  loss = lambda x, w: jnp.sum(conv(x, w, (2, 2), "SAME") ** 2)
  forward = flops.count_flops(loss, x, w).conv
  # out 5x5, padding 1 each side: the first and last output miss one tap per dimension
  assert forward == 2 * 2 * 6 * (5 * 3 - 2) ** 2 * 4
  # d/dx is a conv with input dilation 2, d/dw one with kernel dilation 2.
  assert flops.count_flops(jax.value_and_grad(loss, argnums=(0, 1)), x, w).conv == 3 * forward
  grouped = lambda x, w: jnp.sum(conv(x, w, feature_group_count=2) ** 2)  # d/dw: batch groups
  x, w = jnp.ones((3, 4, 9, 9)), jnp.ones((6, 2, 3, 3))
  assert (flops.count_flops(jax.grad(grouped, argnums=(0, 1)), x, w).conv
          == 3 * flops.count_flops(grouped, x, w).conv)


def test_scan_body_counts_times_its_length_and_while_once():
  w = jnp.ones((8, 8))
  def scanned(x):
    return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=5)[0]
  assert flops.count_flops(scanned, jnp.ones((4, 8))).matmul == 5 * 2 * 4 * 8 * 8
  looped = lambda x: jax.lax.while_loop(lambda c: c[0, 0] < 100.0, lambda c: c @ w, x)
  count = flops.count_flops(looped, jnp.ones((4, 8)))
  assert count.matmul == 2 * 4 * 8 * 8 and count.while_loops == 1


def test_cond_counts_its_dearest_branch_and_nested_calls_are_followed():
  w = jnp.ones((8, 8))
  inner = jax.jit(lambda x: x @ w)
  fn = lambda x: jax.lax.cond(x[0, 0] > 0, lambda x: inner(inner(x)), lambda x: x @ w, x)
  assert flops.count_flops(fn, jnp.ones((4, 8))).matmul == 2 * (2 * 4 * 8 * 8)
  remat = jax.checkpoint(lambda x: jnp.sin(x @ w))
  count = flops.count_flops(remat, jnp.ones((4, 8)))
  assert count.matmul == 2 * 4 * 8 * 8 and count.elementwise == 4 * 8  # the sin


def test_sharded_programs_count_global_flops():
  mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Auto,))
  a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
  sharded = jax.jit(jnp.matmul, in_shardings=(NamedSharding(mesh, P("x")), None))
  assert flops.count_flops(sharded, a, b).matmul == 2 * 64 * 32 * 16
  # One device's partition: an eighth.
  assert flops.compiled_flops(sharded.lower(a, b).compile()) == 2 * 64 * 32 * 16 / 8
  # A shard_map body is one device's program; the count is over all 8.
  per_shard = jax.shard_map(lambda a, b: a @ b, mesh=mesh, in_specs=(P("x"), P()),
                            out_specs=P("x"))
  assert flops.count_flops(per_shard, a, b).matmul == 2 * 64 * 32 * 16


def test_mlp_gradient_is_about_three_forwards():
  widths = [64, 64, 64, 64, 64]
  keys = jax.random.split(jax.random.PRNGKey(0), len(widths) - 1)
  params = [jax.random.normal(k, (i, o)) for k, i, o in zip(keys, widths[:-1], widths[1:])]
  x = jnp.ones((32, 64))
  def loss(params, x):
    for w in params:
      x = jnp.tanh(x @ w)
    return jnp.mean(x ** 2)
  forward = flops.count_flops(loss, params, x).matmul
  assert forward == 4 * 2 * 32 * 64 * 64
  # Every layer: forward, d/dW and d/dx (the input's too, when it is differentiated).
  both = flops.count_flops(jax.value_and_grad(loss, argnums=(0, 1)), params, x).matmul
  assert both == 3 * forward
  # With respect to the parameters only, the first layer's d/dx is not computed.
  params_only = flops.count_flops(jax.value_and_grad(loss), params, x).matmul
  assert params_only == 3 * forward - 2 * 32 * 64 * 64
  assert 2.5 * forward < params_only < 3 * forward


class DiT(nn.Module):
  """A DiT trunk whose per-token conditioning comes from parameters, as in a real model (so
  every block's modulation needs its input gradient, like every other matmul)."""
  hidden: int
  layers: int
  heads: int

  @nn.compact
  def __call__(self, x, c):
    h = Dense(self.hidden, axes=(None, "embed"), name="embed_in")(x)
    cond = Dense(self.hidden, axes=(None, "embed"), name="cond_in")(c)
    h = dit_trunk(h, cond, layers=self.layers, heads=self.heads)
    return Dense(x.shape[-1], axes=("embed", None), name="out")(h)


def test_dit_training_step_is_6nd_plus_attention():
  batch, length, features, hidden, layers, heads = 2, 16, 32, 128, 4, 4
  model = DiT(hidden, layers, heads)
  x = jnp.ones((batch, length, features))
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), x, x)["params"])
  weights = sum(math.prod(p.shape) for p in jax.tree.leaves(params) if p.ndim >= 2)
  tokens = batch * length

  def loss(params, x, y):
    return jnp.mean((model.apply({"params": params}, x, x) - y) ** 2)

  count = flops.count_flops(jax.value_and_grad(loss), params, x, x)
  # Model FLOPs: 6 per weight per token (forward 2, backward 4), plus attention's QK^T and
  # AV: 2 x 2 x length x hidden per token and layer forward, x3 with the backward.
  attention = 12 * layers * length * hidden * tokens
  expected = 6 * weights * tokens + attention
  assert attention < 0.05 * expected  # sizes where 6ND dominates
  assert abs(count.total / expected - 1) < 0.10
  # The un-optimised program's XLA cost analysis agrees (it also counts elementwise ops).
  lowered = flops.lowered_flops(jax.value_and_grad(loss), params, x, x)
  assert count.total <= lowered <= count.total + 1.5 * count.elementwise


def test_flop_counts_add_and_scale():
  a = flops.FlopCount(matmul=2.0, conv=3.0, elementwise=1.0, while_loops=1, opaque=("x",))
  b = (a + a.scaled(2))
  assert (b.total, b.elementwise, b.while_loops, b.opaque) == (15.0, 3.0, 2, ("x",))
  assert np.isclose(flops.FlopCount().total, 0.0)

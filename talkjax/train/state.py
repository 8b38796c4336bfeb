"""The train state and its sharded creation."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from talkjax import parallel


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any            # None when config.train.ema_decay == 0
  nonfinite_streak: jax.Array  # consecutive steps whose update was skipped (NaN/Inf)
  nonfinite_total: jax.Array
  masked_total: jax.Array    # examples masked out by the robust-loss threshold so far


def state_layout(task, tx: optax.GradientTransformation, mesh, rules, seed: int, ema: bool):
  """The state's initialiser, its abstract shape and its shardings; nothing is allocated.

  The optimizer is initialised on the *boxed* parameters, so its moments inherit the
  parameters' logical names and are sharded the same way.
  """
  batch = task.example_batch(1)

  def init(rng):
    params = task.init(rng, batch)
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=params, opt_state=tx.init(params),
                      ema_params=params if ema else None,
                      nonfinite_streak=zero, nonfinite_total=zero, masked_total=zero)

  rng = jax.random.PRNGKey(seed)
  abstract = jax.eval_shape(init, rng)
  shardings = parallel.logical_to_sharding(parallel.logical_specs_of(abstract), mesh, rules)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          nn.meta.unbox(abstract), shardings)
  return init, rng, abstract, shardings


def create_state(task, tx, mesh, rules, seed: int, ema: bool):
  """Initialises the state directly into its sharded layout: (state, shardings)."""
  init, rng, _, _ = state_layout(task, tx, mesh, rules, seed, ema)
  return parallel.shard_init(init, mesh, rules, rng)


def abstract_params(task, seed: int = 0):
  """Unboxed parameter shapes (no memory used)."""
  boxed = jax.eval_shape(task.init, jax.random.PRNGKey(seed), task.example_batch(1))
  return nn.meta.unbox(boxed)

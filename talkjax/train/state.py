"""The train state and its sharded creation.

A task's parameters are split into the trainable leaves (`state.params`: the optimizer,
gradient clipping and EMA see these only) and the frozen ones (`state.frozen`: sharded by
the same rules and saved, but without gradients, optimizer moments or an EMA copy). The
loss sees the two merged back into the tree the task's `init` returned.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from talkjax import parallel, trees
from talkjax.errors import ConfigError
from talkjax.task import FROZEN, TRAINABLE


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any                # the trainable leaves
  frozen: Any                # the frozen leaves; None when there are none
  opt_state: Any
  ema_params: Any            # EMA of the trainable leaves; None when config.train.ema_decay == 0
  nonfinite_streak: jax.Array  # consecutive steps whose update was skipped (NaN/Inf)
  nonfinite_total: jax.Array
  masked_total: jax.Array    # examples masked out by the robust-loss threshold so far


def frozen_predicate(freeze_patterns: Sequence[str] = ()) -> Callable[[str], bool]:
  """Path -> frozen?: everything under "frozen/", and trainable paths matching a pattern."""
  patterns = [re.compile(p) for p in freeze_patterns]
  return lambda name: name.startswith(FROZEN + "/") or any(p.search(name) for p in patterns)


def split_params(params, freeze_patterns: Sequence[str] = ()) -> tuple[dict, dict | None]:
  """The tree `task.init` returns -> (trainable leaves, frozen leaves or None)."""
  if set(params) - {TRAINABLE, FROZEN}:
    raise TypeError(f"a task's init must return {{'{TRAINABLE}': ..., '{FROZEN}': ...}}, got "
                    f"the keys {sorted(params)}")
  frozen, trainable = trees.split(params, frozen_predicate(freeze_patterns))
  if not trainable:
    raise ConfigError(f"optimizer.freeze {tuple(freeze_patterns)} freezes every parameter",
                      fix="freeze fewer paths (patterns are regexes over "
                          "'trainable/block_0/attn/...')")
  return trainable, (frozen or None)


def full_params(state: TrainState, ema: bool = False):
  """The tree the task's loss sees: trainable (or their EMA) and frozen leaves merged."""
  trainable = state.ema_params if (ema and state.ema_params is not None) else state.params
  return trees.merge(trainable, state.frozen)


def state_layout(task, tx: optax.GradientTransformation, mesh, rules, seed: int, ema: bool,
                 freeze: Sequence[str] = ()):
  """The state's initialiser, its abstract shape and its shardings; nothing is allocated.

  The optimizer is initialised on the *boxed* trainable parameters, so its moments inherit
  the parameters' logical names and are sharded the same way.
  """
  batch = task.example_batch(1)

  def init(rng):
    trainable, frozen = split_params(task.init(rng, batch), freeze)
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=trainable, frozen=frozen, opt_state=tx.init(trainable),
                      ema_params=trainable if ema else None,
                      nonfinite_streak=zero, nonfinite_total=zero, masked_total=zero)

  rng = jax.random.PRNGKey(seed)
  abstract = jax.eval_shape(init, rng)
  shardings = parallel.logical_to_sharding(parallel.logical_specs_of(abstract), mesh, rules)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          nn.meta.unbox(abstract), shardings)
  return init, rng, abstract, shardings


def create_state(task, tx, mesh, rules, seed: int, ema: bool, freeze: Sequence[str] = ()):
  """Initialises the state directly into its sharded layout: (state, shardings)."""
  init, rng, _, _ = state_layout(task, tx, mesh, rules, seed, ema, freeze)
  return parallel.shard_init(init, mesh, rules, rng)


def abstract_params(task, seed: int = 0):
  """Unboxed shapes of the whole tree `task.init` returns (no memory used)."""
  boxed = jax.eval_shape(task.init, jax.random.PRNGKey(seed), task.example_batch(1))
  return nn.meta.unbox(boxed)


def abstract_trainable(task, freeze: Sequence[str] = (), seed: int = 0):
  """Unboxed shapes of the trainable leaves only (what the optimizer is built for)."""
  return split_params(abstract_params(task, seed), freeze)[0]


def with_values(state: TrainState, shardings: TrainState, values: dict) -> TrainState:
  """`state` with some leaves replaced by host values, keyed by their path in the tree the
  task's init returns (trainable leaves also reset their EMA copy). Each value is placed in
  its leaf's sharding, every process handing over only its own shards."""
  if not values:
    return state

  def place(tree, tree_sh):
    if tree is None:
      return None
    flat, flat_sh = trees.flatten(tree), trees.flatten(tree_sh)
    for name in flat.keys() & values.keys():
      value = np.asarray(values[name], flat[name].dtype)
      if value.shape != flat[name].shape:
        raise ConfigError(f"an initial value for {name!r} has shape {value.shape}, the model "
                          f"needs {flat[name].shape}", fix="check the source of that value")
      flat[name] = jax.make_array_from_callback(value.shape, flat_sh[name],
                                                lambda index, v=value: v[index])
    return trees.unflatten(flat)

  known = set(trees.flatten(trees.merge(state.params, state.frozen)))
  unknown = sorted(set(values) - known)
  if unknown:
    raise ConfigError(f"initial values name parameters the model does not have: {unknown[:5]}",
                      fix="the task's initial_values() must follow the layout of its init()")
  return state.replace(params=place(state.params, shardings.params),
                       frozen=place(state.frozen, shardings.frozen),
                       ema_params=place(state.ema_params, shardings.ema_params))

"""The optax optimizer a config describes: AdamW, warm-up + cosine/constant schedule,
gradient clipping, and per-parameter learning-rate scales by path patterns.

It is built for the trainable leaves only: frozen parameters (`optimizer.freeze` and a
task's "frozen" branch, see train/state.py) never reach it, so they have no moments and
their gradients do not count in the clipping norm."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import optax

from talkjax.errors import ConfigError
from talkjax.trees import path_name


def learning_rate_schedule(opt, total_steps: int) -> optax.Schedule:
  warmup = int(opt.warmup_steps)
  if opt.schedule == "constant":
    after = optax.constant_schedule(opt.lr)
  elif opt.schedule == "cosine":
    after = optax.cosine_decay_schedule(opt.lr, max(total_steps - warmup, 1), alpha=opt.min_lr_ratio)
  else:
    raise ConfigError(f"unknown optimizer.schedule {opt.schedule!r}", fix="use 'cosine' or 'constant'")
  if warmup <= 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, opt.lr, warmup), after], [warmup])


def update_scales(params, opt) -> object:
  """Per-leaf multipliers for the final update: the first matching lr scale (1 when none
  matches)."""
  scales = [(re.compile(p), float(s)) for p, s in opt.lr_scales]

  def scale(path, _):
    name = path_name(path)
    for pattern, s in scales:
      if pattern.search(name):
        return s
    return 1.0
  return jax.tree_util.tree_map_with_path(scale, params)


def scale_updates_by_path(scales) -> optax.GradientTransformation:
  def init(params):
    del params
    return optax.EmptyState()

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, s: u if s == 1.0 else u * jnp.asarray(s, u.dtype),
                        updates, scales), state
  return optax.GradientTransformation(init, update)


def make_optimizer(opt, total_steps: int, params_for_paths) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """`params_for_paths` is any tree with the trainable parameters' structure (abstract is
  fine)."""
  if opt.name != "adamw":
    raise ConfigError(f"unknown optimizer.name {opt.name!r}", fix="use 'adamw'")
  schedule = learning_rate_schedule(opt, total_steps)
  parts = []
  if opt.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(opt.clip_norm))
  parts.append(optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps,
                           weight_decay=opt.weight_decay))
  if opt.lr_scales:
    parts.append(scale_updates_by_path(update_scales(params_for_paths, opt)))
  return optax.chain(*parts), schedule

"""Trained parameters out of a training workdir, for sampling, evaluation and later stages.

The checkpoint's own resolved config rebuilds the model, so a workdir is self-describing:
`load_trained("runs/x")` needs nothing else. Parameters land on one device; callers
replicate or shard them for their own mesh.
"""

from __future__ import annotations

import pathlib

import jax
import ml_collections
import numpy as np

from talkjax.errors import TalkjaxError


def checkpoint_config(workdir, step: int | None = None) -> tuple[ml_collections.ConfigDict, int]:
  """(the resolved config a checkpoint was written with, its step)."""
  from talkjax.train.checkpoint import Checkpointer
  workdir = pathlib.Path(workdir).expanduser()
  folder = workdir / "checkpoints"
  if not folder.is_dir():
    raise TalkjaxError("no checkpoints in this training folder", path=workdir,
                       fix="train it first (talkjax train --config ... --workdir "
                           f"{workdir}) or point to the folder that holds checkpoints/")
  ckpt = Checkpointer(folder, ml_collections.ConfigDict(dict(keep=1, best_metric="",
                                                              best_mode="min", async_save=False)))
  try:
    steps = ckpt.all_steps()
    if not steps:
      raise TalkjaxError("the checkpoints folder holds no finished checkpoint", path=folder,
                         fix="let the training run reach its first save (checkpoint.every)")
    step = max(steps) if step is None else step
    if step not in steps:
      raise TalkjaxError(f"there is no checkpoint for step {step} (have {steps})", path=folder,
                         fix="pick one of those steps")
    return ml_collections.ConfigDict(ckpt.read_meta(step)["config"]), step
  finally:
    ckpt.close()


def load_trained(workdir, *, ema: bool = True, step: int | None = None):
  """(config, params as numpy arrays, step); the EMA copy when there is one and `ema`."""
  from talkjax import parallel
  from talkjax.models import make_task
  from talkjax.train.checkpoint import Checkpointer
  from talkjax.train.optimizer import make_optimizer
  from talkjax.train.state import abstract_params, state_layout

  config, step = checkpoint_config(workdir, step)
  task = make_task(config)
  tx, _ = make_optimizer(config.optimizer, config.train.steps, abstract_params(task, config.seed))
  single = ml_collections.ConfigDict(dict(data=1, fsdp=1, tensor=1))
  mesh = parallel.make_mesh(single, jax.local_devices()[:1])
  with_ema = config.train.ema_decay > 0
  _, _, abstract, _ = state_layout(task, tx, mesh, config.axis_rules, config.seed, ema=with_ema)
  ckpt = Checkpointer(pathlib.Path(workdir).expanduser() / "checkpoints", config.checkpoint)
  try:
    state, _ = ckpt.restore(step, abstract)
  finally:
    ckpt.close()
  params = state.ema_params if (ema and with_ema) else state.params
  return config, jax.tree.map(np.asarray, params), step

"""Reading training folders: a checkpoint's config and parameters, and stage chaining.

A training folder is self-describing: its checkpoints hold the resolved config, and the
parameters are read by the layout the checkpoint itself records, so no model needs to be
built to read them (and `train/` never has to import a model family). Only the parameters
are read; optimizer moments stay on disk.

Stages chain through the config (as big_vision's `model_init` does):
- a stage *reads* another: a config node `<name>.workdir` (and `<name>.config`, the config
  that trains it, for the error message) that the family loads with `load_stage`;
- a stage *starts from* another: `init_from.workdir` with `init_from.map`, applied by the
  trainer before step 0 (`init_from_values`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import sys

import jax
import ml_collections
import numpy as np

from talkjax import trees
from talkjax.errors import TalkjaxError


@dataclasses.dataclass
class Trained:
  workdir: pathlib.Path
  step: int
  config: ml_collections.ConfigDict
  params: dict      # the whole tree the task's init returns: {"trainable": ..., "frozen": ...}


def _checkpointer(workdir: pathlib.Path):
  from talkjax.train.checkpoint import Checkpointer
  folder = workdir / "checkpoints"
  if not folder.is_dir():
    raise TalkjaxError("no checkpoints in this training folder", path=workdir,
                       fix="train it first (talkjax train --config ... --workdir "
                           f"{workdir}) or point to the folder that holds checkpoints/")
  return Checkpointer(folder, ml_collections.ConfigDict(dict(keep=1, best_metric="",
                                                             best_mode="min", async_save=False)))


def _pick_step(ckpt, step: int | None) -> int:
  steps = ckpt.all_steps()
  if not steps:
    raise TalkjaxError("the checkpoints folder holds no finished checkpoint", path=ckpt.directory,
                       fix="let the training run reach its first save (checkpoint.every)")
  step = max(steps) if step is None else step
  if step not in steps:
    raise TalkjaxError(f"there is no checkpoint for step {step} (have {steps})",
                       path=ckpt.directory, fix="pick one of those steps")
  return step


def checkpoint_config(workdir, step: int | None = None) -> tuple[ml_collections.ConfigDict, int]:
  """(the resolved config a checkpoint was written with, its step)."""
  workdir = pathlib.Path(workdir).expanduser()
  ckpt = _checkpointer(workdir)
  try:
    step = _pick_step(ckpt, step)
    return ml_collections.ConfigDict(ckpt.read_meta(step)["config"]), step
  finally:
    ckpt.close()


def read_params(workdir, *, ema: bool = True, step: int | None = None) -> Trained:
  """The parameters of a training folder as numpy arrays (the EMA copy of the trainable
  leaves when there is one and `ema`), merged with the frozen leaves."""
  workdir = pathlib.Path(workdir).expanduser()
  ckpt = _checkpointer(workdir)
  try:
    step = _pick_step(ckpt, step)
    config = ml_collections.ConfigDict(ckpt.read_meta(step)["config"])
    state = ckpt.restore_parts(step, ("params", "frozen", "ema_params"))
  finally:
    ckpt.close()
  if "params" not in state:
    raise TalkjaxError("the checkpoint holds no parameters", path=workdir / "checkpoints" / str(step),
                       fix="point to a talkjax training folder")
  trainable = state["ema_params"] if (ema and state.get("ema_params")) else state["params"]
  params = jax.tree.map(np.asarray, trees.merge(trainable, state.get("frozen")))
  return Trained(workdir, step, config, params)


def load_stage(config, name: str, family: str, *, ema: bool = True) -> Trained:
  """The trained stage that `config.<name>` names ({workdir, config}); checks its family."""
  node = config[name]
  workdir = pathlib.Path(node.workdir).expanduser()
  if not (workdir / "checkpoints").is_dir():
    how = f"talkjax train --config {node.config} --workdir {workdir}" if node.get("config") \
        else f"talkjax train --workdir {workdir}"
    raise TalkjaxError(f"this stage reads the trained {name}, and {name}.workdir has no "
                       "checkpoints", path=workdir,
                       fix=f"train {name} first ({how}) or set {name}.workdir to its folder")
  trained = read_params(workdir, ema=ema)
  if trained.config.get("family") != family:
    raise TalkjaxError(f"{name}.workdir holds a {trained.config.get('family')!r} model, not "
                       f"{family!r}", path=workdir, fix=f"point {name}.workdir at a {family} "
                                                         "training folder")
  return trained


# ---- starting from another checkpoint ------------------------------------------------------

IDENTITY_MAP = (("(.*)", r"\1"),)


def init_from_values(init_from, target_shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
  """{target path: value} copied from `init_from.workdir`'s parameters.

  `init_from.map` is a sequence of (source regex, replacement) pairs over '/'-joined paths
  such as 'trainable/block_0/attn/to_q/kernel'; a source parameter whose whole path matches
  a pattern goes to the replaced path (first match wins). With the default map (every path
  to itself) parameters this model does not have are skipped and counted; with an explicit
  map a target that does not exist, or any shape mismatch, is an error naming both paths.
  """
  source = read_params(init_from.workdir, ema=bool(init_from.ema))
  mapping = tuple(tuple(m) for m in init_from.map) or IDENTITY_MAP
  explicit = bool(init_from.map)
  patterns = [(re.compile(p), r) for p, r in mapping]
  values, skipped = {}, 0
  for path, value in trees.flatten(source.params).items():
    for pattern, replacement in patterns:
      if pattern.fullmatch(path):
        target = pattern.sub(replacement, path, count=1)
        break
    else:
      continue
    if target not in target_shapes:
      if explicit:
        raise TalkjaxError(f"init_from.map sends {path!r} to {target!r}, which this model does "
                           "not have", path=source.workdir,
                           fix="correct init_from.map (targets: '/'-joined parameter paths)")
      skipped += 1
      continue
    if tuple(value.shape) != tuple(target_shapes[target]):
      raise TalkjaxError(f"init_from: {path!r} has shape {tuple(value.shape)} but {target!r} "
                         f"needs {tuple(target_shapes[target])}", path=source.workdir,
                         fix="map it elsewhere or leave it out of init_from.map")
    values[target] = value
  if not values:
    raise TalkjaxError("init_from matched no parameter of this model", path=source.workdir,
                       fix="check init_from.workdir and init_from.map")
  if jax.process_index() == 0:
    print(f"init_from: {len(values)} arrays from {source.workdir} (step {source.step})"
          + (f"; {skipped} that this model does not have were skipped" if skipped else ""),
          file=sys.stderr)
  return values

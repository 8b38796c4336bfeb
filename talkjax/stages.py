"""Reading training folders: a checkpoint's config and parameters, and stage chaining.

A training folder is self-describing: its checkpoints hold the resolved config, and the
parameters are read by the layout the checkpoint itself records, so no model needs to be
built to read them (and `train/` never has to import a model family). Only the parameters
are read; optimizer moments stay on disk.

Stages chain through the config (as big_vision's `model_init` does):
- a stage *reads* another: a config node `<name>.workdir` (and `<name>.config`, the config
  that trains it, for the error message) that the family loads with `load_stage`; the
  workdir may also be a model file (`talkjax convert bundle`) that carries that stage, so a
  new later stage can train on a shipped earlier one;
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
from talkjax.errors import TalkjaxError, first_line


@dataclasses.dataclass
class Trained:
  workdir: pathlib.Path   # the training folder (or the model file the stage came from)
  step: int
  config: ml_collections.ConfigDict
  params: dict      # the whole tree the task's init returns: {"trainable": ..., "frozen": ...}
  cache_dir: pathlib.Path | None = None   # where data derived from it is cached (the folder)

  def __post_init__(self):
    if self.cache_dir is None:
      self.cache_dir = self.workdir


def _checkpointer(workdir: pathlib.Path):
  from talkjax.train.checkpoint import Checkpointer
  folder = workdir / "checkpoints"
  if not folder.is_dir():
    raise TalkjaxError("no checkpoints in this training folder", path=workdir,
                       fix="train it first (talkjax train --config ... --workdir "
                           f"{workdir}) or point to the folder that holds checkpoints/")
  return Checkpointer(folder, read_only=True)   # never touches a live run's save in flight


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
    try:
      state = ckpt.restore_parts(step, ("params", "frozen", "ema_params"))
    except (ValueError, OSError) as e:  # tensorstore's NOT_FOUND arrives as a ValueError
      raise TalkjaxError(
          f"checkpoint {step} could not be read ({first_line(e)})", path=ckpt.directory / str(step),
          fix="rerun `talkjax train` on this folder (it sets a damaged newest checkpoint aside "
          "and resumes from the one before), or move that folder out of checkpoints/") from e
  finally:
    ckpt.close()
  if "params" not in state:
    raise TalkjaxError("the checkpoint holds no parameters", path=workdir / "checkpoints" / str(step),
                       fix="point to a talkjax training folder")
  trainable = state["ema_params"] if (ema and state.get("ema_params")) else state["params"]
  params = jax.tree.map(np.asarray, trees.merge(trainable, state.get("frozen")))
  return Trained(workdir, step, config, params)


def load_stage(config, name: str, family: str, *, ema: bool = True,
               from_model_file=None) -> Trained:
  """The trained stage that `config.<name>` names ({workdir, config}); checks its family.
  `from_model_file(params)`: the stage's parameter tree from a model file's parameters, for
  a family whose model files carry the stage (then `<name>.workdir` may name such a file)."""
  node = config[name]
  workdir = pathlib.Path(node.workdir).expanduser()
  if workdir.is_file() and from_model_file is not None:
    return _stage_of_model_file(workdir, name, family, from_model_file)
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


def renderer_as_generator(params: dict) -> dict:
  """A renderer stage (IF-MDM's, INFP's stage 1) as its training folder holds it, from the
  model file of a later stage: the file's `renderer` is the stage's generator (its
  discriminator is not in the file)."""
  return {"trainable": {"generator": params["renderer"]}}


def _stage_of_model_file(path: pathlib.Path, name: str, family: str, from_model_file) -> Trained:
  """Stage `name` out of a model file: its config is the file's linked config of that name,
  its parameters what `from_model_file` takes from the file's (as stored: float16 or int8
  weights read back as float32). Derived data is cached under ~/.cache/talkjax/stages/, by
  the file's content, since a model file may sit in a read-only place."""
  import hashlib

  from talkjax import bundle
  model = bundle.read(path)
  stage = model.linked.get(name)
  if stage is None or stage.get("family") != family:
    held = "none" if stage is None else repr(stage.get("family"))
    raise TalkjaxError(f"this model file carries no {family!r} {name} (its {name}: {held})",
                       path=path, fix=f"point {name}.workdir at a {family} training folder or "
                                      f"at a model file made from a stage that reads one")
  digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
  cache = pathlib.Path("~/.cache/talkjax/stages").expanduser() / f"{path.stem}-{digest}"
  return Trained(path, 0, stage, from_model_file(model.params), cache_dir=cache)


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

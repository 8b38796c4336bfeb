"""Orbax checkpoints: model state + Grain iterator state + the resolved config, as one.

Saves are asynchronous and atomic (Orbax writes to a temporary folder and renames it when
every process has finished), so an interrupted save never becomes the latest checkpoint;
a committed one that still fails to read back is set aside on resume (`restore_latest`).
Restore places every array straight into the current mesh's layout, so a run saved on 8
devices resumes on 4, 2 or 1.
"""

from __future__ import annotations

import json
import logging
import pathlib

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from talkjax.errors import TalkjaxError, first_line

ITEMS = ("state", "data", "meta")


def _not_read_only_notice(record: logging.LogRecord) -> bool:
  return not record.getMessage().startswith("Given directory is read only")


class Checkpointer:
  def __init__(self, directory: str | pathlib.Path, checkpoint_config=None, *,
               read_only: bool = False):
    """`read_only` for everything but the training run itself (sampling, evaluation,
    stage chaining): a writer's manager deletes unfinished temporary folders when it opens,
    and one opened beside a live run once deleted the save in flight, which Orbax then
    committed without its arrays."""
    self.directory = pathlib.Path(directory).absolute()
    if read_only:
      # Orbax warns "Given directory is read only" on every read-only open: for a reader
      # that is the point, not news, so that one message is kept out of the user's log.
      absl_log = logging.getLogger("absl")
      absl_log.addFilter(_not_read_only_notice)
      try:
        self.manager = ocp.CheckpointManager(
            self.directory, item_names=ITEMS, options=ocp.CheckpointManagerOptions(
                # what read_only implies anyway, spelled out so Orbax logs no warning for each
                read_only=True, create=False, cleanup_tmp_directories=False,
                save_interval_steps=0))
      finally:
        absl_log.removeFilter(_not_read_only_notice)
      return
    c = checkpoint_config
    policies = [ocp.checkpoint_managers.LatestN(n=int(c.keep))]
    if c.best_metric:
      if c.best_mode not in ("min", "max"):
        raise TalkjaxError(f"checkpoint.best_mode is {c.best_mode!r}", fix="use 'min' or 'max'")
      worst = float("inf") if c.best_mode == "min" else float("-inf")
      policies.append(ocp.checkpoint_managers.BestN(
          # Checkpoints saved without a fresh value of the metric rank last.
          get_metric_fn=lambda m: m.get(c.best_metric, worst), reverse=c.best_mode == "min", n=1,
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=bool(c.async_save), create=True,
        cleanup_tmp_directories=True,
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies))
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state, data_iterator, config: ml_collections.ConfigDict,
           metrics: dict | None = None) -> None:
    meta = {"config": json.loads(config.to_json_best_effort()),
            "process_count": jax.process_count(), "device_count": jax.device_count(),
            "step": int(step)}
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        meta=ocp.args.JsonSave(meta))
    self.manager.save(step, args=args, metrics=metrics, force=True)

  def read_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def restore(self, step: int, abstract_state, data_iterator=None):
    """Restores the state into `abstract_state`'s shardings (ShapeDtypeStructs with
    .sharding), and the data iterator in place when the process count matches.

    Returns (state, data_restored)."""
    meta = self.read_meta(step)
    restore_data = data_iterator is not None and meta["process_count"] == jax.process_count()
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if restore_data:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError) as e:
      raise TalkjaxError(f"checkpoint {step} does not match this model: {first_line(e)}",
                         path=self.directory / str(step),
                         fix="resume with the config that wrote it, or use a new --workdir") from e
    return restored["state"], restore_data

  def restore_latest(self, abstract_state, data_iterator=None):
    """Restores the newest checkpoint that reads back: (step, state, data_restored,
    set_aside), or None when there is none.

    A checkpoint can be committed yet unreadable (seen once after a SIGTERM save: Orbax
    wrote the commit marker and metadata but no array data, its temporary folder deleted
    mid-save by a reader that opened the folder as a writer, which `read_only` now
    avoids). When the newest fails and the one before it restores into the same model, the newest is damaged rather than from
    another config: it is moved to `<step>.unreadable` beside the others (kept, not
    deleted; Orbax ignores the name) and `set_aside` names it with the error. When both
    fail, the newest's error is raised: the config, not the folder, is what changed."""
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      return None
    try:
      return (steps[0], *self.restore(steps[0], abstract_state, data_iterator), None)
    except Exception as newest_error:  # noqa: BLE001 -- any read failure; re-raised below
      if len(steps) < 2:
        raise
      try:
        state, data_restored = self.restore(steps[1], abstract_state, data_iterator)
      except Exception:  # noqa: BLE001
        raise newest_error from None
      return steps[1], state, data_restored, self._set_aside(steps[0], newest_error)

  def _set_aside(self, step: int, error: Exception) -> dict:
    target, n = self.directory / f"{step}.unreadable", 1
    while target.exists():  # the same step set aside before: keep both
      n += 1
      target = self.directory / f"{step}.unreadable-{n}"
    if jax.process_index() == 0:
      (self.directory / str(step)).rename(target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"talkjax_set_aside_{step}")
    self.manager.reload()
    return {"step": step, "path": target, "error": first_line(error)}

  def restore_parts(self, step: int, names) -> dict:
    """Some top-level fields of the saved state (e.g. "params"), as numpy arrays on the
    host, read by the layout recorded in the checkpoint: no model or mesh is needed, and
    the other fields (optimizer moments) are not read at all."""
    folder = self.directory / str(step) / "state"
    handler = ocp.PyTreeCheckpointHandler()
    try:
      metadata = handler.metadata(folder)
      tree = getattr(metadata, "tree", metadata)
      wanted = [k for k in names if tree.get(k) is not None]
      as_numpy = lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype)
      target = {k: jax.tree.map(as_numpy, tree[k]) for k in wanted}
      restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
      restored = handler.restore(folder, args=ocp.args.PyTreeRestore(
          target, restore_args=restore_args, partial_restore=True))
    finally:
      handler.close()
    return {k: restored[k] for k in wanted}

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

"""The training loop, top to bottom: mesh -> state -> data -> resume -> steps -> checkpoints.

Knows no model family: it is handed a Task (talkjax/task.py). Resumes automatically from
WORKDIR/checkpoints; SIGTERM (preemption) saves a final checkpoint and exits cleanly.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import signal
import sys
import time
from typing import Callable

import jax
import numpy as np
from tqdm import tqdm

from talkjax import parallel, stages, trees
from talkjax.data.loader import make_loader
from talkjax.errors import TalkjaxError
from talkjax.train.checkpoint import Checkpointer
from talkjax.train.metrics import MetricsWriter, to_python
from talkjax.train.optimizer import make_optimizer
from talkjax.train.state import abstract_trainable, full_params, state_layout, with_values
from talkjax.train.step import make_train_step


@dataclasses.dataclass
class Hook:
  """Called as fn(step, state) every `every` steps (evaluation, sampling previews...).

  It may return a dict of metrics, which is logged and offered to best-checkpoint keeping.
  """
  every: int
  fn: Callable


class _Preemption:
  """Turns SIGTERM into a flag the loop checks after each step."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. inside a notebook worker)
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _trim_metrics(workdir: pathlib.Path, last_step: int) -> None:
  """Drops metric rows logged after the checkpoint we resume from (a discarded timeline)."""
  path = workdir / "metrics.jsonl"
  if jax.process_index() != 0 or not path.exists():
    return
  rows = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l)["step"] <= last_step]
  path.write_text("".join(r + "\n" for r in rows))


def make_eval_hook(task, config, mesh, rules, batch_sh, every: int, batches: int = 4) -> Hook:
  """Mean loss over a few batches of the task's eval split, logged as eval_loss."""
  source = task.data_source("eval")
  eval_loss = jax.jit(lambda p, b: task.loss(p, b, jax.random.PRNGKey(0))[0].mean())

  def fn(step, state):
    params = full_params(state)
    loader = make_loader(source, global_batch_size=config.data.batch_size, seed=0, shuffle=False,
                         num_epochs=1)
    losses = []
    for i, local in enumerate(loader):
      if i == batches:
        break
      losses.append(eval_loss(params, parallel.global_batch(local, batch_sh)))
    return {"eval_loss": float(np.mean(jax.device_get(losses)))}
  return Hook(every, fn)


def initial_values(task, config, abstract_state) -> dict:
  """{path: host value} for a run that starts from scratch: what the task derives from data
  (its optional `initial_values()`), then what `config.init_from` copies from another
  checkpoint (stage chaining; it wins where both give a value)."""
  values = trees.flatten(task.initial_values()) if hasattr(task, "initial_values") else {}
  init_from = config.get("init_from")
  if init_from is not None and init_from.workdir:
    shapes = {k: v.shape for k, v in
              trees.flatten(trees.merge(abstract_state.params, abstract_state.frozen)).items()}
    values.update(stages.init_from_values(init_from, shapes))
  return values


def train(config, task, workdir: str | pathlib.Path, *, hooks: list[Hook] = (),
          progress: bool = True, devices=None) -> dict:
  """Trains to config.train.steps (resuming from `workdir`); returns the last logged metrics.

  `devices` restricts the mesh to some devices (default: every device of every process).
  """
  workdir = pathlib.Path(workdir)
  tc = config.train
  rules = config.axis_rules
  mesh = parallel.make_mesh(config.mesh, devices)
  is_main = jax.process_index() == 0

  freeze = tuple(config.optimizer.freeze)
  tx, schedule = make_optimizer(config.optimizer, tc.steps,
                                abstract_trainable(task, freeze, config.seed))
  init, rng, abstract_state, state_sh = state_layout(task, tx, mesh, rules, config.seed,
                                                     ema=tc.ema_decay > 0, freeze=freeze)
  parallel.check_divisible(
      {k: v.shape for k, v in trees.flatten(trees.merge(abstract_state.params, abstract_state.frozen)).items()},
      trees.flatten(trees.merge(state_sh.params, state_sh.frozen)))
  batch_sh = parallel.batch_shardings(task.batch_axes(), mesh, rules)
  batch_ways = mesh.shape["data"] * mesh.shape["fsdp"]
  if config.data.batch_size % (batch_ways * tc.grad_accum):
    raise TalkjaxError(f"data.batch_size {config.data.batch_size} must split evenly over the "
                       f"{batch_ways} data-parallel devices (mesh data x fsdp) and "
                       f"{tc.grad_accum} accumulation steps",
                       fix=f"use a multiple of {batch_ways * tc.grad_accum}, or change the mesh")
  if config.data.batch_size % tc.grad_accum:
    raise TalkjaxError(f"data.batch_size {config.data.batch_size} is not a multiple of "
                       f"train.grad_accum {tc.grad_accum}", fix="make it divisible")

  loader = make_loader(task.data_source("train"), global_batch_size=config.data.batch_size,
                       seed=config.seed, shuffle=config.data.shuffle,
                       worker_count=config.data.worker_count)
  data = iter(loader)
  ckpt = Checkpointer(workdir / "checkpoints", config.checkpoint)
  resumed = ckpt.restore_latest(abstract_state, data)
  if resumed is None:
    start = 0
    state, _ = parallel.shard_init(init, mesh, rules, rng)
    state = with_values(state, state_sh, initial_values(task, config, abstract_state))
  else:
    start, state, data_restored, set_aside = resumed
    _trim_metrics(workdir, start)
    if is_main and set_aside:
      print(f"warning: checkpoint {set_aside['step']} could not be read ({set_aside['error']}); "
            f"moved to {set_aside['path']} and resuming from the one before", file=sys.stderr)
    if is_main:
      print(f"resumed from {ckpt.directory / str(start)} (step {start})", file=sys.stderr)
      if not data_restored:
        print("note: the checkpoint was written by a different number of processes, so the "
              "input pipeline restarts its order; parameters and optimizer are restored exactly",
              file=sys.stderr)

  step_fn = jax.jit(make_train_step(task, tx, schedule, tc, config.seed),
                    in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None),
                    donate_argnums=0)
  if tc.eval_every > 0:
    hooks = [make_eval_hook(task, config, mesh, rules, batch_sh, tc.eval_every), *hooks]
  writer = MetricsWriter(workdir)
  bar = tqdm(total=tc.steps, initial=start, disable=not (progress and is_main), unit="step",
             dynamic_ncols=True)
  last = {}
  t0, examples = time.perf_counter(), 0
  running = None   # the loss of the last step dispatched
  try:
    with parallel.use_mesh(mesh, rules), _Preemption() as preemption:
      for step in range(start, tc.steps):
        batch = parallel.global_batch(next(data), batch_sh)
        state, metrics = step_fn(state, batch)
        # At most this step waits behind the one running: without a bound the host queues
        # dozens of steps (each holding its batch in device memory), and the progress bar
        # and hooks run that far ahead of the finished work, so the logged rate and ETA
        # swing wildly. One queued step keeps the device busy.
        if running is not None:
          jax.block_until_ready(running)
        running = metrics["loss"]
        done = step + 1
        examples += config.data.batch_size
        extra = {}
        for hook in hooks:
          if done % hook.every == 0 or done == tc.steps:
            extra.update(hook.fn(done, state) or {})
        if done % tc.log_every == 0 or done == tc.steps or extra or preemption.requested:
          metrics, streak = jax.device_get((metrics, state.nonfinite_streak))
          elapsed = time.perf_counter() - t0
          last = {k: to_python(v) for k, v in {**metrics, **extra}.items()}
          last["examples_per_s"] = examples / elapsed
          last["steps_per_s"] = examples / config.data.batch_size / elapsed
          writer.write(done, last)
          bar.set_postfix(loss=f"{float(metrics['loss']):.4g}", ex_s=f"{last['examples_per_s']:.1f}")
          t0, examples = time.perf_counter(), 0
          if streak >= tc.max_nonfinite_steps:
            ckpt.wait()
            raise TalkjaxError(
                f"the loss or gradients were NaN/Inf for {int(streak)} steps in a row "
                f"(up to step {done}); updates were skipped",
                path=workdir, fix="lower optimizer.lr, enable optimizer.clip_norm, or check the "
                "data; the last good checkpoint is kept")
        bar.update(1)
        if done % config.checkpoint.every == 0 or done == tc.steps or preemption.requested:
          numeric = {k: v for k, v in last.items() if isinstance(v, (int, float))}
          if config.checkpoint.best_metric not in extra:  # only a value measured now counts
            numeric.pop(config.checkpoint.best_metric, None)
          ckpt.save(done, state, data, config, metrics=numeric)
        if preemption.requested:
          if is_main:
            print(f"preempted (SIGTERM): saved step {done}; rerun the same command to resume",
                  file=sys.stderr)
          break
  finally:
    bar.close()
    ckpt.close()
    writer.close()
  last["step"] = int(jax.device_get(state.step))
  last["nonfinite_total"] = int(jax.device_get(state.nonfinite_total))
  last["masked_total"] = int(jax.device_get(state.masked_total))
  return last

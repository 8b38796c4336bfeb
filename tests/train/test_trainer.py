"""The trainer on the test-bed: sharding-invariance, accumulation, masking, guards, EMA."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkjax import parallel
from talkjax.errors import TalkjaxError
from talkjax.models import make_task
from talkjax.models import testbed
from talkjax.train.loop import Hook, train
from talkjax.train.metrics import read_metrics
from talkjax.train.optimizer import make_optimizer
from talkjax import trees
from talkjax.train.state import abstract_trainable, create_state, full_params
from talkjax.train.step import make_train_step

from train_helpers import restore_params, tiny_config


def losses(workdir):
  return np.array([row["loss"] for row in read_metrics(workdir)])


def test_same_loss_trajectory_on_1_and_8_devices(tmp_path):
  config = tiny_config("train.steps=20", "checkpoint.every=20")
  train(config, make_task(config), tmp_path / "one", progress=False, devices=jax.devices()[:1])
  eight = tiny_config("train.steps=20", "checkpoint.every=20", "mesh.data=2", "mesh.fsdp=2",
                  "mesh.tensor=2")
  train(eight, make_task(eight), tmp_path / "eight", progress=False)
  a, b = losses(tmp_path / "one"), losses(tmp_path / "eight")
  assert len(a) == len(b) == 20
  assert a[-1] < 0.7 * a[0]  # it learns
  np.testing.assert_allclose(b, a, rtol=1e-5)
  pa, _ = restore_params(tmp_path / "one", config, jax.devices()[:1])
  pb, _ = restore_params(tmp_path / "eight", eight, jax.devices())
  # Parameters agree too, up to Adam amplifying float noise in near-zero gradients (biases
  # that a LayerNorm cancels), so compare over the whole tree.
  diff = np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb))))
  norm = np.sqrt(sum(np.sum(y ** 2) for y in jax.tree.leaves(pb)))
  assert diff <= 1e-3 * norm


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
  base = ("train.steps=3", "checkpoint.every=3")
  full = tiny_config(*base)
  accum = tiny_config(*base, "train.grad_accum=4")
  train(full, make_task(full), tmp_path / "full", progress=False, devices=jax.devices()[:2])
  train(accum, make_task(accum), tmp_path / "accum", progress=False, devices=jax.devices()[:2])
  np.testing.assert_allclose(losses(tmp_path / "accum"), losses(tmp_path / "full"), rtol=1e-5)


def _one_step(config, task=None):
  """(task, the whole initial parameter tree, batch, state after one step, metrics)."""
  task = task or make_task(config)
  freeze = tuple(config.optimizer.freeze)
  tx, schedule = make_optimizer(config.optimizer, config.train.steps, abstract_trainable(task, freeze))
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  state, _ = create_state(task, tx, mesh, config.axis_rules, config.seed,
                          ema=config.train.ema_decay > 0, freeze=freeze)
  init_params = jax.tree.map(np.array, full_params(state))
  source = task.data_source("train")
  batch = {k: np.stack([source[i][k] for i in range(config.data.batch_size)])
           for k in ("x", "y", "index")}
  step = jax.jit(make_train_step(task, tx, schedule, config.train, config.seed))
  new_state, metrics = step(state, batch)
  return task, init_params, batch, new_state, jax.device_get(metrics)


def test_robust_training_masks_and_counts_large_losses():
  config = tiny_config("train.robust_loss_threshold=3.0")
  task, params, batch, state, metrics = _one_step(config)
  per_example, _ = jax.jit(lambda p, b: task.loss(p, b, None))(params, batch)
  per_example = np.asarray(per_example)
  expected_masked = int(np.sum(per_example > 3.0))
  assert 0 < expected_masked < len(per_example)  # the threshold splits this batch
  assert metrics["masked"] == expected_masked == int(state.masked_total)
  np.testing.assert_allclose(metrics["loss"], per_example[per_example <= 3.0].mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["loss_unmasked"], per_example.mean(), rtol=1e-5)


class NaNTask(testbed.TestbedTask):
  def loss(self, params, batch, rng):
    per_example, metrics = super().loss(params, batch, rng)
    return per_example * jnp.nan, metrics


def test_nonfinite_step_is_skipped_and_counted():
  config = tiny_config()
  _, params, _, state, metrics = _one_step(config, NaNTask(config))
  assert not metrics["finite"]
  assert int(state.nonfinite_streak) == 1 and int(state.nonfinite_total) == 1
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, full_params(state)), params)


def test_training_stops_after_n_nonfinite_steps_in_a_row(tmp_path):
  config = tiny_config("train.max_nonfinite_steps=3", "train.steps=10")
  with pytest.raises(TalkjaxError, match="NaN/Inf for 3 steps in a row"):
    train(config, NaNTask(config), tmp_path, progress=False, devices=jax.devices()[:1])
  assert [r["finite"] for r in read_metrics(tmp_path)] == [False] * 3


def test_frozen_paths_do_not_move_and_lr_scales_apply():
  config = tiny_config("optimizer.freeze=('block_0/attn',)", "optimizer.lr_scales=(('head', 0.0),)")
  _, params, _, state, _ = _one_step(config)
  new = jax.tree.map(np.asarray, full_params(state))["trainable"]
  old = params["trainable"]
  np.testing.assert_array_equal(new["block_0"]["attn"]["to_q"]["kernel"],
                                old["block_0"]["attn"]["to_q"]["kernel"])
  np.testing.assert_array_equal(new["head"]["kernel"], old["head"]["kernel"])
  assert not np.array_equal(new["block_0"]["mlp_in"]["kernel"], old["block_0"]["mlp_in"]["kernel"])


def test_frozen_parameters_have_no_optimizer_state_and_no_ema_copy():
  config = tiny_config("optimizer.freeze=('block_0/attn',)", "train.ema_decay=0.5")
  _, _, _, state, _ = _one_step(config)
  frozen = set(trees.flatten(state.frozen))
  assert "trainable/block_0/attn/to_q/kernel" in frozen
  assert "frozen/input_stats/mean" in frozen       # the task's own frozen branch
  assert not frozen & set(trees.flatten(state.params))
  assert not frozen & set(trees.flatten(state.ema_params))
  # Adam's moments exist for the trainable leaves only: count their elements.
  trainable_size = sum(x.size for x in jax.tree.leaves(state.params))
  moments = sum(x.size for x in jax.tree.leaves(state.opt_state) if x.ndim > 0)
  assert moments == 2 * trainable_size


def test_clipping_ignores_frozen_gradients():
  """A frozen leaf with a large gradient: counting it in the global norm would shrink the
  real update. The step must equal AdamW on the trainable gradients clipped by their own
  norm. (A large Adam eps makes the update depend on the gradient's scale.)"""
  import optax
  config = tiny_config("optimizer.freeze=('embed_in', 'block_0/mlp')", "optimizer.clip_norm=1.0",
                       "optimizer.eps=1.0", "optimizer.lr=0.1")
  task = make_task(config)
  _, params, batch, state, metrics = _one_step(config, task)
  grads = jax.jit(jax.grad(lambda p: task.loss(p, batch, None)[0].mean()))(params)["trainable"]
  is_frozen = lambda k: k.startswith(("embed_in/", "block_0/mlp"))
  trainable = trees.split(params["trainable"], is_frozen)[1]
  trainable_grads = trees.split(grads, is_frozen)[1]
  norm_trainable = float(optax.tree.norm(trainable_grads))
  norm_all = float(optax.tree.norm(grads))
  assert norm_trainable > 1.0              # so clipping acts
  assert norm_all > 1.05 * norm_trainable  # so counting the frozen gradient would matter
  np.testing.assert_allclose(metrics["grad_norm"], norm_trainable, rtol=1e-5)
  o = config.optimizer

  tx = optax.adamw(o.lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay)

  @jax.jit
  def adamw(g, trainable, divisor):
    g = jax.tree.map(lambda x: x / divisor, g)
    updates, _ = tx.update(g, tx.init(trainable), trainable)
    return optax.apply_updates(trainable, updates)

  def first_step(norm):  # AdamW's first step on the trainable gradients clipped to norm 1
    return trees.flatten(adamw(trainable_grads, trainable, max(1.0, norm)))

  got = trees.flatten(jax.tree.map(np.asarray, full_params(state))["trainable"])
  expected, counted = first_step(norm_trainable), first_step(norm_all)
  for path, want in expected.items():
    np.testing.assert_allclose(got[path], want, rtol=1e-5, atol=1e-7)
  moved = lambda step: np.abs(step["head/kernel"] - trainable["head"]["kernel"]).mean()
  assert moved(counted) < 0.97 * moved(expected)   # counting would have shrunk the update
  np.testing.assert_array_equal(got["embed_in/kernel"], params["trainable"]["embed_in"]["kernel"])


def test_eval_hook_logs_eval_loss_and_best_checkpoint_is_kept(tmp_path):
  config = tiny_config("train.steps=6", "train.eval_every=2", "checkpoint.every=1", "checkpoint.keep=1",
                   "checkpoint.best_metric=eval_loss", "optimizer.lr=0.5",
                   "optimizer.schedule=constant")  # a huge lr makes eval loss go up and down
  train(config, make_task(config), tmp_path, progress=False, devices=jax.devices()[:1])
  rows = [r for r in read_metrics(tmp_path) if "eval_loss" in r]
  assert [r["step"] for r in rows] == [2, 4, 6]
  best = min(rows, key=lambda r: r["eval_loss"])["step"]
  kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert kept == sorted({best, 6})


class HeavyTask(testbed.TestbedTask):
  """The test-bed with a few hundred milliseconds of matrix products in every step."""

  def loss(self, params, batch, rng):
    per_example, metrics = super().loss(params, batch, rng)
    x = jnp.full((384, 384), 1e-3) * per_example[0]
    x = jax.lax.fori_loop(0, 40, lambda i, x: jnp.tanh(x @ x), x)
    return per_example + 0 * x[0, 0], metrics


def test_the_loop_runs_at_most_one_step_ahead_of_the_finished_ones(tmp_path):
  """Hooks and the progress bar follow finished steps, not a queue of dispatched ones: an
  unbounded queue made the log's rate and ETA swing between 5 steps/s and 100 s/step, and
  every queued step holds its batch in device memory. Unbounded, all 12 hooks ran within
  a few milliseconds (4 % of the run) and the loop then waited for the queue; bounded,
  they spread over it."""
  config = tiny_config("train.steps=12", "checkpoint.every=12", "train.log_every=12")
  called = []
  hook = Hook(every=1, fn=lambda step, state: called.append(time.perf_counter()))
  train(config, HeavyTask(config), tmp_path, hooks=[hook], progress=False,
        devices=jax.devices()[:1])
  returned = time.perf_counter()
  assert len(called) == 12
  assert called[-1] - called[0] >= 0.5 * (returned - called[0])

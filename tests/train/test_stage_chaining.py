"""Stage chaining by config: a run starts from another training folder's parameters
(`init_from`), and statistics a task derives from data live in the checkpoint."""

import jax
import numpy as np
import pytest

from talkjax import stages, trees
from talkjax.errors import TalkjaxError
from talkjax.models import make_task
from talkjax.train.loop import train

from train_helpers import tiny_config

ONE_DEVICE = dict(progress=False, devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def first(tmp_path_factory):
  """A one-block test-bed trained for 3 steps."""
  workdir = tmp_path_factory.mktemp("chain") / "first"
  config = tiny_config("model.layers=1", "train.steps=3", "checkpoint.every=3",
                       "checkpoint.async_save=False")
  train(config, make_task(config), workdir, **ONE_DEVICE)
  return stages.read_params(workdir, ema=False)


def start_of(tmp_path, *overrides):
  """The parameters a run starts from: one step at learning rate 0 keeps them."""
  config = tiny_config("train.steps=1", "checkpoint.every=1", "checkpoint.async_save=False",
                       "optimizer.lr=0.0", "optimizer.weight_decay=0.0", *overrides)
  train(config, make_task(config), tmp_path, **ONE_DEVICE)
  return trees.flatten(stages.read_params(tmp_path, ema=False).params)


def test_a_stage_starts_from_another_with_renamed_paths(first, tmp_path):
  start = start_of(tmp_path / "second", "model.layers=2", f"init_from.workdir={first.workdir}",
                   "init_from.map=(('trainable/block_0/(.*)', r'trainable/block_1/\\1'), "
                   "('trainable/(embed_in|head)/(.*)', r'trainable/\\1/\\2'))")
  source = trees.flatten(first.params)
  for name, value in source.items():
    if name.startswith("trainable/block_0/"):
      np.testing.assert_array_equal(start[name.replace("block_0", "block_1")], value)
      assert not np.array_equal(start[name], value) or "bias" in name   # block_0: fresh init
    elif name.startswith(("trainable/embed_in/", "trainable/head/")):
      np.testing.assert_array_equal(start[name], value)
  # Not mapped: the frozen statistics come from this run's own data (the same data here).
  np.testing.assert_allclose(start["frozen/input_stats/std"], source["frozen/input_stats/std"])


def test_the_default_map_copies_what_both_have(first, tmp_path, capsys):
  start = start_of(tmp_path / "same", "model.layers=1", f"init_from.workdir={first.workdir}")
  for name, value in trees.flatten(first.params).items():
    np.testing.assert_array_equal(start[name], value)
  assert "init_from: 18 arrays from" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    (("init_from.map=(('trainable/head/(.*)', r'trainable/tail/\\1'),)",), "which this model does not have"),
    (("model.mlp=32", "init_from.map=(('trainable/block_0/mlp_in/kernel', 'trainable/block_0/mlp_in/kernel'),)"),
     "has shape .32, 64. but 'trainable/block_0/mlp_in/kernel' needs .32, 32."),
])
def test_bad_maps_are_clear_errors(first, tmp_path, overrides, message):
  with pytest.raises(TalkjaxError, match=message):
    start_of(tmp_path / "bad", "model.layers=1", f"init_from.workdir={first.workdir}", *overrides)


def test_resuming_restores_the_statistics_and_never_recomputes_them(tmp_path, monkeypatch):
  config = tiny_config("train.steps=2", "checkpoint.every=1", "checkpoint.async_save=False")
  train(config, make_task(config), tmp_path, **ONE_DEVICE)
  saved = stages.read_params(tmp_path).params["frozen"]["input_stats"]
  task = make_task(config)
  np.testing.assert_allclose(saved["mean"], task.initial_values()["frozen"]["input_stats"]["mean"])
  longer = tiny_config("train.steps=3", "checkpoint.every=1", "checkpoint.async_save=False")
  task = make_task(longer)
  monkeypatch.setattr(task, "initial_values", lambda: pytest.fail("recomputed on resume"))
  train(longer, task, tmp_path, **ONE_DEVICE)
  np.testing.assert_array_equal(stages.read_params(tmp_path).params["frozen"]["input_stats"]["mean"],
                                saved["mean"])

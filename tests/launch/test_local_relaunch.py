"""`talkjax launch local` end to end: 2 processes train and checkpoint; relaunched with 4
processes, then with 1, the same command resumes each time with exactly the parameters
the previous launch saved (resharded onto the new processes' devices)."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from talkjax import config as cfg

BASE = ["train.log_every=1", "optimizer.warmup_steps=0", "data.num_examples=64",
        "checkpoint.async_save=False"]


def launch(tmp_path, name, processes, devices, *overrides):
  proc = subprocess.run(
      [sys.executable, "-m", "talkjax.cli", "launch", "local", "--processes", str(processes),
       "--devices-per-process", str(devices), "--log-dir", str(tmp_path / name), "--timeout",
       "400", "--", sys.executable, "-m", "talkjax.cli", "train", "--config", "testbed/tiny",
       "--workdir", str(tmp_path / "run"), "--set", *BASE, *overrides],
      capture_output=True, text=True, timeout=450)
  assert proc.returncode == 0, proc.stderr
  return (tmp_path / name / "process_0.log").read_text()


def params_at(tmp_path, step, *overrides):
  from train_helpers import restore_params
  config = cfg.load_config("testbed/tiny", [*BASE, *overrides])
  params, found = restore_params(tmp_path / "run", config, jax.devices()[:4], step)
  assert found == step
  return dict(jax.tree_util.tree_flatten_with_path(params)[0])


@pytest.mark.multiprocess
def test_a_relaunch_on_another_number_of_processes_resumes_exactly(tmp_path):
  launch(tmp_path, "first", 2, 2, "train.steps=4", "checkpoint.every=4")
  saved = params_at(tmp_path, 4)
  # Training moved them (so the equality below means something): the loss fell.
  metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  losses = [json.loads(line)["loss"] for line in metrics]
  assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
  # With the learning rate at 0 a step changes nothing: the parameters after it are the
  # ones the relaunch restored, so any resharding or restore error would show here.
  log = launch(tmp_path, "four", 4, 1, "train.steps=5", "checkpoint.every=1", "optimizer.lr=0.0")
  assert "(step 4)" in log and "different number of processes" in log, log
  log = launch(tmp_path, "one", 1, 4, "train.steps=6", "checkpoint.every=1", "optimizer.lr=0.0")
  assert "(step 5)" in log, log
  for step in (5, 6):
    restored = params_at(tmp_path, step)
    assert restored.keys() == saved.keys()
    for key in saved:
      np.testing.assert_array_equal(restored[key], saved[key], err_msg=str(key))

"""Exact resume after SIGKILL, clean exit on SIGTERM, atomic checkpoints, and a damaged
newest checkpoint set aside on resume."""

import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from talkjax import stages
from talkjax.errors import TalkjaxError
from talkjax.models import make_task
from talkjax.train.checkpoint import Checkpointer
from talkjax.train.loop import train
from talkjax.train.metrics import read_metrics

from train_helpers import SLOW_MODEL, restore_params, tiny_config

# A constant schedule makes the total step count irrelevant to the first 20 steps, so a
# long run that is killed and a 20-step run describe the same trajectory.
COMMON = ["optimizer.schedule=constant", "checkpoint.every=10", *SLOW_MODEL]


def start_training(workdir, steps, extra_env=None):
  cmd = [sys.executable, "-m", "talkjax.cli", "train", "--config", "testbed/tiny", "--workdir",
         str(workdir), "--set", f"train.steps={steps}", "optimizer.warmup_steps=0", *COMMON]
  # One device per training process keeps compilation quick; restore below uses 8.
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", **(extra_env or {})}
  return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_checkpoint(proc, workdir, step, timeout=240):
  target = workdir / "checkpoints" / str(step)
  deadline = time.monotonic() + timeout
  while not target.exists():
    assert proc.poll() is None, proc.communicate()
    assert time.monotonic() < deadline, "no checkpoint appeared"
    time.sleep(0.02)


def run_to_end(workdir, steps):
  proc = start_training(workdir, steps)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err
  return err


def test_sigkill_then_resume_gives_identical_parameters(tmp_path):
  config = tiny_config("train.steps=20", "optimizer.warmup_steps=0", *COMMON)
  # The reference runs in a process of its own too: bit-exactness on CPU needs the same
  # XLA setup (a process with 8 fake devices compiles its 1-device program differently).
  run_to_end(tmp_path / "straight", 20)

  killed = tmp_path / "killed"
  proc = start_training(killed, 1000)
  wait_for_checkpoint(proc, killed, 10)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  ckpt = Checkpointer(killed / "checkpoints", config.checkpoint)
  assert 10 <= ckpt.latest_step() < 20  # really interrupted between the two
  ckpt.close()
  err = run_to_end(killed, 20)
  assert "resumed from" in err

  devices = jax.devices()
  a, step_a = restore_params(tmp_path / "straight", config, devices)
  b, step_b = restore_params(killed, config, devices)
  assert step_a == step_b == 20
  jax.tree.map(np.testing.assert_array_equal, a, b)
  steps_logged = [r["step"] for r in read_metrics(killed)]
  assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == 20


def test_sigterm_saves_and_exits_cleanly(tmp_path):
  proc = start_training(tmp_path, 1000)
  wait_for_checkpoint(proc, tmp_path, 10)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err
  assert "preempted (SIGTERM): saved step" in err
  saved = int(err.split("saved step ")[1].split(";")[0])
  config = tiny_config(*COMMON)
  ckpt = Checkpointer(tmp_path / "checkpoints", config.checkpoint)
  assert ckpt.latest_step() == saved and 10 <= saved < 1000
  ckpt.close()


def test_an_interrupted_save_never_becomes_the_latest(tmp_path, caplog):
  config = tiny_config("train.steps=10", "checkpoint.every=10")
  run_dir = tmp_path
  train(config, make_task(config), run_dir, progress=False, devices=jax.devices()[:1])
  # What a save killed half-way leaves behind: Orbax's temporary folder for a later step.
  partial = run_dir / "checkpoints" / "20.orbax-checkpoint-tmp-1234567890"
  (partial / "state").mkdir(parents=True)
  (partial / "state" / "garbage").write_bytes(b"\0" * 100)
  # A reader (sampling, evaluation, the next stage) opened beside a live run leaves such a
  # folder alone: it may be the save in flight.
  with caplog.at_level(logging.WARNING):
    assert stages.read_params(run_dir).step == 10 and stages.checkpoint_config(run_dir)[1] == 10
  assert (partial / "state" / "garbage").is_file()
  # and says nothing about opening read-only (Orbax's notice, on every open, is filtered)
  assert not [r for r in caplog.records if "read only" in r.getMessage()]
  ckpt = Checkpointer(run_dir / "checkpoints", config.checkpoint)
  assert ckpt.latest_step() == 10 and ckpt.all_steps() == [10]
  ckpt.close()
  params, step = restore_params(run_dir, config, jax.devices()[:1])
  assert step == 10


def _damage(checkpoint):
  """What one SIGTERM save left behind: Orbax's commit marker and metadata, no array data."""
  for path in (checkpoint / "state").iterdir():
    if path.name not in ("_METADATA", "_sharding", "commit_success.txt"):
      shutil.rmtree(path) if path.is_dir() else path.unlink()


def test_a_committed_but_unreadable_newest_checkpoint_is_set_aside_on_resume(tmp_path, capsys):
  devices = jax.devices()[:1]
  config = tiny_config("train.steps=20", "checkpoint.every=10")
  train(config, make_task(config), tmp_path, progress=False, devices=devices)
  _damage(tmp_path / "checkpoints" / "20")
  with pytest.raises(TalkjaxError, match="checkpoint 20 could not be read"):
    stages.read_params(tmp_path)
  capsys.readouterr()

  config = tiny_config("train.steps=30", "checkpoint.every=10")
  last = train(config, make_task(config), tmp_path, progress=False, devices=devices)
  err = capsys.readouterr().err
  assert "warning: checkpoint 20 could not be read" in err
  assert "(step 10)" in err  # resumed from the one before
  assert last["step"] == 30
  aside = tmp_path / "checkpoints" / "20.unreadable"
  assert (aside / "state" / "_METADATA").is_file()  # kept for inspection, not deleted
  assert stages.read_params(tmp_path).step == 30
  steps_logged = [r["step"] for r in read_metrics(tmp_path)]
  assert steps_logged == list(range(1, 31))  # the damaged timeline's rows were replaced
  # The same step damaged again is set aside beside the first, not over it.
  shutil.rmtree(tmp_path / "checkpoints" / "30")
  _damage(tmp_path / "checkpoints" / "20")
  config = tiny_config("train.steps=20", "checkpoint.every=10")
  train(config, make_task(config), tmp_path, progress=False, devices=devices)
  assert "20.unreadable-2" in capsys.readouterr().err
  assert (aside / "state" / "_METADATA").is_file()


def test_a_changed_config_is_not_mistaken_for_a_damaged_checkpoint(tmp_path):
  devices = jax.devices()[:1]
  config = tiny_config("train.steps=20", "checkpoint.every=10")
  train(config, make_task(config), tmp_path, progress=False, devices=devices)
  wider = tiny_config("train.steps=30", "checkpoint.every=10", "model.embed=48")
  with pytest.raises(TalkjaxError, match="checkpoint 20 does not match this model"):
    train(wider, make_task(wider), tmp_path, progress=False, devices=devices)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "20"]

"""2 processes x 2 devices train and save (and set a damaged newest checkpoint aside on
resume, together); 1 process x 4 devices (and x 1) restores."""

import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from train_helpers import restore_params, tiny_config

OVERRIDES = ["train.steps=6", "checkpoint.every=3", "data.num_examples=256", "train.log_every=1"]

SCRIPT = textwrap.dedent("""
    import pathlib, shutil, sys
    import jax, numpy as np
    from jax.experimental import multihost_utils
    from talkjax import parallel
    parallel.initialize_distributed()
    from talkjax.config import load_config
    from talkjax.data.loader import make_loader
    from talkjax.models import make_task
    from talkjax.train.loop import train

    out = pathlib.Path(sys.argv[1])
    config = load_config("testbed/tiny", sys.argv[2:])
    task = make_task(config)
    assert jax.process_count() == 2 and jax.device_count() == 4
    train(config, task, out / "run", progress=False)

    # Step 6 committed but unreadable (what one SIGTERM save left: metadata, no arrays):
    # both processes fall back to step 3, process 0 sets 6 aside, and they train on together.
    if jax.process_index() == 0:
        for p in (out / "run" / "checkpoints" / "6" / "state").iterdir():
            if p.name not in ("_METADATA", "_sharding", "commit_success.txt"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    multihost_utils.sync_global_devices("damaged")
    train(config, task, out / "run", progress=False)
    assert (out / "run" / "checkpoints" / "6.unreadable").is_dir()

    # The examples this process reads in one epoch of the training loader.
    loader = make_loader(task.data_source("train"), global_batch_size=config.data.batch_size,
                         seed=config.seed, num_epochs=1)
    np.save(out / f"indices_{jax.process_index()}.npy", np.concatenate([b["index"] for b in loader]))

    # The final parameters as the 2-process run holds them, gathered to every host.
    from talkjax.train.checkpoint import Checkpointer
    from talkjax.train.optimizer import make_optimizer
    from talkjax.train.state import abstract_trainable, state_layout
    tx, _ = make_optimizer(config.optimizer, config.train.steps, abstract_trainable(task))
    mesh = parallel.make_mesh(config.mesh)
    _, _, abstract, _ = state_layout(task, tx, mesh, config.axis_rules, config.seed, ema=False)
    ckpt = Checkpointer(out / "run" / "checkpoints", config.checkpoint)
    state, _ = ckpt.restore(ckpt.latest_step(), abstract)
    ckpt.close()
    flat = {"/".join(k.key for k in path): np.asarray(multihost_utils.process_allgather(x, tiled=True))
            for path, x in jax.tree_util.tree_flatten_with_path(state.params)[0]}
    if jax.process_index() == 0:
        np.savez(out / "params.npz", **flat)
""")


@pytest.mark.multiprocess
def test_two_processes_train_and_one_process_restores(tmp_path):
  script = tmp_path / "run.py"
  script.write_text(SCRIPT)
  proc = subprocess.run(
      [sys.executable, "-m", "talkjax_launch.local", "--processes", "2", "--devices-per-process",
       "2", "--log-dir", str(tmp_path / "logs"), "--timeout", "400", "--",
       sys.executable, str(script), str(tmp_path), *OVERRIDES],
      capture_output=True, text=True, timeout=450)
  assert proc.returncode == 0, proc.stderr
  assert "warning: checkpoint 6 could not be read" in (tmp_path / "logs" / "process_0.log").read_text()

  # Each process read a disjoint shard; together they cover the epoch.
  a, b = (np.load(tmp_path / f"indices_{i}.npy") for i in range(2))
  assert len(np.intersect1d(a, b)) == 0
  config = tiny_config(*OVERRIDES)
  per_epoch = (config.data.num_examples // config.data.batch_size) * config.data.batch_size
  assert len(a) + len(b) == per_epoch == 256
  assert np.array_equal(np.sort(np.concatenate([a, b])), np.arange(256))

  saved = dict(np.load(tmp_path / "params.npz"))
  for devices in (jax.devices()[:4], jax.devices()[:1]):
    params, step = restore_params(tmp_path / "run", config, devices)
    assert step == 6
    flat = {"/".join(k.key for k in path): x
            for path, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert flat.keys() == saved.keys()
    for k in flat:
      np.testing.assert_array_equal(flat[k], saved[k], err_msg=k)


def test_launcher_fails_loudly_when_a_process_fails(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "talkjax_launch.local", "--processes", "2", "--log-dir",
       str(tmp_path), "--", sys.executable, "-c",
       "import os, sys, time\n"
       "if os.environ['TALKJAX_PROCESS_ID'] == '1': print('boom'); sys.exit(3)\n"
       "time.sleep(60)"],
      capture_output=True, text=True, timeout=60)
  assert proc.returncode == 3
  assert "process 1 failed with status 3" in proc.stderr and "boom" in proc.stderr
  assert (tmp_path / "process_0.log").exists() and (tmp_path / "process_1.log").exists()

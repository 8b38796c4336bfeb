"""Sharded feature extraction: the same features as one unsharded call, for any item count,
on 8 fake devices and across 2 processes (each extracting its share of the items)."""

import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from talkjax.eval.extract import gather_rows, host_share, map_batches
from talkjax.eval.frechet import frechet_from_features


def _features(params, batch):
  return jnp.tanh(batch.reshape(batch.shape[0], -1) @ params["w"]) + params["b"]


def _params():
  rng = np.random.default_rng(0)
  return {"w": rng.normal(size=(12, 5)).astype(np.float32),
          "b": rng.normal(size=(5,)).astype(np.float32)}


@pytest.mark.parametrize("count,batch", [(1, 32), (13, 8), (40, 16), (9, 3)])
def test_map_batches_equals_one_unsharded_float64_call(count, batch):
  params = _params()
  items = np.random.default_rng(count).normal(size=(count, 3, 4)).astype(np.float32)
  got = map_batches(_features, params, items, batch_size=batch)
  want = np.tanh(items.reshape(count, -1).astype(np.float64) @ params["w"]) + params["b"]
  assert got.shape == (count, 5)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_one_process_keeps_every_row():
  rows = np.arange(10.0)[:, None]
  assert np.array_equal(host_share(10), np.arange(10))
  assert np.array_equal(gather_rows(rows, 10), rows)


SCRIPT = textwrap.dedent("""
    import sys
    import jax, numpy as np, jax.numpy as jnp
    from talkjax import parallel
    parallel.initialize_distributed()
    from talkjax.eval.extract import gather_rows, host_share, map_batches

    def features(params, batch):
        return jnp.tanh(batch * params) [:, :3]

    items = np.random.default_rng(0).normal(size=(11, 4)).astype(np.float32)
    mine = host_share(len(items))
    rows = map_batches(features, np.float32(0.5), items[mine], batch_size=4)
    every = gather_rows(rows, len(items))
    if jax.process_index() == 0:
        np.save(sys.argv[1], every)
""")


@pytest.mark.multiprocess
def test_two_processes_extract_disjoint_shares_and_gather_all_rows(tmp_path):
  script = tmp_path / "run.py"
  script.write_text(SCRIPT)
  proc = subprocess.run(
      [sys.executable, "-m", "talkjax_launch.local", "--processes", "2", "--devices-per-process",
       "2", "--log-dir", str(tmp_path / "logs"), "--timeout", "200", "--",
       sys.executable, str(script), str(tmp_path / "rows.npy")],
      capture_output=True, text=True, timeout=250)
  assert proc.returncode == 0, proc.stderr
  items = np.random.default_rng(0).normal(size=(11, 4)).astype(np.float32)
  want = np.tanh(items.astype(np.float64) * 0.5)[:, :3]
  got = np.load(tmp_path / "rows.npy")
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  # Statistics of the gathered rows are those of all items: the Frechet distance is 0.
  assert frechet_from_features(got, want) < 1e-9

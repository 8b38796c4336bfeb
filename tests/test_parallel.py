import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from talkjax import config as cfg
from talkjax import parallel
from talkjax.errors import ConfigError
from talkjax.models import make_task


def mesh_config(data, fsdp, tensor):
  return {"data": data, "fsdp": fsdp, "tensor": tensor}


@pytest.mark.parametrize("sizes, n, expected", [
    ((-1, 1, 1), 8, (8, 1, 1)), ((2, 2, 2), 8, (2, 2, 2)), ((-1, 2, 2), 8, (2, 2, 2)),
    ((1, -1, 1), 4, (1, 4, 1)), ((-1, 1, 1), 1, (1, 1, 1))])
def test_mesh_shape_fills_one_axis(sizes, n, expected):
  assert parallel.mesh_shape(mesh_config(*sizes), n) == expected


@pytest.mark.parametrize("sizes, n", [((2, 2, 2), 4), ((-1, 3, 1), 8), ((-1, -1, 1), 8), ((0, 1, 1), 1)])
def test_mesh_shape_errors_are_clear(sizes, n):
  with pytest.raises(ConfigError, match="mesh"):
    parallel.mesh_shape(mesh_config(*sizes), n)


# The golden table: how every test-bed parameter is laid out on a (data=2, fsdp=2, tensor=2)
# mesh under the default rules. A change of rules or names shows up here in review.
GOLDEN = {
    "frozen/input_stats/mean": P(),    # statistics: replicated
    "frozen/input_stats/std": P(),
    "trainable/embed_in/kernel": P(None, "fsdp"),
    "trainable/embed_in/bias": P("fsdp"),
    "trainable/block_0/attn/to_q/kernel": P("fsdp", "tensor", None),
    "trainable/block_0/attn/to_q/bias": P("tensor", None),
    "trainable/block_0/attn/to_k/kernel": P("fsdp", "tensor", None),
    "trainable/block_0/attn/to_k/bias": P("tensor", None),
    "trainable/block_0/attn/to_v/kernel": P("fsdp", "tensor", None),
    "trainable/block_0/attn/to_v/bias": P("tensor", None),
    "trainable/block_0/attn/to_out/kernel": P("tensor", None, "fsdp"),
    "trainable/block_0/attn/to_out/bias": P("fsdp"),
    "trainable/block_0/mlp_in/kernel": P("fsdp", "tensor"),
    "trainable/block_0/mlp_in/bias": P("tensor"),
    "trainable/block_0/mlp_out/kernel": P("tensor", "fsdp"),
    "trainable/block_0/mlp_out/bias": P("fsdp"),
    "trainable/head/kernel": P("fsdp", None),
    "trainable/head/bias": P(None),
}


def test_golden_parameter_shardings():
  config = cfg.load_config("testbed/tiny", ["model.layers=1"])
  task = make_task(config)
  mesh = parallel.make_mesh(mesh_config(2, 2, 2))
  params, shardings = parallel.shard_init(task.init, mesh, config.axis_rules,
                                          jax.random.PRNGKey(0), task.example_batch(1))
  flat = {"/".join(k.key for k in path): s.spec
          for path, s in jax.tree_util.tree_flatten_with_path(shardings)[0]}
  assert flat == GOLDEN
  # Initialised straight into the layout: every array already carries its sharding.
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    key = "/".join(k.key for k in path)
    assert x.sharding.spec == GOLDEN[key], key
    assert x.sharding.mesh.shape == mesh.shape


def test_global_batch_is_split_over_data_and_fsdp():
  config = cfg.load_config("testbed/tiny")
  task = make_task(config)
  mesh = parallel.make_mesh(mesh_config(2, 2, 2))
  sh = parallel.batch_shardings(task.batch_axes(), mesh, config.axis_rules)
  local = task.example_batch(8)
  local["x"] = np.arange(local["x"].size, dtype=np.float32).reshape(local["x"].shape)
  batch = parallel.global_batch({**local, "name": np.array(["a"] * 8)}, sh)
  assert "name" not in batch  # host-only entries stay on the host
  assert batch["x"].sharding.spec == P(("data", "fsdp"), None, None)
  np.testing.assert_array_equal(np.asarray(batch["x"]), local["x"])
  assert {s.data.shape[0] for s in batch["x"].addressable_shards} == {2}


def test_initialize_distributed_is_a_noop_for_one_process(monkeypatch):
  for k in (parallel.ENV_COORDINATOR, parallel.ENV_NUM_PROCESSES, parallel.ENV_PROCESS_ID,
            "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(k, raising=False)
  parallel.initialize_distributed()
  assert jax.process_count() == 1
  monkeypatch.setenv(parallel.ENV_COORDINATOR, "127.0.0.1:1")
  with pytest.raises(ConfigError, match="half-configured"):
    parallel.initialize_distributed()

import json

import pytest

from talkjax import cli


def test_bench_train_writes_its_measurements(tmp_path, capsys):
  out = tmp_path / "bench.json"
  assert cli.main(["bench", "train", "--config", "testbed/tiny", "--steps", "2", "--warmup", "1",
                   "--json", str(out), "--set", "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]) == 0
  result = json.loads(out.read_text())
  assert result["device_count"] == 8 and result["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
  assert result["steps_per_s"] > 0 and result["examples_per_s"] == 16 * result["steps_per_s"]
  assert result["flops_per_step"] > 0 and 0 < result["mfu"]
  assert "examples_per_s" in capsys.readouterr().out
  assert result["flops_source"].startswith("jaxpr")
  assert "xla_compiled_flops" in result and "xla_lowered_flops" in result


def test_measure_takes_its_flops_from_the_steps_jaxpr():
  from talkjax import flops, parallel
  from talkjax.config import load_config
  from talkjax.models import make_task
  from talkjax.train import bench

  config = load_config("testbed/tiny", [])
  task = make_task(config)
  result = bench.measure(config, task, steps=1, warmup=0)
  step_fn, state, batch, mesh = bench.prepare(config, task, 1)
  with parallel.use_mesh(mesh, config.axis_rules):
    counted = flops.count_flops(step_fn, state, batch)
  assert result["flops_per_step"] == counted.total > 0
  # By hand: per token, the forward's matmuls are 2 x weights plus attention's QK^T and AV
  # (2 x 2 x length x heads x head_dim per layer); the backward twice that, less the input
  # projection's d/dx (the data is not differentiated).
  m = config.model
  inner = m.heads * m.head_dim
  weights = m.features * m.embed + m.layers * (4 * m.embed * inner + 2 * m.embed * m.mlp) \
      + m.embed * m.out_features
  forward = 2 * weights + m.layers * 4 * m.length * inner
  tokens = config.data.batch_size * m.length
  assert result["flops_per_step"] == tokens * (3 * forward - 2 * m.features * m.embed)
  assert result["mfu"] == pytest.approx(
      result["flops_per_step"] * result["steps_per_s"]
      / (result["peak_flops_per_device"] * result["device_count"]))

import json

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

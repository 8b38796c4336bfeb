"""`talkjax bench audio` runs end to end and writes its JSON (a smoke test, not a timing)."""

import json

from talkjax.cli import main


def test_bench_audio_writes_json(tmp_path, capsys):
  out = tmp_path / "audio.json"
  assert main(["bench", "audio", "--seconds", "1", "--repeats", "1", "--encoders", "small",
               "--json", str(out)]) == 0
  results = json.loads(out.read_text())
  assert results["unit"] == "seconds of compute per minute of audio"
  names = set(results["stages"])
  assert "encoder small" in names and "log-mel syncnet, JAX" in names
  assert all(r["s_per_min"] > 0 for r in results["stages"].values())
  assert "encoder small" in capsys.readouterr().out
  assert main(["bench", "audio", "--encoders", "nope", "--seconds", "1", "--repeats", "1"]) == 2

"""`talkjax bench serve`: the load test finishes by itself and accounts for every request."""

import json

from talkjax.cli import main


def test_bench_serve_answers_every_request_and_reports_both_paths(tmp_path, capsys):
  out = tmp_path / "serve.json"
  code = main(["bench", "serve", "--requests", "6", "--clients", "3", "--max-batch", "2",
               "--seconds", "1.0", "--crop", "center", "--json", str(out)])
  printed = capsys.readouterr().out
  assert code == 0, printed
  result = json.loads(out.read_text())
  served, manifest = result["serve"], result["manifest"]
  assert served["done"] == manifest["done"] == 6 and served["failed"] == 0
  # Every request went through exactly one batch of at most --max-batch.
  sizes = {int(k): v for k, v in served["batch_sizes"].items()}
  assert sum(k * v for k, v in sizes.items()) == 6 and max(sizes) <= 2
  assert 0 < served["p50_s"] <= served["p95_s"] <= served["max_s"] <= served["wall_s"]
  assert result["manifest_over_serve"] > 0 and result["peak_rss_bytes"] > 0
  assert "manifest / serve throughput" in printed and "p95" in printed


def test_bench_serve_refuses_an_empty_load(capsys):
  assert main(["bench", "serve", "--requests", "0"]) == 2
  assert "--requests" in capsys.readouterr().err

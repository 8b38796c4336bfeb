"""Metrics written by process 0: WORKDIR/metrics.jsonl (one JSON object per logged step)
and TensorBoard event files in WORKDIR/tensorboard."""

from __future__ import annotations

import json
import math
import pathlib

import jax
import numpy as np


def to_python(value):
  value = np.asarray(value)
  if value.dtype == bool:
    return bool(value)
  if np.issubdtype(value.dtype, np.integer):
    return int(value)
  f = float(value)
  return f if math.isfinite(f) else str(f)  # JSON has no NaN/Inf


class MetricsWriter:
  def __init__(self, workdir: pathlib.Path):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    from tensorboardX import SummaryWriter
    workdir.mkdir(parents=True, exist_ok=True)
    self.jsonl = open(workdir / "metrics.jsonl", "a", buffering=1)
    self.tb = SummaryWriter(str(workdir / "tensorboard"))

  def write(self, step: int, metrics: dict) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: to_python(v) for k, v in metrics.items()}}
    self.jsonl.write(json.dumps(row) + "\n")
    for k, v in row.items():
      if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
        self.tb.add_scalar(k, v, step)

  def close(self) -> None:
    if self.enabled:
      self.jsonl.close()
      self.tb.close()


def read_metrics(workdir) -> list[dict]:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

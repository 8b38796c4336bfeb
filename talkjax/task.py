"""What a model family hands to the trainer and the pipelines.

`train/` and `pipelines/` know no model family: they see only this interface. A family
module builds a `Task` from its config, and `talkjax.models.make_task` finds it by
`config.family`.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

import jax
import ml_collections
import numpy as np

PyTree = Any
Batch = Mapping[str, np.ndarray | jax.Array]


class Task(Protocol):
  config: ml_collections.ConfigDict

  def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
    """A batch with the right shapes and dtypes (values may be anything)."""

  def batch_axes(self) -> dict[str, tuple[str | None, ...]]:
    """Logical axis names for each batch entry, e.g. {"x": ("batch", "length", None)}."""

  def init(self, rng: jax.Array, batch: Batch) -> PyTree:
    """Parameters, leaves boxed with logical axis names (nn.with_logical_partitioning)."""

  def loss(self, params: PyTree, batch: Batch, rng: jax.Array) -> tuple[jax.Array, dict]:
    """Per-example loss of shape (batch,) and a dict of scalar metrics (batch means)."""

  def data_source(self, split: str):
    """A random-access source (len + __getitem__) of single examples for Grain."""

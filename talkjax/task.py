"""What a model family hands to the trainer: the training `Task`.

`train/` knows no model family: it sees only this interface. A family module builds a
`Task` from its config, and `talkjax.models.make_task` finds it by `config.family`. (What
a family hands to the sampling pipelines is in talkjax/family.py.)

Parameters are one nested dict with two branches, `{"trainable": ..., "frozen": ...}`.
The optimizer, the gradient clipping and the EMA copy see only the trainable leaves;
frozen ones (a pretrained encoder, data statistics) get no gradient, no optimizer state
and no EMA copy, but are sharded by the same rules, saved with every checkpoint and passed
to `loss` in the same tree. `optimizer.freeze` patterns move more trainable leaves to the
frozen side (they keep their place in the tree the loss sees).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

import jax
import ml_collections
import numpy as np

PyTree = Any
Batch = Mapping[str, np.ndarray | jax.Array]

TRAINABLE, FROZEN = "trainable", "frozen"


class Task(Protocol):
  config: ml_collections.ConfigDict

  def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
    """A batch with the right shapes and dtypes (values may be anything)."""

  def batch_axes(self) -> dict[str, tuple[str | None, ...]]:
    """Logical axis names for each batch entry, e.g. {"x": ("batch", "length", None)}."""

  def init(self, rng: jax.Array, batch: Batch) -> PyTree:
    """{"trainable": tree, "frozen": tree}, leaves boxed with logical axis names
    (nn.with_logical_partitioning); "frozen" may be {}."""

  def loss(self, params: PyTree, batch: Batch, rng: jax.Array) -> tuple[jax.Array, dict]:
    """Per-example loss of shape (batch,) and a dict of scalar metrics (batch means).
    `params` is the whole tree `init` returns (frozen leaves under stop_gradient)."""

  def data_source(self, split: str):
    """A random-access source (len + __getitem__) of single examples for Grain."""

  # Optional:
  # def initial_values(self) -> dict
  #   Host-side values (numpy) for some leaves of the tree `init` returns, as a nested dict
  #   of the same layout: statistics the task derives from its data, weights it reads from
  #   files. Called once when training starts from scratch; from then on the values live
  #   in the checkpoint (a resumed run restores them, never recomputes them).

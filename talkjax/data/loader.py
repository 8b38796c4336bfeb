"""The Grain loader every model family trains from.

A random-access source (len + __getitem__ -> dict of numpy arrays) is read in a seeded
global order; each process reads a disjoint shard of it and batches its share of the global
batch. The iterator's position is checkpointable (it is saved in the same Orbax checkpoint
as the model), so a resumed run sees exactly the examples it would have seen.
"""

from __future__ import annotations

import grain
import jax

from talkjax.errors import ConfigError


class _StableRepr:
  """Grain checks `repr(source)` when restoring an iterator; the default object repr holds a
  memory address, which would make every resume fail. This gives sources without their own
  __repr__ a stable one (class and length)."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    return self.source[index]

  def __repr__(self):
    cls = type(self.source)
    if cls.__repr__ is not object.__repr__:
      return repr(self.source)
    return f"{cls.__module__}.{cls.__qualname__}(len={len(self.source)})"


def per_process_batch_size(global_batch_size: int, process_count: int) -> int:
  if global_batch_size % process_count:
    raise ConfigError(f"global batch {global_batch_size} does not split over {process_count} processes",
                      fix=f"set data.batch_size to a multiple of {process_count}")
  return global_batch_size // process_count


def make_loader(source, *, global_batch_size: int, seed: int, shuffle: bool = True,
                num_epochs: int | None = None, process_index: int | None = None,
                process_count: int | None = None, worker_count: int = 0) -> grain.DataLoader:
  """A `grain.DataLoader` yielding this process's slice of each global batch.

  `num_epochs=None` repeats forever. Batches that would be incomplete are dropped, so every
  step sees a full, evenly split global batch.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  local = per_process_batch_size(global_batch_size, process_count)
  if len(source) < global_batch_size:
    raise ConfigError(f"the data source has {len(source)} examples, fewer than one global "
                      f"batch of {global_batch_size}", fix="use more data or a smaller data.batch_size")
  if worker_count > 0:
    # Grain's worker processes read absl flags, which only an absl app parses: without
    # this, worker_count > 0 fails on its first batch with UnparsedFlagAccessError.
    from absl import flags
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
  shard = grain.sharding.ShardOptions(shard_index=process_index, shard_count=process_count,
                                      drop_remainder=True)
  sampler = grain.samplers.IndexSampler(num_records=len(source), shard_options=shard,
                                        shuffle=shuffle, num_epochs=num_epochs, seed=seed)
  # Grain prefetches 500 elements per reader by default: 25 GB of 16-frame 512 px float
  # windows per worker process. Two batches ahead keep the step fed and memory bounded.
  read = grain.ReadOptions(num_threads=16, prefetch_buffer_size=max(16, 2 * local))
  return grain.DataLoader(data_source=_StableRepr(source), sampler=sampler,
                          operations=[grain.transforms.Batch(local, drop_remainder=True)],
                          worker_count=worker_count, read_options=read)

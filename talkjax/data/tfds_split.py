"""One split of a TFDS build folder, opened on first use in whichever process reads it.

Grain reads a source from up to 16 threads at once. Opening the split imports
tensorflow_datasets, whose lazily imported modules deadlock when several threads import
them together (seen as a loader that never yields its first batch), so the first open
happens under a lock and the others wait for it.
"""

from __future__ import annotations

import threading


class TfdsSplit:
  """`split[i]` is record i; picklable (the open source and the lock stay behind and are
  made again in the process that unpickles it)."""

  def __init__(self, path, split: str):
    self.path, self.split = str(path), split
    self._source = None
    self._lock = threading.Lock()

  def __getstate__(self):
    return {"path": self.path, "split": self.split}

  def __setstate__(self, state):
    self.__init__(state["path"], state["split"])

  def __getitem__(self, index: int):
    source = self._source
    if source is None:
      with self._lock:
        if self._source is None:
          import tensorflow_datasets as tfds
          self._source = tfds.builder_from_directory(self.path).as_data_source(self.split)
        source = self._source
    return source[index]

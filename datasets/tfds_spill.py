"""TFDS builds of splits over 1 GB without TensorFlow.

TFDS shuffles a split's examples in memory up to `MAX_MEM_BUFFER_SIZE` (1 GB) and past that
spills them to bucket files it writes through `tf.io.gfile` — the one step of an
array_record build that imports TensorFlow, which talkjax does not install. Without this,
a build whose split passes 1 GB (a few thousand SynthTalk clips at 64 px, far fewer real
clips at 512 px) ended in "No module named 'tensorflow'" after all its clips were made.

`spill_without_tensorflow()` lends TFDS's shuffle module the four calls it makes for its
buckets (`io.gfile.GFile/exists/remove`, `errors.ResourceExhaustedError`) over
`etils.epath` for the length of a build. Where TensorFlow is installed it changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import types

from etils import epath


class _ResourceExhausted(OSError):
  """Stands for tf.errors.ResourceExhaustedError, which plain files never raise."""
  message = ""


def _open(path, mode="r"):
  try:
    return epath.Path(path).open(mode)
  except OSError as e:
    if e.errno != errno.EMFILE:
      raise
    # A split keeps up to 1000 bucket files open; past the soft limit of open files TFDS
    # raises it (its own recovery for tf.io.gfile), and so does this, once.
    from tensorflow_datasets.core import shuffle
    shuffle._increase_open_files_limit()
    return epath.Path(path).open(mode)


_GFILE = types.SimpleNamespace(
    GFile=_open,
    exists=lambda path: epath.Path(path).exists(),
    remove=lambda path: epath.Path(path).unlink())
_STAND_IN = types.SimpleNamespace(io=types.SimpleNamespace(gfile=_GFILE),
                                  errors=types.SimpleNamespace(
                                      ResourceExhaustedError=_ResourceExhausted))


@contextlib.contextmanager
def spill_without_tensorflow():
  from tensorflow_datasets.core import shuffle
  if importlib.util.find_spec("tensorflow") is not None or not hasattr(shuffle, "tf"):
    yield
    return
  saved = shuffle.tf
  shuffle.tf = _STAND_IN
  try:
    yield
  finally:
    shuffle.tf = saved

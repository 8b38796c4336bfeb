"""The SynthTalk TFDS builder (array_record) and `build()`, which the CLI calls.

Clips are generated in worker processes (pure numpy) and handed to TFDS, which serialises
them into array_record shards readable with `tfds.data_sources` -- no TensorFlow needed.
Layout: <out>/synthtalk/<config name>/<version>/synthtalk-{train,val,test}.array_record-*.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from talkjax.errors import TalkjaxError
from talkjax_datasets.synthtalk import clip as clip_lib
from talkjax_datasets.synthtalk.identity import VECTOR_FIELDS
from talkjax_datasets.synthtalk.spec import BuildSpec, POSE_FIELDS, split_of_identity
from talkjax_datasets.tfds_spill import spill_without_tensorflow

VERSION = "1.0.0"
SPLITS = ("train", "val", "test")


class SynthTalkConfig(tfds.core.BuilderConfig):
  """A BuilderConfig carrying the build arguments (name derived from them)."""

  def __init__(self, spec: BuildSpec, workers: int = 1):
    super().__init__(name=spec.config_name(), version=VERSION,
                     description=f"SynthTalk built with {spec}")
    self.spec = spec
    self.workers = workers


class SynthTalk(tfds.core.GeneratorBasedBuilder):
  """Procedural talking heads with exact per-frame ground truth (see README.md)."""

  name = "synthtalk"
  VERSION = tfds.core.Version(VERSION)
  BUILDER_CONFIGS = [SynthTalkConfig(BuildSpec())]
  # Records stay in clip order (Grain shuffles at read time); skipping TFDS's shuffle pass
  # saves a full rewrite of the data.
  disable_shuffling = True

  # TFDS finds a builder's source through the optional `importlib_resources` package;
  # naming the file directly avoids that dependency (it only looks for checksums beside it).
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    return epath.Path(__file__)

  def _info(self):
    spec = self.builder_config.spec
    t, s = spec.frames_per_clip, spec.samples_per_clip
    T = tfds.features.Tensor
    features = {
        "frames": T(shape=(t,), dtype=np.object_),  # encoded JPEG/PNG bytes per frame
        # Raw float32 bytes on disk: ~30x faster to serialise than a proto float list.
        "audio": T(shape=(s,), dtype=np.float32, encoding=tfds.features.Encoding.BYTES),
        "mouth_open": T(shape=(t,), dtype=np.float32),
        "mouth_width": T(shape=(t,), dtype=np.float32),
        "emotion": T(shape=(t,), dtype=np.int32),
        "intensity": T(shape=(t,), dtype=np.int32),
        "head_pose": T(shape=(t, len(POSE_FIELDS)), dtype=np.float32),
        "blink": T(shape=(t,), dtype=np.float32),
        "speaking": T(shape=(t,), dtype=np.int32),
        "identity": np.int64,
        "identity_params": T(shape=(len(VECTOR_FIELDS),), dtype=np.float32),
        "clip_index": np.int64,
    }
    if spec.dyadic:
      features["partner_audio"] = T(shape=(s,), dtype=np.float32,
                                    encoding=tfds.features.Encoding.BYTES)
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__, features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(
            fps=spec.fps, sample_rate=16000, resolution=spec.resolution,
            seconds=spec.seconds, dyadic=spec.dyadic, seed=spec.seed,
            identities=spec.identities, clips=spec.clips, image_format=spec.image_format))

  def _split_generators(self, dl_manager):
    spec = self.builder_config.spec
    by_split = {name: [] for name in SPLITS}
    for index in range(spec.clips):
      ident = clip_lib.identity_of_clip(spec, index)
      by_split[split_of_identity(ident, spec.identities)].append(index)
    return {name: self._generate_examples(indices) for name, indices in by_split.items()}

  def _generate_examples(self, indices):
    spec = self.builder_config.spec
    for index, example in _examples(spec, indices, self.builder_config.workers):
      yield f"clip{index:07d}", example


def _make(args):
  spec, index = args
  return index, clip_lib.make_example(spec, index)


def _examples(spec, indices, workers):
  jobs = [(spec, i) for i in indices]
  pool = _POOLS.get(workers)
  if pool is None or len(jobs) < 4:
    yield from map(_make, jobs)
    return
  yield from pool.imap(_make, jobs, chunksize=2)


_POOLS: dict = {}  # workers -> the Pool of the build in progress (one per build, all splits)


def _start_pool(workers):
  # fork is fastest; once JAX is loaded (tests, other commands) its threads make fork
  # unsafe, so spawn instead.
  method = "spawn" if "jax" in sys.modules else "fork"
  return multiprocessing.get_context(method).Pool(workers)


def prepare_out_dir(out: os.PathLike | str, overwrite: bool) -> Path:
  out = Path(out)
  if out.exists() and not out.is_dir():
    raise TalkjaxError("the output path exists and is not a folder", path=out,
                       fix="pick another --out")
  if out.exists() and any(out.iterdir()):
    if not overwrite:
      raise TalkjaxError("the output folder is not empty", path=out,
                         fix="pass --overwrite to replace it, or pick another --out")
    shutil.rmtree(out)
  out.mkdir(parents=True, exist_ok=True)
  return out


def build(spec: BuildSpec, out: os.PathLike | str, *, overwrite: bool = False,
          workers: int | None = None) -> Path:
  """Build a SynthTalk dataset; returns the dataset folder (pass it to SynthTalkWindows)."""
  spec.validate()
  out = prepare_out_dir(out, overwrite)
  workers = workers or os.cpu_count() or 1
  builder = SynthTalk(config=SynthTalkConfig(spec, workers), data_dir=str(out),
                      file_format="array_record")
  start = time.perf_counter()
  if workers > 1:
    _POOLS[workers] = _start_pool(workers)
  try:
    with spill_without_tensorflow():
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
  finally:
    pool = _POOLS.pop(workers, None)
    if pool is not None:
      pool.terminate()
  shutil.rmtree(out / "downloads", ignore_errors=True)
  path = Path(builder.data_dir)
  (path / "build_seconds.txt").write_text(f"{time.perf_counter() - start:.2f}\n")
  return path

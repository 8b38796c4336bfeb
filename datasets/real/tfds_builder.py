"""The TFDS builder every real dataset shares: staged examples -> array_record records.

One record is one segment of at most `segment_frames` frames of one clip (frames encoded,
its audio samples, per-frame labels, the clip's first frame as `reference`), so a training
window reads one or two small records, never a whole multi-minute clip. Records are keyed
by their number, with shuffling disabled, so record r of a split is exactly the r-th
segment of the index (`clips.json`, written beside the records by the build).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

VERSION = "1.0.0"


class RecordedConfig(tfds.core.BuilderConfig):
  """Carries the build's plan: per split, the clips in order with their staged files."""

  def __init__(self, *, name, plan, staging, dyadic, metadata):
    super().__init__(name=name, version=VERSION, description="built by talkjax data build")
    self.plan, self.staging, self.dyadic, self.metadata = plan, staging, dyadic, metadata


class RecordedClips(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the MEAD, HDTF, DyConv and clips builders (each sets `name`)."""

  VERSION = tfds.core.Version(VERSION)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    return epath.Path(__file__)

  def _info(self):
    T, B = tfds.features.Tensor, tfds.features.Encoding.BYTES
    features = {
        "frames": T(shape=(None,), dtype=np.object_),      # encoded JPEG/PNG per frame
        "reference": T(shape=(), dtype=np.object_),        # the clip's first frame, encoded
        "audio": T(shape=(None,), dtype=np.float32, encoding=B),   # the frames' 16 kHz samples
        "emotion": T(shape=(None,), dtype=np.int32),       # MEAD's 8 emotions; -1 unknown
        "intensity": T(shape=(None,), dtype=np.int32),     # 0..2; -1 unknown
        "speaking": T(shape=(None,), dtype=np.int32),      # 1 / 0; -1 unknown
        "identity": np.int64,
        "clip": np.int64,          # the clip's number in its split (clips.json)
        "first_frame": np.int64,   # where in the clip the segment starts
    }
    if self.builder_config.dyadic:
      features["partner_audio"] = T(shape=(None,), dtype=np.float32, encoding=B)
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__, disable_shuffling=True,
        features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(self.builder_config.metadata))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split)
            for split, clips in self.builder_config.plan.items() if clips}

  def _generate_examples(self, split):
    from talkjax_datasets.real.staging import Staging
    staging = Staging(self.builder_config.staging)
    seg = self.builder_config.metadata["segment_frames"]
    spf = self.builder_config.metadata["sample_rate"] / self.builder_config.metadata["fps"]
    for number, clip in enumerate(self.builder_config.plan[split]):
      ex = staging.example(clip["key"])
      n = len(ex["frames"])
      for s, start in enumerate(range(0, n, seg)):
        stop = min(n, start + seg)
        a, b = int(round(start * spf)), int(round(stop * spf))
        record = {"frames": ex["frames"][start:stop], "reference": ex["frames"][0],
                  "audio": ex["audio"][a:b], "emotion": ex["emotion"][start:stop],
                  "intensity": ex["intensity"][start:stop],
                  "speaking": ex["speaking"][start:stop], "identity": clip["identity"],
                  "clip": number, "first_frame": start}
        if self.builder_config.dyadic:
          record["partner_audio"] = ex["partner_audio"][a:b]
        yield clip["record"] + s, record

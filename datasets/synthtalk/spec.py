"""What a SynthTalk build is: its arguments, their limits, and the label vocabularies.

Everything here is plain Python so the generator, the TFDS builder, the Grain source and the
probe agree on one set of constants without importing each other's heavy dependencies.
"""

from __future__ import annotations

import dataclasses
import math

from talkjax.errors import TalkjaxError

SAMPLE_RATE = 16000
# The 8 MEAD emotions, in MEAD's alphabetical order; labels are indices into this tuple.
EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
NEUTRAL = EMOTIONS.index("neutral")
INTENSITIES = (1, 2, 3)  # MEAD's level_1..level_3; stored as 0..2
POSE_FIELDS = ("yaw", "pitch", "roll", "tx", "ty")  # radians, radians, radians, image-half units

MIN_RESOLUTION, MAX_RESOLUTION = 64, 512
MAX_FPS = 60


@dataclasses.dataclass(frozen=True)
class BuildSpec:
  """The arguments of one build; `validate()` turns a bad one into a TalkjaxError."""
  identities: int = 16
  clips: int = 64
  seconds: float = 2.0
  resolution: int = 64
  fps: int = 25
  dyadic: bool = False
  seed: int = 0
  image_format: str = "jpeg"

  @property
  def frames_per_clip(self) -> int:
    return int(round(self.seconds * self.fps))

  @property
  def samples_per_clip(self) -> int:
    # Rounding rule: a clip's audio holds round(frames * 16000 / fps) samples; frame i
    # starts at sample round(i * 16000 / fps). Exact whenever 16000 % fps == 0 (25 fps).
    return int(round(self.frames_per_clip * SAMPLE_RATE / self.fps))

  def config_name(self) -> str:
    mode = "dyadic" if self.dyadic else "mono"
    secs = f"{self.seconds:g}".replace(".", "p")
    return (f"{mode}_i{self.identities}_c{self.clips}_s{secs}_r{self.resolution}"
            f"_f{self.fps}_seed{self.seed}_{self.image_format}")

  def validate(self) -> "BuildSpec":
    fix_hint = "see `talkjax data build --help` for the allowed ranges"
    def bad(what, fix=fix_hint):
      raise TalkjaxError(what, fix=fix)
    if not isinstance(self.identities, int) or self.identities < 3:
      bad(f"--identities must be an integer >= 3 (one each for train/val/test), got {self.identities}")
    if not isinstance(self.clips, int) or self.clips < self.identities:
      bad(f"--clips must be an integer >= --identities ({self.identities}) so every identity "
          f"has a clip, got {self.clips}", fix=f"pass --clips {max(self.identities, 1)} or more")
    if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds)
            and 0.4 <= self.seconds <= 120):
      bad(f"--seconds must be between 0.4 and 120, got {self.seconds}")
    if (not isinstance(self.resolution, int) or self.resolution % 8
        or not MIN_RESOLUTION <= self.resolution <= MAX_RESOLUTION):
      bad(f"--resolution must be a multiple of 8 from {MIN_RESOLUTION} to {MAX_RESOLUTION}, "
          f"got {self.resolution}")
    if not isinstance(self.fps, int) or not 1 <= self.fps <= MAX_FPS:
      bad(f"--fps must be an integer from 1 to {MAX_FPS}, got {self.fps}")
    if self.frames_per_clip < 8:
      bad(f"a clip of {self.seconds} s at {self.fps} fps has {self.frames_per_clip} frames; "
          "at least 8 are needed", fix="raise --seconds or --fps")
    if self.image_format not in ("jpeg", "png"):
      bad(f"--image-format must be jpeg or png, got {self.image_format!r}")
    if not isinstance(self.seed, int) or self.seed < 0:
      bad(f"--seed must be a non-negative integer, got {self.seed}")
    return self


def split_of_identity(identity: int, n_identities: int) -> str:
  """Disjoint identities per split: the last ~10% test, the ~10% before them val."""
  n_test = max(1, n_identities // 10)
  n_val = max(1, n_identities // 10)
  if identity >= n_identities - n_test:
    return "test"
  if identity >= n_identities - n_test - n_val:
    return "val"
  return "train"

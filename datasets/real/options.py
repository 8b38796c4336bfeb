"""The settings of a real-dataset build: what `talkjax data build mead|hdtf|dyconv|clips`
takes besides the raw folder, with their limits. They are stored with the staged items, so
an interrupted build resumes only with the same settings."""

from __future__ import annotations

import dataclasses

from talkjax.errors import TalkjaxError
from talkjax_datasets.real.track import CROP_MODES


@dataclasses.dataclass(frozen=True)
class BuildOptions:
  resolution: int = 512          # frame side after cropping
  fps: int = 25                  # output frame rate (sources are resampled by timestamp)
  image_format: str = "jpeg"     # how frames are stored: jpeg (quality 92) or png
  crop: str = "fixed"            # fixed: one square per clip; track: follows the face
  smooth_seconds: float = 0.3    # Gaussian sigma of the face track, seconds
  detect_every: int = 5          # run the face detector on every Nth output frame
  min_face_share: float = 0.5    # of the sampled frames, at least this share must show a face
  framing_scale: float = 4.840   # crop side / eyes-to-mouth distance (sampling's --crop auto)
  framing_center_y: float = 0.572   # height of the eyes-mouth midpoint in the crop
  min_seconds: float = 1.0       # shorter clips are skipped
  segment_frames: int = 50       # frames per stored record (a window may span records)
  max_av_mismatch: float = 0.5   # seconds audio and video may differ before a skip
  silence_dbfs: float = -60.0    # RMS below this is a silent track
  min_source_fps: float = 10.0
  max_source_fps: float = 120.0
  min_source_side: int = 64      # the smaller side of the source frames, px

  def validate(self) -> "BuildOptions":
    def bad(what, fix="see `talkjax data build --help`"):
      raise TalkjaxError(what, fix=fix)
    if self.resolution % 8 or not 64 <= self.resolution <= 1024:
      bad(f"--resolution must be a multiple of 8 from 64 to 1024, got {self.resolution}")
    if not 1 <= self.fps <= 60:
      bad(f"--fps must be from 1 to 60, got {self.fps}")
    if self.image_format not in ("jpeg", "png"):
      bad(f"--image-format must be jpeg or png, got {self.image_format!r}")
    if self.crop not in CROP_MODES:
      bad(f"--crop must be one of {CROP_MODES}, got {self.crop!r}")
    if self.detect_every < 1:
      bad(f"--detect-every must be >= 1, got {self.detect_every}")
    if not 0 <= self.min_face_share <= 1:
      bad(f"--min-face-share must be in [0, 1], got {self.min_face_share}")
    if self.min_seconds <= 0 or self.segment_frames < 8:
      bad("--min-seconds must be > 0 and --segment-frames >= 8")
    if self.max_av_mismatch < 0 or self.smooth_seconds < 0:
      bad("--max-av-mismatch and --smooth-seconds must be >= 0")
    return self

  def config_name(self) -> str:
    return f"r{self.resolution}_f{self.fps}_{self.crop}_{self.image_format}"

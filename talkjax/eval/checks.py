"""The one check every metric makes of its frames before any network runs."""

from __future__ import annotations

import numpy as np

from talkjax.errors import TalkjaxError


def uint8_frames(frames, what: str, layout: str = "(frames, height, width, 3)") -> np.ndarray:
  """`frames` as a uint8 (T, H, W, 3) array, or a one-line TalkjaxError saying what is wrong."""
  frames = np.asarray(frames)
  if frames.dtype != np.uint8:
    raise TalkjaxError(f"{what} has dtype {frames.dtype}, expected uint8 frames (0-255)",
                       fix="pass frames as decoded from the video; convert floats in [0, 1] "
                           "with np.clip(x * 255, 0, 255).round().astype(np.uint8)")
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise TalkjaxError(f"{what} has shape {frames.shape}, expected {layout}",
                       fix="stack RGB frames along a leading axis (grayscale: repeat it to 3 "
                           "channels; RGBA: drop alpha)")
  if frames.shape[1] < 1 or frames.shape[2] < 1:
    raise TalkjaxError(f"{what} has empty frames of shape {frames.shape[1:]}",
                       fix="pass decoded frames")
  return frames

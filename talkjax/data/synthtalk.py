"""Random-access windows of T frames with exactly aligned audio from a built SynthTalk set.

`SynthTalkClips(path, split)` reads whole clips or frame ranges (`read`), like
`talkjax.data.recorded.RecordedClips` does for real datasets; `SynthTalkWindows(path,
split, window=T)` is the Grain source of windows over it (`talkjax.data.windows`).

Alignment rule: frame k of a clip starts at audio sample k * 16000 / fps. Window starts are
multiples of `stride` frames, with stride a multiple of fps / gcd(16000, fps), so the start
sample is an integer; T must make T * 16000 / fps an integer too (always true at 25 fps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from talkjax.data.frames import decode_frame  # noqa: F401  (callers import it from here too)
from talkjax.data.tfds_split import TfdsSplit
from talkjax.errors import TalkjaxError

SAMPLE_RATE = 16000
PER_FRAME_KEYS = ("mouth_open", "mouth_width", "emotion", "intensity", "head_pose", "blink",
                  "speaking")


def find_dataset_dir(path) -> Path:
  """Accept the folder given to `talkjax data build --out` or the versioned dataset folder."""
  path = Path(path)
  if (path / "dataset_info.json").exists():
    return path
  found = sorted(path.glob("synthtalk/*/*/dataset_info.json"))
  if len(found) == 1:
    return found[0].parent
  if not found:
    raise TalkjaxError("no built SynthTalk dataset here", path=path,
                       fix="build one: talkjax data build synthtalk --out " + str(path))
  raise TalkjaxError(f"{len(found)} SynthTalk builds here; name one", path=path,
                     fix="pass the folder of one of: " + ", ".join(str(f.parent) for f in found))


class SynthTalkClips:
  """Whole clips of one split, read lazily (also what the probe and the preview use)."""

  def __init__(self, path, split: str = "train"):
    self.path = find_dataset_dir(path)
    self.split = split
    self._records = TfdsSplit(self.path, split)
    import json
    info = json.loads((self.path / "dataset_info.json").read_text())
    splits = {s["name"]: s for s in info.get("splits", [])}
    if split not in splits:
      raise TalkjaxError(f"split {split!r} is not in this dataset (it has {sorted(splits)})",
                         path=self.path, fix="use one of those splits")
    self.meta = _metadata(self.path)
    self.fps = int(self.meta["fps"])
    self._length = sum(int(n) for n in splits[split].get("shardLengths", []))

  def __len__(self):
    return self._length

  def record(self, index: int) -> dict:
    """The stored example: frames still encoded."""
    if not 0 <= index < len(self):
      raise TalkjaxError(f"example {index} asked of split {self.split!r}, which holds "
                         f"{len(self)}", path=self.path,
                         fix=f"ask for 0..{len(self) - 1}, or build more clips")
    try:
      return self._records[index]
    except (ValueError, OSError, RuntimeError) as e:
      raise TalkjaxError(f"example {index} of split {self.split!r} cannot be read ({e})",
                         path=self.path, fix="the dataset is corrupt; rebuild it") from e

  def num_frames(self, index: int) -> int:
    del index
    return int(round(float(self.meta["seconds"]) * self.fps))

  def read(self, index: int, start: int, stop: int) -> dict:
    """Frames start..stop-1 of a clip (still encoded), their audio and labels, the clip's
    first frame as `reference` (the same answer RecordedClips.read gives)."""
    rec = self.record(index)
    a0, a1 = start * SAMPLE_RATE // self.fps, stop * SAMPLE_RATE // self.fps
    out = {"frames": list(rec["frames"][start:stop]), "reference": rec["frames"][0],
           "identity": np.asarray(rec["identity"], np.int64),
           "identity_params": np.asarray(rec["identity_params"], np.float32),
           "audio": _audio_slice(rec["audio"], a0, a1 - a0)}
    if "partner_audio" in rec:
      out["partner_audio"] = _audio_slice(rec["partner_audio"], a0, a1 - a0)
    for key in PER_FRAME_KEYS:
      out[key] = np.asarray(rec[key][start:stop])
    return out

  def __repr__(self):
    return f"SynthTalkClips({self.path}, {self.split!r}, clips={len(self)})"

  def clip(self, index: int) -> dict:
    """The example with frames decoded to uint8 (T, H, W, 3)."""
    rec = dict(self.record(index))
    rec["frames"] = np.stack([decode_frame(b, self.path) for b in rec["frames"]])
    return rec


def _metadata(path: Path) -> dict:
  import json
  meta_file = path / "metadata.json"
  if not meta_file.exists():
    raise TalkjaxError("metadata.json is missing from the dataset", path=path,
                       fix="rebuild it with talkjax data build synthtalk")
  return json.loads(meta_file.read_text())


class SynthTalkWindows:
  """Windows of `window` frames + their audio samples over a SynthTalk split (frames
  float32 in [-1, 1]); see `talkjax.data.windows.ClipWindows` for the keys."""

  def __new__(cls, path, split: str = "train", *, window: int = 16, stride: int | None = None):
    from talkjax.data.windows import ClipWindows
    return ClipWindows(SynthTalkClips(path, split), window=window, stride=stride)


def _audio_slice(audio, start, length):
  piece = np.asarray(audio[start:start + length], np.float32)
  if len(piece) < length:  # only when a clip's audio was rounded short (fps not dividing 16k)
    piece = np.pad(piece, (0, length - len(piece)))
  return piece

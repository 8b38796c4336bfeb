"""MEMO's training examples: a clip of F frames, the P frames before it, the portrait,
per-frame speech features and the clip's emotion, from SynthTalk, a real-dataset build or
a weighted mixture (talkjax.data.prepare).

An example starts at frame s >= P of a clip: past = frames s-P..s-1, video = s..s+F-1,
reference = the clip's first frame (the portrait sampling starts from). Speech features
are computed over the example's audio with `margin` frames on each side (clamped to the
clip), as sampling computes a clip's (`MemoSpeech.chunk`): so a long real clip is never
read whole. The emotion is the mode of the video frames' labels in MEMO's classes (MEAD's
"contempt" is MEMO's "other"); frames of unknown emotion (-1: HDTF, your own clips) take
the null label.
"""

from __future__ import annotations

import numpy as np

from talkjax.audio.emotion import NULL_EMOTION, emotion_index
from talkjax.data.windows import pixels
from talkjax.errors import ConfigError
from talkjax.models.memo.speech import MemoSpeech

SAMPLES_PER_FRAME = 640


class ClipWindows:
  """Random-access source of MEMO training examples over one clip set."""

  def __init__(self, clips, *, frames: int, past: int, stride: int, speech_config):
    from talkjax_datasets.synthtalk.spec import EMOTIONS
    self.clips = clips
    self.frames, self.past, self.stride = frames, past, stride
    lengths = np.asarray([clips.num_frames(i) for i in range(len(clips))], np.int64)
    if past + frames > lengths.max(initial=0):
      raise ConfigError(f"a MEMO example needs {past} past + {frames} frames, the clips of "
                        f"{clips.path} have at most {lengths.max(initial=0)}",
                        fix="build longer clips or shorten model.clip.frames / past")
    counts = np.maximum(0, (lengths - frames - past) // stride + 1)
    self.ends = np.cumsum(counts)
    self.speech = MemoSpeech(speech_config, clips.fps)
    # MEAD's emotions -> MEMO's classes; the extra last entry maps -1 (unknown) to null.
    self.to_memo = np.array([emotion_index(e) for e in EMOTIONS] + [NULL_EMOTION], np.int32)

  def __len__(self):
    return int(self.ends[-1]) if len(self.ends) else 0

  def __repr__(self):
    return f"memo.ClipWindows({self.clips!r}, frames={self.frames}, past={self.past})"

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(index)
    clip = int(np.searchsorted(self.ends, index, side="right"))
    s = self.past + (index - (int(self.ends[clip - 1]) if clip else 0)) * self.stride
    n, m = self.clips.num_frames(clip), self.speech.margin
    a, b = max(0, s - self.past - m), min(n, s + self.frames + m)
    rec, where = self.clips.read(clip, a, b), self.clips.path
    audio = np.asarray(rec["audio"], np.float32)
    speech = self.speech.features(audio, b - a)[s - a:s - a + self.frames]
    labels = self.to_memo[np.asarray(rec["emotion"][s - a:s - a + self.frames])]
    reference = pixels(rec["reference"], where)
    stack = lambda lo, hi: np.stack([pixels(x, where) for x in rec["frames"][lo - a:hi - a]]
                                    or [np.zeros((0,) + reference.shape, np.float32)])
    return {"video": stack(s, s + self.frames),
            "past": stack(s - self.past, s).reshape((self.past,) + reference.shape),
            "reference": reference,
            "speech": speech.astype(np.float32),
            "emotion": np.int32(np.bincount(labels, minlength=10).argmax())}


def clip_windows(config, split: str):
  """MEMO examples from the config's data (one dataset or a weighted mixture)."""
  from talkjax.data.prepare import Mixture, mixture, open_clips
  d, m = config.data, config.model
  split = "train" if split == "train" else "val"
  entries = mixture(d)
  sources = [ClipWindows(open_clips(path, split), frames=int(m.clip.frames),
                         past=int(m.clip.past), stride=int(d.get("stride", 4)),
                         speech_config=m.audio) for path, _ in entries]
  if len(sources) == 1:
    return sources[0]
  return Mixture(sources, [w for _, w in entries], seed=config.seed)

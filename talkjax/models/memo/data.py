"""MEMO's training examples from SynthTalk: a clip of F frames, the P frames before it,
the portrait, per-frame speech features and the clip's emotion.

An example starts at frame s >= P of a clip: past = frames s-P..s-1, video = s..s+F-1,
reference = the clip's first frame (the portrait sampling starts from). Speech features
are computed over the whole clip's audio and cut to the video frames, as sampling computes
them over the whole input audio. The emotion is the mode of the video frames' labels in
MEMO's classes (MEAD's "contempt" is MEMO's "other").
"""

from __future__ import annotations

import numpy as np

from talkjax.audio.emotion import emotion_index
from talkjax.data.synthtalk import SynthTalkClips, decode_frame
from talkjax.errors import ConfigError
from talkjax.models.memo.speech import MemoSpeech


def _pixels(frame_bytes, where) -> np.ndarray:
  return decode_frame(frame_bytes, where).astype(np.float32) / 127.5 - 1.0


class ClipWindows:
  """Random-access source of MEMO training examples over one SynthTalk split."""

  def __init__(self, path, split: str, *, frames: int, past: int, stride: int, speech_config):
    from talkjax_datasets.synthtalk.spec import EMOTIONS
    self.clips = SynthTalkClips(path, split)
    self.frames, self.past, self.stride = frames, past, stride
    self.length = int(round(float(self.clips.meta["seconds"]) * self.clips.fps))
    if past + frames > self.length:
      raise ConfigError(f"a MEMO example needs {past} past + {frames} frames, the clips of "
                        f"{self.clips.path} have {self.length}",
                        fix="build longer clips or shorten model.clip.frames / past")
    self.starts = list(range(past, self.length - frames + 1, stride))
    self.speech = MemoSpeech(speech_config, self.clips.fps)
    self.to_memo = np.array([emotion_index(e) for e in EMOTIONS], np.int32)

  def __len__(self):
    return len(self.clips) * len(self.starts)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(index)
    clip, k = divmod(index, len(self.starts))
    rec, where = self.clips.record(clip), self.clips.path
    s = self.starts[k]
    audio = np.asarray(rec["audio"], np.float32)
    speech = self.speech.features(audio, self.length)[s:s + self.frames]
    labels = self.to_memo[np.asarray(rec["emotion"][s:s + self.frames])]
    reference = _pixels(rec["frames"][0], where)
    frames = lambda a, b: np.stack([_pixels(x, where) for x in rec["frames"][a:b]]
                                   or [np.zeros((0,) + reference.shape, np.float32)])
    return {"video": frames(s, s + self.frames),
            "past": frames(s - self.past, s).reshape((self.past,) + reference.shape),
            "reference": reference,
            "speech": speech.astype(np.float32),
            "emotion": np.int32(np.bincount(labels, minlength=10).argmax())}

def clip_windows(config, split: str) -> ClipWindows:
  d, m = config.data, config.model
  if d.get("kind", "synthtalk") != "synthtalk":
    raise ConfigError(f"MEMO reads data.kind 'synthtalk' so far, not {d.kind!r}",
                      fix="use a SynthTalk config (the real-dataset loaders come with their "
                          "own issue)")
  from talkjax.data.prepare import ensure_synthtalk
  path = ensure_synthtalk(d)
  return ClipWindows(path, "train" if split == "train" else "val", frames=int(m.clip.frames),
                     past=int(m.clip.past), stride=int(d.get("stride", 4)),
                     speech_config=m.audio)

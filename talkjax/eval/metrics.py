"""Metrics for a generated talking-head video and its driving audio, read by the probe.

- lip-sync: Pearson correlation between the probe's mouth opening and the mouth trajectory
  the audio implies (audio_mouth.py) at offset 0 (read 60 ms ahead: lips lead sound, so
  natural sync peaks at 0): a mouth 2 frames late loses it; plus the best offset over
  +-MAX_OFFSET frames and its correlation, like SyncNet's offset search. A shifted or
  foreign audio track scores low.
- emotion accuracy (against a target emotion, when given) and the emotion histogram;
- identity drift: cosine of each frame's identity embedding to the first frame's (or to a
  reference image's);
- head motion: per-axis std and mean speed of the probe's pose, next to the same
  statistics of SynthTalk's ground-truth motion generator;
- speak/listen accuracy (dyadic): the probe's speaking state against the voice activity of
  the agent's own audio track.
"""

from __future__ import annotations

import functools

import numpy as np

from talkjax.eval import audio_mouth
from talkjax_datasets.synthtalk.spec import EMOTIONS, POSE_FIELDS

MAX_OFFSET = 15


def _corr(a, b):
  a, b = a - a.mean(), b - b.mean()
  denom = np.sqrt((a * a).sum() * (b * b).sum())
  return float((a * b).sum() / denom) if denom > 1e-12 else 0.0


def offset_correlations(mouth, implied, max_offset=MAX_OFFSET) -> dict[int, float]:
  """{d: corr(mouth[t], implied[t + d])} over the overlapping frames."""
  out = {}
  n = len(mouth)
  for d in range(-max_offset, max_offset + 1):
    lo, hi = max(0, -d), min(n, n - d)
    if hi - lo >= 8:
      out[d] = _corr(mouth[lo:hi], implied[lo + d:hi + d])
  return out


def lip_sync(mouth, audio, fps, max_offset=MAX_OFFSET) -> dict:
  implied = audio_mouth.implied_mouth_opening(audio, fps, len(mouth))
  corrs = offset_correlations(np.asarray(mouth, np.float64), implied, max_offset)
  if not corrs:
    return {"lipsync_corr": 0.0, "best_offset": 0, "best_offset_corr": 0.0}
  best = max(corrs, key=corrs.get)
  values = np.array(list(corrs.values()))
  return {"lipsync_corr": corrs.get(0, 0.0), "best_offset": int(best),
          "best_offset_corr": corrs[best],
          "sync_confidence": float(corrs[best] - np.median(values))}


def identity_drift(embeddings, reference=None) -> dict:
  ref = embeddings[0] if reference is None else reference
  cos = embeddings @ ref
  return {"identity_cos_mean": float(cos.mean()), "identity_cos_min": float(cos.min()),
          "identity_cos_last": float(cos[-1]),
          "identity_cos_curve": [round(float(c), 4) for c in cos[:: max(1, len(cos) // 20)]]}


@functools.lru_cache(maxsize=8)
def reference_motion_stats(n_frames: int, fps: int, clips: int = 64) -> dict:
  """Std and mean speed per pose axis of SynthTalk's own head-motion generator."""
  from talkjax_datasets.synthtalk import motion
  rng = np.random.default_rng(0)
  poses = np.stack([motion.head_pose(rng, n_frames, fps) for _ in range(clips)])
  return {"std": poses.std(1).mean(0), "speed": np.abs(np.diff(poses, axis=1)).mean((0, 1)) * fps}


def head_motion(pose, fps) -> dict:
  ref = reference_motion_stats(len(pose), int(round(fps)))
  std = pose.std(0)
  speed = np.abs(np.diff(pose, axis=0)).mean(0) * fps if len(pose) > 1 else np.zeros(pose.shape[1])
  return {
      "head_std": dict(zip(POSE_FIELDS, np.round(std, 4).tolist())),
      "head_speed": dict(zip(POSE_FIELDS, np.round(speed, 4).tolist())),
      "head_std_ratio_to_data": dict(zip(POSE_FIELDS, np.round(std / ref["std"], 3).tolist())),
      "head_speed_ratio_to_data": dict(zip(POSE_FIELDS, np.round(speed / ref["speed"], 3).tolist())),
  }


def blink_rate(blink, fps: float) -> float:
  """Blinks per second: eyelid closure crossing 0.5 upwards."""
  blink = np.asarray(blink)
  return float(((blink[1:] > 0.5) & (blink[:-1] <= 0.5)).sum() / (len(blink) / fps))


def speak_listen_accuracy(speaking, audio, fps: float) -> float:
  """Share of frames whose speaking state (probability > 0.5) matches the voice activity
  of the agent's own track."""
  expected = audio_mouth.voice_activity(audio, fps, len(speaking))
  return float(((np.asarray(speaking) > 0.5).astype(np.int32) == expected).mean())


MOUTH_CLOSED = 0.1   # a probe mouth opening below this counts as closed


def turns(audio, partner_audio, fps: float, n: int) -> tuple[np.ndarray, np.ndarray]:
  """(speaking, listening) boolean masks over n frames from the two tracks alone: the agent
  speaks where its own track has voice; it listens where the partner's has and its own not."""
  agent = audio_mouth.voice_activity(audio, fps, n).astype(bool)
  partner = audio_mouth.voice_activity(partner_audio, fps, n).astype(bool)
  return agent, partner & ~agent


def turn_scores(reading: dict, audio, partner_audio, fps: float) -> dict:
  """Speaking- and listening-turn behaviour of a dyadic video:
  - speak_lipsync_corr0: mouth against the audio-implied mouth at offset 0, speaking
    frames only (0 with fewer than 10 of them);
  - listen_mouth_closed: share of listening frames with the mouth closed;
  - nod_contrast: RMS frame-to-frame head pitch change while listening over that while
    speaking (listeners nod: above 1)."""
  mouth = np.asarray(reading["mouth_open"], np.float64)
  n = len(mouth)
  speaking, listening = turns(audio, partner_audio, fps, n)
  implied = audio_mouth.implied_mouth_opening(audio, fps, n)
  corr = 0.0
  if speaking.sum() >= 10 and mouth[speaking].std() > 1e-6 and implied[speaking].std() > 1e-6:
    corr = float(np.corrcoef(mouth[speaking], implied[speaking])[0, 1])
  pitch_speed = np.abs(np.diff(np.asarray(reading["head_pose"], np.float64)[:, 1], prepend=np.nan))
  rms = lambda mask: float(np.sqrt(np.nanmean(pitch_speed[mask] ** 2))) if mask[1:].any() else 0.0
  return {"speak_lipsync_corr0": corr,
          "listen_mouth_closed": float((mouth[listening] < MOUTH_CLOSED).mean())
          if listening.any() else 0.0,
          "nod_contrast": rms(listening) / max(rms(speaking), 1e-6)}


def evaluate_video(frames, audio, fps, *, params=None, emotion: str | None = None,
                   partner_audio=None, reference_frame=None) -> dict:
  """All metrics for uint8 frames (T, H, W, 3) driven by `audio` (16 kHz float)."""
  from talkjax.eval import probe as probe_lib
  params = probe_lib.load_params() if params is None else params
  reading = probe_lib.read_frames(params, frames)
  result = {"frames": int(len(frames)), "fps": float(fps)}
  result.update(lip_sync(reading["mouth_open"], audio, fps))
  hist = np.bincount(reading["emotion"], minlength=len(EMOTIONS)) / len(frames)
  result["emotion_histogram"] = dict(zip(EMOTIONS, np.round(hist, 4).tolist()))
  result["emotion_read"] = EMOTIONS[int(hist.argmax())]
  if emotion is not None:
    result["emotion_accuracy"] = float(hist[EMOTIONS.index(emotion)])
  ref = None
  if reference_frame is not None:
    ref = probe_lib.read_frames(params, reference_frame[None])["identity"][0]
  result.update(identity_drift(reading["identity"], ref))
  result.update(head_motion(reading["head_pose"], fps))
  result["mouth_open_mean"] = float(reading["mouth_open"].mean())
  result["blink_rate_per_s"] = blink_rate(reading["blink"], fps)
  if partner_audio is not None:
    result["speak_listen_accuracy"] = speak_listen_accuracy(reading["speaking"], audio, fps)
    result.update(turn_scores(reading, audio, partner_audio, fps))
  return result

"""Scoring a generator on held-out SynthTalk clips: each clip's first frame is the identity
image, its audio drives the generator, and the probe scores the result.

`score_generator(generate, clips)` accepts any `generate(image uint8 (R, R, 3), audio
16 kHz) -> frames uint8 (T, R, R, 3)`, so every model family is judged by the same rule.
Aggregates: mean lip-sync correlation, every clip's best offset and their median, and the
identity drift 1 - cos(identity of a frame, identity of the input image), mean and worst.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm


def load_generator(checkpoint, seed: int = 0):
  """`generate(image, audio) -> frames` of a trained model (folder or single file)."""
  from talkjax.pipelines.sampler import Sampler
  sampler = Sampler.load(checkpoint)
  return lambda image, audio: sampler.generate(image[None], audio[None], seed=seed)["frames"][0]


def score_generator(generate, clips, fps: float = 25.0, progress: bool = True,
                    total: int | None = None) -> dict:
  from talkjax.eval import probe as probe_lib
  from talkjax.eval.metrics import evaluate_video
  params = probe_lib.load_params()
  per_clip = []
  for clip in tqdm(clips, desc="scoring", unit="clip", disable=not progress, total=total):
    image = clip["frames"][0]
    frames = generate(image, clip["audio"])
    m = evaluate_video(frames, clip["audio"], fps, params=params, reference_frame=image)
    per_clip.append({"lipsync_corr": m["lipsync_corr"], "best_offset": m["best_offset"],
                     "identity_drift_max": 1.0 - m["identity_cos_min"],
                     "identity_drift_last": 1.0 - m["identity_cos_last"],
                     "seconds": len(frames) / fps,
                     "head_std_ratio_to_data": m["head_std_ratio_to_data"]})
  offsets = [c["best_offset"] for c in per_clip]
  return {
      "clips": len(per_clip),
      "lipsync_corr": float(np.mean([c["lipsync_corr"] for c in per_clip])),
      "best_offset_median": float(np.median(offsets)),
      "best_offsets": offsets,
      "identity_drift_max": float(np.max([c["identity_drift_max"] for c in per_clip])),
      "identity_drift_mean_last": float(np.mean([c["identity_drift_last"] for c in per_clip])),
      "per_clip": per_clip,
  }

"""How well the probe reads a SynthTalk set it never saw (held-out identities).

Protocol (what the tests assert and `talkjax eval check-probe` prints):
- mouth-opening correlation: Pearson r between read and true opening over all frames;
- emotion / speaking accuracy: per frame, against the ground truth;
- identity retrieval top-1: the gallery holds one entry per identity, the mean embedding
  of its first (enrolment) clip; every single frame of that identity's other clips is a
  query, matched to the gallery by cosine of the identity embeddings.
"""

from __future__ import annotations

import numpy as np

from talkjax.eval import probe as probe_lib
from talkjax.eval.probe_train import load_split_frames

THRESHOLDS = {"mouth_open_corr": 0.95, "emotion_accuracy": 0.95, "speaking_accuracy": 0.95,
              "identity_top1": 0.99}


def identity_top1(embeddings, identities, clips) -> float:
  """Gallery: each identity's mean embedding over its first (enrolment) clip; queries:
  single frames of its other clips; top-1 by cosine."""
  first_clip = {}
  for ident, clip in zip(identities, clips):
    first_clip.setdefault(ident, clip)
  gallery_ids = np.array(sorted(first_clip))
  gallery = np.stack([embeddings[(identities == i) & (clips == first_clip[i])].mean(0)
                      for i in gallery_ids])
  gallery /= np.linalg.norm(gallery, axis=-1, keepdims=True)
  queries = np.array([first_clip[ident] != clip for ident, clip in zip(identities, clips)])
  if not queries.any():
    raise ValueError("identity retrieval needs identities with at least two clips")
  nearest = gallery_ids[(embeddings[queries] @ gallery.T).argmax(-1)]
  return float((nearest == identities[queries]).mean())


def check_probe(data, params=None) -> dict:
  params = probe_lib.load_params() if params is None else params
  table = load_split_frames(data)
  read = probe_lib.read_frames(params, table["frames"])
  return {
      "frames": int(len(table["frames"])),
      "identities": int(len(np.unique(table["identity"]))),
      "mouth_open_corr": float(np.corrcoef(read["mouth_open"], table["mouth_open"])[0, 1]),
      "mouth_width_corr": float(np.corrcoef(read["mouth_width"], table["mouth_width"])[0, 1]),
      "emotion_accuracy": float((read["emotion"] == table["emotion"]).mean()),
      "intensity_accuracy": float((read["intensity"] == table["intensity"]).mean()),
      "speaking_accuracy": float(((read["speaking"] > 0.5) == (table["speaking"] > 0)).mean()),
      "blink_mae": float(np.abs(read["blink"] - table["blink"]).mean()),
      "head_pose_mae": float(np.abs(read["head_pose"] - table["head_pose"]).mean()),
      "identity_top1": identity_top1(read["identity"], table["identity"], table["clip"]),
  }

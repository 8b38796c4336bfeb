"""(source, driving) frame pairs for training a warping renderer (IF-MDM stage 1, INFP
stage 1), from the config's data: SynthTalk, a real-dataset build or a mixture."""

from __future__ import annotations


class FramePairs:
  """(source, driving) frame pairs from clip windows.

  Far pairs use the clip's first frame (the identity image, as at sampling time) as the
  source: they teach head pose. Near pairs take the source `gap` frames before the driving
  frame: over ~0.1 s the head barely moves while lips and eyelids do, so these pairs put
  the reconstruction error where the fast articulators are. `near` is their share.
  """

  def __init__(self, windows, near: float = 0.0):
    self.windows, self.near = windows, near

  def __len__(self):
    return len(self.windows)

  def __getitem__(self, index):
    ex = self.windows[index]
    # A fixed low-discrepancy pattern, so the share is exact and deterministic in index.
    is_near = (index * 0.6180339887) % 1.0 < self.near
    return {"source": ex["frames"][0] if is_near else ex["reference"], "driving": ex["frames"][-1]}

  def __repr__(self):
    return f"FramePairs({self.windows!r}, near={self.near}, len={len(self)})"


def frame_pairs(config, split: str) -> FramePairs:
  """Pairs from `config.data` (data.near_gap, data.near_pairs): SynthTalk, a real-dataset
  build or a mixture."""
  from talkjax.data.prepare import windows
  d = config.data
  return FramePairs(windows(d, split, window=d.near_gap + 1, seed=config.seed),
                    near=d.near_pairs)


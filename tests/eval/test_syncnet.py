"""SyncNet and the Sync-C / Sync-D protocol against the public reference `syncnet_python`.

The reference network `S` gets random weights and random batch-norm statistics, is saved
as its published `syncnet_v2.model` is (a torch-saved state dict of `S`, legacy pickle,
no `num_batches_tracked`), read back by the reference's own `loadParameters` and by our
`load_params`. The protocol runs the reference's own `SyncNetInstance.evaluate` on a frame
folder and wav file; the frames are PNG data under `.jpg` names (`cv2.imread` reads them by
content), so the comparison is not blurred by JPEG. The reference modules are loaded from
their files because the package `__init__` also imports the face-detection pipeline
(ffmpeg, scenedetect), which the metric does not use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import sys

import av
import cv2
import jax
import numpy as np
import pytest
import python_speech_features as psf
import torch
from scipy.io import wavfile

from talkjax.errors import TalkjaxError
from talkjax.eval import sync
from talkjax.eval.extract import map_batches
from talkjax.eval.nets import syncnet

FRAMES = 28
AUDIO_FRAMES = 26        # the audio ends 1.6 frames early (the reference truncates; so do we)
WINDOWS = AUDIO_FRAMES - 5     # the reference scores min(video, audio) - 5 windows
LAG = 3


def _reference_module(name):
  spec = importlib.util.find_spec("syncnet_python")
  assert spec is not None, "pip install syncnet-python (test dependency)"
  path = os.path.join(spec.submodule_search_locations[0], f"{name}.py")
  module_spec = importlib.util.spec_from_file_location(f"_reference_{name}", path)
  module = importlib.util.module_from_spec(module_spec)
  sys.modules[module_spec.name] = module                   # so torch can pickle its classes
  module_spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def ref():
  return _reference_module("SyncNetModel"), _reference_module("SyncNetInstance")


@pytest.fixture(scope="module")
def random_state(ref):
  """Random weights and batch-norm statistics for the reference `S`, as a state dict.

  Random towers map lips and audio to unrelated places: every lip feature would be nearer
  the zero padding of the offset search than any audio feature, and the best offset would
  sit at the edge of the search whatever the clip. So the last linear layer of each tower
  gets, on top of small random weights, a rank-1 part reading the first principal
  component of that tower's penultimate activations over the test clip (standardised,
  sign chosen so lips and audio agree at their best lag) and a bias putting both
  towers' features around one point. The clip's mouth follows its audio envelope LAG frames
  late, so the protocol must find that offset."""
  torch.manual_seed(0)
  net = ref[0].S().eval()
  frames, audio = _clip()
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.3, 0.3)
        m.running_mean.normal_(0.0, 0.3)
        m.running_var.uniform_(0.5, 2.0)
    crops = _bgr_224(frames).astype(np.float32)
    lips = np.stack([crops[i:i + 5] for i in range(WINDOWS)]).transpose(0, 4, 1, 2, 3)
    cep = psf.mfcc(audio, 16000).T.astype(np.float32)
    mfcc = np.stack([cep[:, 4 * i:4 * i + 20] for i in range(WINDOWS)])[:, None]
    hidden = {"lip": net.netfclip[:3](net.netcnnlip(torch.from_numpy(lips.copy())).flatten(1)),
              "aud": net.netfcaud[:3](net.netcnnaud(torch.from_numpy(mfcc)).flatten(1))}
    reads = {}
    for tower, h in hidden.items():
      mean = h.mean(0)
      direction = torch.linalg.svd(h - mean, full_matrices=False)[2][0]
      score = (h - mean) @ direction
      reads[tower] = (direction / score.std(), mean, score / score.std())
    aligned = np.corrcoef(reads["lip"][2][LAG:].numpy(), reads["aud"][2][:-LAG].numpy())[0, 1]
    sign = 1.0 if aligned > 0 else -1.0
    axis, centre = torch.randn(2, 1024)
    axis, centre = axis / axis.norm(), 1.2 * centre / centre.norm()
    for tower, layer in (("lip", net.netfclip[3]), ("aud", net.netfcaud[3])):
      direction, mean, _ = reads[tower]
      if tower == "lip":
        direction = sign * direction
      rank1 = 0.8 * torch.outer(axis, direction)
      layer.weight.mul_(0.05).add_(rank1)
      layer.bias.copy_(centre - (layer.weight @ mean))
  return {k: v.clone() for k, v in net.state_dict().items()
          if not k.endswith("num_batches_tracked")}


@pytest.fixture(scope="module")
def weights_file(random_state, tmp_path_factory):
  path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
  torch.save(random_state, path, _use_new_zipfile_serialization=False)
  return path


@pytest.fixture(scope="module")
def reference(ref, weights_file, random_state):
  instance = ref[1].SyncNetInstance(ref[0].S(), device="cpu")
  instance.loadParameters(str(weights_file))
  instance.__S__.eval()
  loaded = instance.__S__.state_dict()
  assert all(torch.equal(loaded[k], v) for k, v in random_state.items())
  return instance


@pytest.fixture(scope="module")
def params(weights_file):
  return syncnet.load_params(weights_file)


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)


def _clip(seed=0, size=112):
  """A face-crop stand-in (RGB uint8) whose dark "mouth" opens with the loudness of noise
  bursts (int16 audio) heard LAG frames earlier."""
  rng = np.random.default_rng(seed)
  envelope = rng.uniform(0.05, 1.0, FRAMES + LAG)
  yy, xx = np.mgrid[:size, :size] / size
  frames = []
  for t in range(FRAMES):
    mouth = np.exp(-((yy - 0.65) ** 2 + (xx - 0.5) ** 2 / 4) / (0.002 + 0.02 * envelope[t]))
    face = 190 - 160 * mouth[..., None] * np.array([1.0, 0.8, 0.7])
    frames.append(np.clip(face + rng.uniform(0, 30, (size, size, 3)), 0, 255).astype(np.uint8))
  loud = np.repeat(envelope[LAG:], sync.SAMPLES_PER_FRAME)
  audio = rng.normal(0, 8000, FRAMES * sync.SAMPLES_PER_FRAME) * loud
  audio = audio[:int((AUDIO_FRAMES + 0.4) * sync.SAMPLES_PER_FRAME)]
  return np.stack(frames), np.clip(audio, -32768, 32767).astype(np.int16)


def _bgr_224(frames):
  """What the reference's crop step writes: each RGB frame as BGR, cv2-resized to 224."""
  return np.stack([cv2.resize(np.ascontiguousarray(f[..., ::-1]), (224, 224)) for f in frames])


def test_embeddings_match_reference(reference, params):
  rng = np.random.default_rng(1)
  _, audio = _clip()
  cep = psf.mfcc(audio, 16000).T.astype(np.float32)
  mfcc = np.stack([cep[:, 4 * i:4 * i + 20] for i in range(8)])             # (8, 13, 20)
  lips = rng.integers(0, 256, (3, 5, 224, 224, 3)).astype(np.float32)       # BGR windows
  with torch.no_grad():
    want_aud = reference.__S__.forward_aud(torch.from_numpy(mfcc[:, None])).numpy()
    want_lip = reference.__S__.forward_lip(
        torch.from_numpy(lips.transpose(0, 4, 1, 2, 3).copy())).numpy()
  got_aud = map_batches(syncnet.audio_embed, params, mfcc, batch_size=8)
  got_lip = map_batches(syncnet.lip_embed, params, lips, batch_size=8)
  assert got_aud.shape == (8, 1024) and got_lip.shape == (3, 1024)
  assert _rel(got_aud, want_aud).max() < 1e-4
  assert _rel(got_lip, want_lip).max() < 1e-4
  # the embeddings differ between windows (random weights still see the input)
  assert _rel(got_lip[0], got_lip[1]) > 1e-3 and _rel(got_aud[0], got_aud[1]) > 1e-3


def test_sync_scores_match_reference_evaluate(reference, params, tmp_path):
  frames, audio = _clip()
  for i, crop in enumerate(_bgr_224(frames)):
    (tmp_path / f"{i + 1:06d}.jpg").write_bytes(cv2.imencode(".png", crop)[1].tobytes())
  wavfile.write(tmp_path / "audio.wav", 16000, audio)

  class Opt:
    tmp_dir, batch_size, vshift = str(tmp_path), 20, 15

  printed = io.StringIO()
  with np.printoptions(), contextlib.redirect_stdout(printed), torch.no_grad():
    ref_offset, ref_conf, ref_dist = reference.evaluate(Opt())
  block = printed.getvalue().split("Framewise conf:")[1].split("AV offset")[0]
  ref_framewise = np.array([float(v) for v in re.findall(r"-?\d+\.\d+", block)])

  got = sync.sync_scores(frames, audio, params, fps=25, batch_size=8)
  assert got["offset"] == ref_offset
  assert abs(got["sync_d"] - ref_dist) < 1e-4 * ref_dist
  assert abs(got["sync_c"] - ref_conf) < 1e-4 * ref_dist
  assert got["sync_c"] > 1e-2 * ref_dist                 # a real minimum, not a flat curve
  assert got["offset"] == LAG                            # the mouth follows the sound
  assert "lengths are different" in printed.getvalue()
  assert got["framewise_conf"].shape == (WINDOWS,) == ref_framewise.shape
  # the reference prints 3 decimals
  assert np.abs(got["framewise_conf"] - ref_framewise).max() < 1e-4 * ref_dist + 6e-4
  assert got["mean_dists"].shape == (31,)
  assert got["mean_dists"].min() == pytest.approx(got["sync_d"])


def test_offset_distances_match_reference_calc_pdist(ref):
  rng = np.random.default_rng(2)
  lip, aud = rng.normal(0, 1, (2, 23, 64)).astype(np.float32)
  want = torch.stack(ref[1].calc_pdist(torch.from_numpy(lip), torch.from_numpy(aud),
                                       vshift=15)).numpy()             # (23, 31)
  got = sync.offset_distances(lip, aud, vshift=15)
  assert got.shape == want.shape == (23, 31)
  assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("length", [1, 399, 400, 401, 16000 + 123])
def test_mfcc_matches_python_speech_features(length):
  rng = np.random.default_rng(length)
  audio = rng.normal(0, 3000, length).astype(np.int16)
  audio[length // 3:length // 2] = 0                     # silent frames take the eps path
  want = psf.mfcc(audio, 16000)
  got = sync.mfcc(sync.pcm16(audio), 16000)
  assert got.shape == want.shape
  assert np.abs(got - want).max() < 1e-8


def test_pcm16_matches_ffmpeg_conversion():
  x = np.concatenate([[0.5, 1.5, 2.5, -0.5, -1.5, 100.7, -100.2] / np.float32(32768),
                      [0.99999, 1.0, 1.3, -1.0, -1.2],
                      np.random.default_rng(0).uniform(-1, 1, 500)]).astype(np.float32)
  frame = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
  frame.sample_rate = 16000
  resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
  out = [f.to_ndarray() for f in resampler.resample(frame)]
  out += [f.to_ndarray() for f in resampler.resample(None)]
  assert np.array_equal(sync.pcm16(x), np.concatenate(out, axis=1)[0])


@pytest.mark.parametrize("shape", [(112, 112), (57, 91), (300, 260), (448, 448), (225, 223)])
def test_resize_matches_cv2(shape):
  frames = np.random.default_rng(shape[0]).integers(0, 256, (2,) + shape + (3,), np.uint8)
  got = sync.resize_224(frames)
  want = np.stack([cv2.resize(f, (224, 224)) for f in frames])
  assert got.dtype == np.uint8 and np.array_equal(got, want)


@pytest.fixture(scope="module")
def small_clip():
  frames, audio = _clip(size=32)
  return {"frames": frames, "audio": audio, "fps": 25}


@pytest.mark.parametrize("change, needle", [
    ({"fps": 30}, "resample"),
    ({"frames": lambda c: c["frames"][:20]}, "at least 21"),
    ({"frames": lambda c: c["frames"].astype(np.float32)}, "uint8"),
    ({"audio": None}, "no audio"),
    ({"audio": lambda c: c["audio"][:0]}, "empty"),
    ({"audio": lambda c: np.stack([c["audio"]] * 2, 1)}, "mono"),
    ({"audio": lambda c: c["audio"][:-6 * 640]}, "much shorter"),
    ({"audio": lambda c: c["audio"].astype(np.int32)}, "int16"),
    ({"audio": lambda c: np.full(len(c["audio"]), np.nan, np.float32)}, "NaN"),
    ({"frames": lambda c: c["frames"][:24], "audio": lambda c: c["audio"][:19 * 640]},
     "audio too short"),
])
def test_bad_clips_raise(small_clip, params, change, needle):
  args = dict(small_clip)
  args.update({k: v(small_clip) if callable(v) else v for k, v in change.items()})
  with pytest.raises(TalkjaxError, match=needle) as info:
    sync.sync_scores(args["frames"], args["audio"], params, fps=args["fps"])
  assert "\n" not in str(info.value) and "fix:" in str(info.value)


def test_load_params_accepts_instance_state_dict(ref, random_state, params, tmp_path):
  # a zip-format save of SyncNetInstance (keys "__S__.*", with num_batches_tracked)
  instance = ref[1].SyncNetInstance(ref[0].S(), device="cpu")
  instance.__S__.load_state_dict(random_state, strict=False)
  torch.save(instance.state_dict(), tmp_path / "wrapped.model")
  other = syncnet.load_params(tmp_path / "wrapped.model")
  same = jax.tree_util.tree_map(np.array_equal, other, params)
  assert all(jax.tree_util.tree_leaves(same))
  assert params["params"]["netcnnlip"]["0"]["kernel"].shape == (5, 7, 7, 3, 96)


def test_load_params_bad_files(ref, random_state, tmp_path):
  with pytest.raises(TalkjaxError, match="not found"):
    syncnet.load_params(tmp_path / "nope.model")
  (tmp_path / "junk.model").write_bytes(b"not a torch file at all")
  with pytest.raises(TalkjaxError, match="not a PyTorch state dict"):
    syncnet.load_params(tmp_path / "junk.model")
  torch.save(ref[0].S(), tmp_path / "module.model")          # a whole pickled module
  with pytest.raises(TalkjaxError, match="state_dict"):
    syncnet.load_params(tmp_path / "module.model")
  torch.save([1, 2], tmp_path / "list.model")
  with pytest.raises(TalkjaxError, match="not a state dict"):
    syncnet.load_params(tmp_path / "list.model")

  broken = dict(random_state)
  del broken["netfclip.3.bias"]
  broken["netextra.0.weight"] = torch.zeros(3)
  broken["netcnnaud.0.weight"] = torch.zeros(64, 1, 5, 5)
  torch.save(broken, tmp_path / "broken.model")
  with pytest.raises(TalkjaxError) as info:
    syncnet.load_params(tmp_path / "broken.model")
  message = str(info.value)
  assert "missing tensors netfclip.3.bias" in message
  assert "unexpected tensors netextra.0.weight" in message
  assert "mis-shaped netcnnaud.0.weight [64, 1, 5, 5] (expected [64, 1, 3, 3])" in message
  assert "\n" not in message


def test_random_params_shapes_match_load(params):
  fresh = syncnet.random_params(3)
  shapes = jax.tree_util.tree_map(np.shape, fresh)
  assert shapes == jax.tree_util.tree_map(np.shape, params)
  out = jax.jit(syncnet.audio_embed)(fresh, np.zeros((2, 13, 20), np.float32))
  assert out.shape == (2, 1024) and np.all(np.isfinite(out))

"""FID: the Flax InceptionV3 against pytorch-fid's own network, and the metric around it.

The reference is pytorch-fid's FID InceptionV3 built from its own classes with random
weights (batch-norm affine parameters and running statistics included), saved with
`torch.save(state_dict)` under the published file name into a private torch hub cache, from
which pytorch-fid's `InceptionV3()` loads it through its normal loader (nothing is
downloaded). talkjax imports the same file with `load_params`. Frames are 320x200, so the
resize to 299x299 both shrinks and enlarges.

The file runs with one BLAS thread: on the 2-core test machine, with two pytest workers,
OpenBLAS's spinning threads make the 2048x2048 eigendecompositions of the Frechet distance
about five times slower (threadpoolctl comes with scikit-learn, a dependency of librosa).
"""

from __future__ import annotations


import numpy as np
import pytest
import scipy.linalg
import threadpoolctl

from talkjax.errors import TalkjaxError
from talkjax.eval import fid as fidlib
from talkjax.eval import frechet
from talkjax.eval.nets import inception

FRAMES, HEIGHT, WIDTH = 8, 320, 200


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
  with threadpoolctl.threadpool_limits(1, user_api="blas"):
    yield


def _pytorch_fid():
  from pytorch_fid import fid_score   # torchvision importable: see tests/conftest.py
  from pytorch_fid import inception as ref
  return ref, fid_score


def _random_fid_state_dict(ref, seed=0):
  """pytorch-fid's FID architecture (as its fid_inception_v3 builds it) with random tensors."""
  import torch
  net = ref._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  net.Mixed_5b = ref.FIDInceptionA(192, pool_features=32)
  net.Mixed_5c = ref.FIDInceptionA(256, pool_features=64)
  net.Mixed_5d = ref.FIDInceptionA(288, pool_features=64)
  net.Mixed_6b = ref.FIDInceptionC(768, channels_7x7=128)
  net.Mixed_6c = ref.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6d = ref.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6e = ref.FIDInceptionC(768, channels_7x7=192)
  net.Mixed_7b = ref.FIDInceptionE_1(1280)
  net.Mixed_7c = ref.FIDInceptionE_2(2048)
  g = torch.Generator().manual_seed(seed)
  state = {}
  for name, t in net.state_dict().items():
    if name.endswith("num_batches_tracked"):
      value = torch.randint(0, 1000, t.shape, generator=g, dtype=t.dtype)
    elif t.ndim == 4:
      value = torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5
    elif name.endswith(("running_var", "bn.weight")):
      value = 0.5 + torch.rand(t.shape, generator=g)
    else:  # bn.bias, running_mean, fc
      value = 0.1 * torch.randn(t.shape, generator=g)
    state[name] = value.to(t.dtype)
  return state


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """(pytorch-fid module, fid_score module, state dict, weights path, torch features, frames)."""
  import torch
  ref, fid_score = _pytorch_fid()
  state = _random_fid_state_dict(ref)
  home = tmp_path_factory.mktemp("torch_home")
  path = home / "hub" / "checkpoints" / inception.WEIGHTS_NAME
  path.parent.mkdir(parents=True)
  torch.save(state, path, _use_new_zipfile_serialization=False)
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("TORCH_HOME", str(home))
    model = ref.InceptionV3().eval()  # pytorch-fid's defaults: block 3, resize, normalise
  frames = np.random.default_rng(0).integers(0, 256, (FRAMES, HEIGHT, WIDTH, 3), np.uint8)
  with torch.no_grad():
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0  # as ToTensor()
    want = model(x)[0][:, :, 0, 0].numpy()
  return ref, fid_score, state, path, want, frames


@pytest.fixture(scope="module")
def params(reference):
  return inception.load_params(reference[3])


@pytest.fixture(scope="module")
def jax_features(reference, params):
  return fidlib.features(params, reference[5], batch_size=FRAMES)


def test_pool3_matches_pytorch_fid(reference, jax_features):
  want = reference[4]
  assert jax_features.shape == (FRAMES, 2048) and jax_features.dtype == np.float32
  assert want.std() > 0.1  # the random network does not collapse its features
  assert np.abs(jax_features - want).max() / np.abs(want).max() < 1e-4


def test_default_path_is_torch_hub_cache(reference, params, monkeypatch):
  monkeypatch.setenv("TORCH_HOME", str(reference[3].parents[2]))
  assert inception.default_weights_path() == reference[3]
  again = inception.load_params()
  import jax
  for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(params),
                  strict=True):
    assert np.array_equal(a, b)


def test_zip_format_file_and_random_params_have_the_same_tree(reference, params, tmp_path):
  import jax
  import torch
  path = tmp_path / inception.WEIGHTS_NAME
  torch.save(reference[2], path)  # torch's current (zip) format
  zipped = inception.load_params(path)
  leaves, tree = jax.tree_util.tree_flatten(params)
  zleaves, ztree = jax.tree_util.tree_flatten(zipped)
  assert tree == ztree and all(np.array_equal(a, b) for a, b in zip(leaves, zleaves, strict=True))
  # without torch, load_params falls back to talkjax's own reader of zip-format checkpoints
  from talkjax.convert.checkpoint_files import read_torch_bin
  plain = inception.params_from_state_dict(read_torch_bin(path), path)
  assert all(np.array_equal(a, b) for a, b in
             zip(jax.tree_util.tree_leaves(plain), leaves, strict=True))
  rleaves, rtree = jax.tree_util.tree_flatten(inception.random_params(3))
  assert rtree == tree
  assert [np.shape(x) for x in rleaves] == [np.shape(x) for x in leaves]
  kernel = params["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]
  want = reference[2]["Mixed_6b.branch7x7_2.conv.weight"].numpy().transpose(2, 3, 1, 0)
  assert kernel.shape == (1, 7, 128, 128) and np.array_equal(kernel, want)
  var = params["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"]
  assert np.array_equal(var, reference[2]["Mixed_7c.branch_pool.bn.running_var"].numpy())


def test_fid_of_a_set_with_itself_is_zero_and_noise_raises_it(reference, params, jax_features,
                                                              tmp_path):
  frames = reference[5]
  saved = fidlib.save_statistics(tmp_path / "real", *frechet.statistics(jax_features))
  assert saved.name == "real.npz"
  assert fidlib.fid(saved, frames, params, batch_size=FRAMES) < 1e-6
  noise = np.random.default_rng(1).normal(0, 40, frames.shape)
  noisy = np.clip(frames + noise, 0, 255).astype(np.uint8)
  real = fidlib.load_statistics(saved)
  assert fidlib.fid(real, noisy, params, batch_size=FRAMES) > 1.0


@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")
def test_frechet_matches_scipy_sqrtm_and_pytorch_fid(reference):
  rng = np.random.default_rng(2)
  a = rng.normal(size=(600, 24))
  b = rng.normal(size=(500, 24)) @ rng.normal(size=(24, 24)) * 0.4 + 0.3
  mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
  mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
  root = scipy.linalg.sqrtm(s1 @ s2)
  want = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real
  got = fidlib.fid((mu1, s1), (mu2, s2))
  assert want > 1.0 and abs(got - want) / want < 1e-9
  assert abs(got - reference[1].calculate_frechet_distance(mu1, s1, mu2, s2)) / want < 1e-9


def test_statistics_file_is_pytorch_fids_format(reference, tmp_path):
  rng = np.random.default_rng(3)
  mu, sigma = rng.normal(size=16), np.cov(rng.normal(size=(40, 16)), rowvar=False)
  path = fidlib.save_statistics(tmp_path / "stats.npz", mu, sigma)
  m, s = reference[1].compute_statistics_of_path(str(path), None, 1, 16, "cpu")
  assert np.array_equal(m, mu) and np.array_equal(s, sigma)
  m, s = fidlib.load_statistics(path)
  assert np.array_equal(m, mu) and np.array_equal(s, sigma)


def _raises(match, fn, *args, **kwargs):
  with pytest.raises(TalkjaxError, match=match) as info:
    fn(*args, **kwargs)
  assert "\n" not in str(info.value)
  return str(info.value)


def test_bad_weights_files(reference, tmp_path):
  import torch
  message = _raises("weights not found", inception.load_params, tmp_path / "nope.pth")
  assert inception.WEIGHTS_NAME in message and inception.WEIGHTS_URL in message
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"this is not a checkpoint" * 10)
  message = _raises("not a PyTorch weights file", inception.load_params, garbage)
  assert inception.WEIGHTS_NAME in message and inception.WEIGHTS_URL in message
  listed = tmp_path / "list.pth"
  torch.save([torch.zeros(2)], listed)
  _raises("not a state dict", inception.load_params, listed)
  state = dict(reference[2])
  del state["Mixed_7c.branch_pool.conv.weight"]
  state["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
  state["Conv2d_1a_3x3.conv.weight"] = torch.zeros(32, 3, 5, 5)
  broken = tmp_path / "broken.pth"
  torch.save(state, broken)
  message = _raises("not pytorch-fid's FID Inception weights", inception.load_params, broken)
  for part in ("1 missing tensors: Mixed_7c.branch_pool.conv.weight",
               "1 unexpected tensors: AuxLogits.fc.weight",
               "Conv2d_1a_3x3.conv.weight (32, 3, 5, 5) (expected (32, 3, 3, 3))",
               "torchvision's ImageNet InceptionV3"):
    assert part in message


def test_bad_frames_and_statistics(tmp_path):
  ok = np.zeros((2, 16, 16, 3), np.uint8)
  _raises("expected uint8", fidlib.features, None, ok.astype(np.float32))
  _raises(r"\(N, H, W, 3\)", fidlib.features, None, np.zeros((2, 16, 16), np.uint8))
  _raises(r"\(N, H, W, 3\)", fidlib.features, None, np.zeros((2, 16, 16, 4), np.uint8))
  _raises("different sizes", fidlib.features, None, [ok[0], np.zeros((8, 8, 3), np.uint8)])
  _raises("at least 2", fidlib.fid, ok, ok[:1], params={})
  _raises("at least 2", fidlib.statistics, {}, ok[:1])
  _raises("no Inception weights", fidlib.fid, ok, ok)
  stats = (np.zeros(64), np.eye(64))
  _raises("64-d", fidlib.fid, stats, ok, params={})
  _raises(r"mu \(D,\) and sigma \(D, D\)", fidlib.fid, (np.zeros(3), np.eye(4)), stats)
  _raises("not found", fidlib.load_statistics, tmp_path / "none.npz")
  text = tmp_path / "text.npz"
  text.write_text("mu sigma")
  _raises("cannot read FID statistics", fidlib.load_statistics, text)
  np.save(tmp_path / "single.npy", np.zeros(3))
  _raises("not an .npz", fidlib.load_statistics, tmp_path / "single.npy")
  np.savez(tmp_path / "keys.npz", m=np.zeros(3), s=np.eye(3))
  _raises("needs arrays 'mu' and 'sigma'", fidlib.load_statistics, tmp_path / "keys.npz")
  np.savez(tmp_path / "nan.npz", mu=np.full(3, np.nan), sigma=np.eye(3))
  _raises("NaN", fidlib.load_statistics, tmp_path / "nan.npz")

"""SyncNet (Chung & Zisserman 2016) in Flax: the audio and lip towers behind Sync-C / Sync-D.

Layers, shapes and batch norm follow the reference `syncnet_python.SyncNetModel.S`, whose
published weights `syncnet_v2.model` are a torch-saved state dict of that module (keys such
as `netcnnaud.0.weight`, `netfclip.3.bias`; the reference reads them with `torch.load` and
copies them by name). `load_params` reads exactly that file into a Flax variables dict.

- Audio tower: an MFCC image (13 coefficients x 20 frames at 100 Hz = 0.2 s) -> 1024-d.
- Lip tower: 5 stacked frames (0.2 s at 25 fps), 224x224, channels in the reference's order
  (BGR, as `cv2.imread` gives them) with raw pixel values 0..255 -> 1024-d.

Choices:
- The Flax tree mirrors the torch names one to one: `params[tower][index]` holds the layer
  at `tower.index` (`kernel`/`bias` for conv and linear, `scale`/`bias` for batch norm),
  `batch_stats[tower][index]` its running `mean`/`var`. Importing is then a rename plus a
  kernel transpose, and an error can name the torch tensor that is missing or mis-shaped.
- The lip convolutions stay 3-D like the reference (the first kernel spans all 5 frames,
  the later ones have depth 1), so the kernels keep the reference's shapes.
- Batch norm always runs in eval mode (running statistics, epsilon 1e-5 as in torch).
- Convolutions and matmuls use `Precision.HIGHEST`: on GPUs the default would drop to
  TF32-like accuracy and move the distances the metric is built on.
- `num_batches_tracked` entries (absent from the 2018 file, present in newer saves) carry
  nothing needed for inference and are ignored; a `__S__.` prefix (the state dict of the
  reference's `SyncNetInstance` wrapper) is accepted too.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from talkjax.errors import TalkjaxError

EMBED_DIM = 1024
MFCC_SHAPE = (13, 20)              # (coefficients, MFCC frames) of one audio window
LIP_SHAPE = (5, 224, 224, 3)       # (frames, height, width, channels BGR) of one lip window
WEIGHTS_NAME = "syncnet_v2.model"
WEIGHTS_URL = "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"

# (torch index in its nn.Sequential, features, kernel, stride, padding) of each conv; the
# batch norm after a conv sits at index + 1.
_AUDIO_CONVS = ((0, 64, (3, 3), (1, 1), (1, 1)), (4, 192, (3, 3), (1, 1), (1, 1)),
                (8, 384, (3, 3), (1, 1), (1, 1)), (11, 256, (3, 3), (1, 1), (1, 1)),
                (14, 256, (3, 3), (1, 1), (1, 1)), (18, 512, (5, 4), (1, 1), (0, 0)))
# max pools placed after the conv of that index: (window, stride, padding)
_AUDIO_POOLS = {4: ((3, 3), (1, 2), (0, 0)), 14: ((3, 3), (2, 2), (0, 0))}
_LIP_CONVS = ((0, 96, (5, 7, 7), (1, 2, 2), (0, 0, 0)),
              (4, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)),
              (8, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
              (11, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
              (14, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
              (18, 512, (1, 6, 6), (1, 1, 1), (0, 0, 0)))
_LIP_POOLS = {0: ((1, 3, 3), (1, 2, 2), (0, 0, 0)), 4: ((1, 3, 3), (1, 2, 2), (0, 1, 1)),
              14: ((1, 3, 3), (1, 2, 2), (0, 0, 0))}
TOWERS = ("netcnnaud", "netfcaud", "netcnnlip", "netfclip")


@functools.cache
def _model():
  import flax.linen as nn
  import jax

  highest = jax.lax.Precision.HIGHEST

  def batch_norm(name):
    return nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5, name=name)

  class ConvTrunk(nn.Module):
    """Conv -> BN -> ReLU blocks with max pools, then flatten (the map is 1x1 by now)."""
    convs: tuple
    pools: dict

    @nn.compact
    def __call__(self, x):
      for index, features, kernel, stride, pad in self.convs:
        x = nn.Conv(features, kernel, strides=stride, padding=[(p, p) for p in pad],
                    precision=highest, name=str(index))(x)
        x = nn.relu(batch_norm(str(index + 1))(x))
        if index in self.pools:
          window, stride, pad = self.pools[index]
          x = nn.max_pool(x, window, strides=stride, padding=[(p, p) for p in pad])
      return x.reshape(x.shape[0], -1)

  class Head(nn.Module):
    """Linear 512 -> BN -> ReLU -> Linear to the embedding."""

    @nn.compact
    def __call__(self, x):
      x = nn.Dense(512, precision=highest, name="0")(x)
      x = nn.relu(batch_norm("1")(x))
      return nn.Dense(EMBED_DIM, precision=highest, name="3")(x)

  class SyncNet(nn.Module):
    def setup(self):
      self.netcnnaud = ConvTrunk(_AUDIO_CONVS, _AUDIO_POOLS)
      self.netfcaud = Head()
      self.netcnnlip = ConvTrunk(_LIP_CONVS, _LIP_POOLS)
      self.netfclip = Head()

    def audio(self, mfcc):
      """(B, 13, 20) MFCC windows -> (B, 1024)."""
      return self.netfcaud(self.netcnnaud(mfcc[..., None]))

    def lip(self, frames):
      """(B, 5, 224, 224, 3) BGR pixels 0..255 -> (B, 1024)."""
      return self.netfclip(self.netcnnlip(frames))

    def __call__(self, mfcc, frames):
      return self.audio(mfcc), self.lip(frames)

  return SyncNet()


def audio_embed(params, mfcc):
  """Audio embeddings (B, 1024) of MFCC windows (B, 13, 20); pure, for `map_batches`."""
  import jax.numpy as jnp
  return _model().apply(params, jnp.asarray(mfcc, jnp.float32), method="audio")


def lip_embed(params, frames):
  """Lip embeddings (B, 1024) of 5-frame windows (B, 5, 224, 224, 3), BGR 0..255 (any
  dtype); pure, for `map_batches`."""
  import jax.numpy as jnp
  return _model().apply(params, jnp.asarray(frames, jnp.float32), method="lip")


def random_params(seed: int = 0):
  """Random variables (`params` and `batch_stats`) with the reference's shapes, for tests
  and shape checks: He-normal kernels, zero biases, identity batch norm. Built from the
  traced shapes, so no forward pass (which costs seconds on a CPU) is needed."""
  rng = np.random.default_rng(seed)
  fill = {"bias": np.zeros, "scale": np.ones, "mean": np.zeros, "var": np.ones}
  variables: dict = {"params": {}, "batch_stats": {}}
  for collection, tower, layer, leaf, shape in _template().values():
    if leaf == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    else:
      value = fill[leaf](shape)
    layers = variables[collection].setdefault(tower, {})
    layers.setdefault(layer, {})[leaf] = value.astype(np.float32)
  return variables


@functools.lru_cache(maxsize=1)
def _template() -> dict:
  """torch name -> (collection, tower, layer, leaf, flax shape) for every tensor."""
  import jax
  mfcc = jax.ShapeDtypeStruct((1,) + MFCC_SHAPE, np.float32)
  frames = jax.ShapeDtypeStruct((1,) + LIP_SHAPE, np.float32)
  shapes = jax.eval_shape(_model().init, jax.random.PRNGKey(0), mfcc, frames)
  torch_leaf = {("params", "kernel"): "weight", ("params", "bias"): "bias",
                ("params", "scale"): "weight", ("batch_stats", "mean"): "running_mean",
                ("batch_stats", "var"): "running_var"}
  table = {}
  for collection, towers in shapes.items():
    for tower, layers in towers.items():
      for layer, leaves in layers.items():
        for leaf, struct in leaves.items():
          name = f"{tower}.{layer}.{torch_leaf[collection, leaf]}"
          table[name] = (collection, tower, layer, leaf, tuple(struct.shape))
  return table


def _to_torch_layout(shape: tuple) -> tuple:
  """The torch shape of a tensor whose Flax shape is `shape` (kernels are transposed)."""
  if len(shape) == 2:                      # Dense (in, out) <- Linear (out, in)
    return shape[::-1]
  if len(shape) >= 4:                      # Conv (*spatial, in, out) <- (out, in, *spatial)
    return (shape[-1], shape[-2]) + tuple(shape[:-2])
  return shape


def _from_torch(array: np.ndarray) -> np.ndarray:
  if array.ndim == 2:
    return array.T
  if array.ndim >= 4:
    spatial = tuple(range(2, array.ndim))
    return array.transpose(spatial + (1, 0))
  return array


def _listing(names) -> str:
  names = sorted(names)
  shown = ", ".join(names[:6])
  return shown + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def load_params(path: os.PathLike | str):
  """Read the published `syncnet_v2.model` (a torch-saved state dict of the reference's
  `S`) into Flax variables `{"params": ..., "batch_stats": ...}` (float32 numpy)."""
  path = Path(path)
  fix_get = f"pass the path of {WEIGHTS_NAME} from the SyncNet authors ({WEIGHTS_URL})"
  if not path.is_file():
    raise TalkjaxError("SyncNet weights file not found", path=path, fix=fix_get)
  try:
    import torch
  except ImportError:
    raise TalkjaxError(f"reading {WEIGHTS_NAME} needs PyTorch, which is not installed",
                       path=path, fix="pip install torch (the CPU build is enough)") from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # noqa: BLE001 - any failure here means "not that format"
    reason = " ".join(str(e).split())[:200]
    raise TalkjaxError(f"not a PyTorch state dict of SyncNet ({type(e).__name__}: {reason})",
                       path=path, fix=f"{fix_get}; a whole pickled module must be re-saved "
                       "as torch.save(net.state_dict(), path)") from None
  if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
    raise TalkjaxError(f"holds a {type(state).__name__}, not a state dict of SyncNet tensors",
                       path=path, fix=fix_get)
  if state and all(k.startswith("__S__.") for k in state):
    state = {k[len("__S__."):]: v for k, v in state.items()}
  state = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}

  table = _template()
  missing = set(table) - set(state)
  unexpected = set(state) - set(table)
  problems = []
  if missing:
    problems.append(f"missing tensors {_listing(missing)}")
  if unexpected:
    problems.append(f"unexpected tensors {_listing(unexpected)}")
  wrong = []
  for name in sorted(set(table) & set(state)):
    value = state[name]
    want = _to_torch_layout(table[name][4])
    got = tuple(value.shape) if isinstance(value, torch.Tensor) else None
    if got != want:
      wrong.append(f"{name} {'not a tensor' if got is None else list(got)} "
                   f"(expected {list(want)})")
  if wrong:
    problems.append("mis-shaped " + "; ".join(wrong[:6])
                    + (f" and {len(wrong) - 6} more" if len(wrong) > 6 else ""))
  if problems:
    raise TalkjaxError("not the SyncNet weights talkjax expects: " + "; ".join(problems),
                       path=path, fix=fix_get)

  variables: dict = {"params": {}, "batch_stats": {}}
  for name, (collection, tower, layer, leaf, _) in table.items():
    array = state[name].detach().to(torch.float32).cpu().numpy()
    layers = variables[collection].setdefault(tower, {})
    layers.setdefault(layer, {})[leaf] = np.ascontiguousarray(_from_torch(array))
  return variables

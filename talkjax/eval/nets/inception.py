"""InceptionV3 as the FID network of pytorch-fid, in Flax, reading pytorch-fid's weights file.

FID numbers are only comparable when every detail of the feature extractor matches, so this
is the network `pytorch_fid.inception.InceptionV3()` builds with its defaults (block 3,
`resize_input=True`, `normalize_input=True`, `use_fid_inception=True`), which is the
TensorFlow 2015-12-05 Inception graph the original FID code used. It differs from
torchvision's ImageNet InceptionV3 in three places, all reproduced here:
- the 3x3 average pools inside Mixed_5b/5c/5d (block A), Mixed_6b..6e (block C) and Mixed_7b
  (first block E) leave padding out of the average (`count_include_pad=False`);
- the pooling branch of Mixed_7c (second block E) is a 3x3 stride-1 *max* pool;
- 1008 classes (unused here: the output is pool3, the 2048-d global average after Mixed_7c).
Every convolution has no bias and is followed by batch norm (eps 1e-3, running statistics)
and ReLU, as torchvision's BasicConv2d.

Preprocessing (`preprocess`), identical to pytorch-fid's default path: uint8 RGB / 255 ->
bilinear resize to 299x299 exactly as `F.interpolate(mode="bilinear", align_corners=False)`
(half-pixel centres, source coordinates below 0 clamped to 0, two taps per axis, no
antialiasing even when shrinking) -> 2x - 1, i.e. [-1, 1]. The resize is two small matrix
products with weights built in numpy at trace time, so it costs little and is exact.

Layout is NHWC; Flax module names mirror the torch state dict ("Mixed_6b.branch7x7_2.conv"),
so the import is mechanical: conv `weight` (O, I, kh, kw) -> `kernel` (kh, kw, I, O); bn
`weight`/`bias` -> params `scale`/`bias`; `running_mean`/`running_var` -> batch_stats
`mean`/`var`. `fc.*` and `num_batches_tracked` are accepted and ignored.
Convolutions and the resize run at `Precision.HIGHEST`: at the default precision XLA may use
TF32 (a 10-bit mantissa) for float32 convolutions on GPUs, which shifts the features and so
the score; a metric must not depend on the accelerator.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from talkjax.errors import TalkjaxError

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               + WEIGHTS_NAME)
INPUT_SIZE = 299
FEATURE_DIM = 2048
_PRECISION = lax.Precision.HIGHEST


class BasicConv(nn.Module):
  """Conv (no bias) -> batch norm with running statistics -> ReLU."""
  features: int
  kernel: tuple[int, int] = (1, 1)
  strides: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel, strides=self.strides,
                padding=((ph, ph), (pw, pw)), use_bias=False, precision=_PRECISION,
                name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg_pool_same(x):
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_down(x):
  return nn.max_pool(x, (3, 3), (2, 2), padding="VALID")


class BlockA(nn.Module):
  """Mixed_5b/5c/5d (FIDInceptionA)."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, name="branch1x1")(x)
    b5 = BasicConv(48, name="branch5x5_1")(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = BasicConv(64, name="branch3x3dbl_1")(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = BasicConv(self.pool_features, name="branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class BlockB(nn.Module):
  """Mixed_6a (torchvision InceptionB, unchanged)."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), strides=2, name="branch3x3")(x)
    bd = BasicConv(64, name="branch3x3dbl_1")(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = BasicConv(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_down(x)], axis=-1)


class BlockC(nn.Module):
  """Mixed_6b..6e (FIDInceptionC)."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    row = {"kernel": (1, 7), "padding": (0, 3)}
    col = {"kernel": (7, 1), "padding": (3, 0)}
    b1 = BasicConv(192, name="branch1x1")(x)
    b7 = BasicConv(c7, name="branch7x7_1")(x)
    b7 = BasicConv(c7, **row, name="branch7x7_2")(b7)
    b7 = BasicConv(192, **col, name="branch7x7_3")(b7)
    bd = BasicConv(c7, name="branch7x7dbl_1")(x)
    bd = BasicConv(c7, **col, name="branch7x7dbl_2")(bd)
    bd = BasicConv(c7, **row, name="branch7x7dbl_3")(bd)
    bd = BasicConv(c7, **col, name="branch7x7dbl_4")(bd)
    bd = BasicConv(192, **row, name="branch7x7dbl_5")(bd)
    bp = BasicConv(192, name="branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class BlockD(nn.Module):
  """Mixed_7a (torchvision InceptionD, unchanged)."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(192, name="branch3x3_1")(x)
    b3 = BasicConv(320, (3, 3), strides=2, name="branch3x3_2")(b3)
    b7 = BasicConv(192, name="branch7x7x3_1")(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_down(x)], axis=-1)


class BlockE(nn.Module):
  """Mixed_7b (FIDInceptionE_1, `max_pool=False`) and Mixed_7c (FIDInceptionE_2, True)."""
  max_pool: bool

  @nn.compact
  def __call__(self, x):
    row = {"kernel": (1, 3), "padding": (0, 1)}
    col = {"kernel": (3, 1), "padding": (1, 0)}
    b1 = BasicConv(320, name="branch1x1")(x)
    b3 = BasicConv(384, name="branch3x3_1")(x)
    b3 = jnp.concatenate([BasicConv(384, **row, name="branch3x3_2a")(b3),
                          BasicConv(384, **col, name="branch3x3_2b")(b3)], axis=-1)
    bd = BasicConv(448, name="branch3x3dbl_1")(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([BasicConv(384, **row, name="branch3x3dbl_3a")(bd),
                          BasicConv(384, **col, name="branch3x3dbl_3b")(bd)], axis=-1)
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_same(x)
    bp = BasicConv(192, name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """[-1, 1] NHWC images (any size >= 75; 299 for FID) -> (N, 2048) pool3 features."""

  @nn.compact
  def __call__(self, x):
    x = BasicConv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
    x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_down(x)
    x = BasicConv(80, name="Conv2d_3b_1x1")(x)
    x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool_down(x)
    x = BlockA(32, name="Mixed_5b")(x)
    x = BlockA(64, name="Mixed_5c")(x)
    x = BlockA(64, name="Mixed_5d")(x)
    x = BlockB(name="Mixed_6a")(x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                     ("Mixed_6e", 192)):
      x = BlockC(c7, name=name)(x)
    x = BlockD(name="Mixed_7a")(x)
    x = BlockE(False, name="Mixed_7b")(x)
    x = BlockE(True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


MODEL = InceptionV3()


@functools.cache
def _resize_matrix(size_in: int, size_out: int) -> np.ndarray:
  """(size_out, size_in) weights of torch's bilinear, align_corners=False, no antialias."""
  scale = size_in / size_out
  src = np.maximum((np.arange(size_out) + 0.5) * scale - 0.5, 0.0)
  lo = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
  hi = np.minimum(lo + 1, size_in - 1)
  frac = src - lo
  m = np.zeros((size_out, size_in), np.float64)
  rows = np.arange(size_out)
  np.add.at(m, (rows, lo), 1.0 - frac)
  np.add.at(m, (rows, hi), frac)
  return m.astype(np.float32)


def preprocess(images_uint8):
  """(N, H, W, 3) uint8 RGB -> (N, 299, 299, 3) float32 in [-1, 1], as pytorch-fid."""
  x = images_uint8.astype(jnp.float32) / 255.0
  _, h, w, _ = x.shape
  if h != INPUT_SIZE:
    x = jnp.einsum("oh,nhwc->nowc", _resize_matrix(h, INPUT_SIZE), x, precision=_PRECISION)
  if w != INPUT_SIZE:
    x = jnp.einsum("ow,nhwc->nhoc", _resize_matrix(w, INPUT_SIZE), x, precision=_PRECISION)
  return 2.0 * x - 1.0


def pool3(variables, images_uint8):
  """The FID features: (N, H, W, 3) uint8 -> (N, 2048) float32. Pure, for `map_batches`."""
  return MODEL.apply(variables, preprocess(images_uint8))


# ---------------------------------------------------------------------------------------------
# weights

@functools.cache
def _shapes():
  """Flax variable shapes as tuples: {"params": ..., "batch_stats": ...}."""
  tree = jax.eval_shape(MODEL.init, jax.random.PRNGKey(0),
                        jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
  return jax.tree_util.tree_map(lambda s: tuple(s.shape), tree)


_TORCH_LEAF = {("params", "kernel"): "weight", ("params", "scale"): "weight",
               ("params", "bias"): "bias", ("batch_stats", "mean"): "running_mean",
               ("batch_stats", "var"): "running_var"}


@functools.cache
def _torch_layout() -> dict:
  """torch state-dict name -> (flax path, torch shape)."""
  out = {}
  flat = jax.tree_util.tree_flatten_with_path(_shapes(), is_leaf=lambda x: isinstance(x, tuple))
  for path, shape in flat[0]:
    keys = tuple(k.key for k in path)
    name = ".".join(keys[1:-1] + (_TORCH_LEAF[(keys[0], keys[-1])],))
    torch_shape = (shape[3], shape[2], shape[0], shape[1]) if keys[-1] == "kernel" else shape
    out[name] = (keys, tuple(torch_shape))
  return out


def _set(tree: dict, keys: tuple, value) -> None:
  for k in keys[:-1]:
    tree = tree.setdefault(k, {})
  tree[keys[-1]] = value


def _ignored(name: str, layout: dict) -> bool:
  if name in ("fc.weight", "fc.bias"):
    return True
  return (name.endswith(".num_batches_tracked")
          and name[:-len("num_batches_tracked")] + "running_mean" in layout)


def default_weights_path() -> Path:
  """Where torch hub (and so pytorch-fid) caches the weights: $TORCH_HOME/hub/checkpoints."""
  home = os.environ.get("TORCH_HOME") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch")
  return Path(home).expanduser() / "hub" / "checkpoints" / WEIGHTS_NAME


_GET_WEIGHTS = (f"download {WEIGHTS_NAME} from pytorch-fid's release ({WEIGHTS_URL}; "
                "pytorch-fid keeps it in ~/.cache/torch/hub/checkpoints) and pass its path")


def _read_state_dict(path: Path) -> dict:
  try:
    import torch
  except ImportError:
    torch = None
  if torch is None:
    from talkjax.convert.checkpoint_files import read_torch_bin
    try:
      return read_torch_bin(path)
    except TalkjaxError as e:
      raise TalkjaxError(f"cannot read the weights without torch ({e.what})", path=path,
                         fix="pip install torch (the CPU build is enough)") from e
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # any failure here means the file is not a torch state dict
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise TalkjaxError(f"not a PyTorch weights file ({reason[:200]})", path=path,
                       fix=_GET_WEIGHTS) from e
  if not isinstance(state, dict):
    raise TalkjaxError(f"the file holds a {type(state).__name__}, not a state dict", path=path,
                       fix=_GET_WEIGHTS)
  out = {}
  for name, value in state.items():
    if not isinstance(value, torch.Tensor):
      raise TalkjaxError(f"entry {name!r} is a {type(value).__name__}, not a tensor", path=path,
                         fix=_GET_WEIGHTS)
    out[str(name)] = value.detach().cpu().float().numpy() if value.is_floating_point() \
        else value.detach().cpu().numpy()
  return out


def _names(names: list[str], limit: int = 6) -> str:
  shown = ", ".join(names[:limit])
  return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def params_from_state_dict(state: dict, path: os.PathLike | str | None = None) -> dict:
  """pytorch-fid's FID Inception state dict (name -> array) -> Flax variables, validated."""
  layout = _torch_layout()
  missing = sorted(n for n in layout if n not in state)
  unexpected = sorted(n for n in state if n not in layout and not _ignored(n, layout))
  misshaped = sorted(f"{n} {tuple(np.shape(state[n]))} (expected {layout[n][1]})"
                     for n in layout if n in state and tuple(np.shape(state[n])) != layout[n][1])
  if missing or unexpected or misshaped:
    parts = []
    if missing:
      parts.append(f"{len(missing)} missing tensors: {_names(missing)}")
    if unexpected:
      parts.append(f"{len(unexpected)} unexpected tensors: {_names(unexpected)}")
    if misshaped:
      parts.append(f"{len(misshaped)} mis-shaped tensors: {_names(misshaped)}")
    hint = ""
    if any(n.startswith("AuxLogits.") for n in unexpected):
      hint = " (this looks like torchvision's ImageNet InceptionV3, not the FID network)"
    raise TalkjaxError("not pytorch-fid's FID Inception weights" + hint + ": "
                       + "; ".join(parts), path=path, fix=_GET_WEIGHTS)
  variables: dict = {}
  for name, (keys, _) in layout.items():
    value = np.asarray(state[name], np.float32)
    if not np.all(np.isfinite(value)):
      raise TalkjaxError(f"tensor {name} holds NaN or infinite values", path=path,
                         fix=_GET_WEIGHTS)
    if keys[-1] == "kernel":
      value = value.transpose(2, 3, 1, 0)
    _set(variables, keys, np.ascontiguousarray(value))
  return variables


def load_params(path: os.PathLike | str | None = None) -> dict:
  """Read pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` into Flax variables.

  `path` defaults to torch hub's cache (`default_weights_path()`), where pytorch-fid leaves
  the file after its first run. Returns {"params": ..., "batch_stats": ...} (numpy float32),
  ready for `pool3` / `talkjax.eval.fid`.
  """
  path = default_weights_path() if path is None else Path(path)
  if not path.is_file():
    raise TalkjaxError("FID Inception weights not found", path=path, fix=_GET_WEIGHTS)
  return params_from_state_dict(_read_state_dict(path), path)


def random_params(seed: int = 0) -> dict:
  """Random variables with the real tree (for tests): He-scaled kernels and non-trivial
  batch-norm affine parameters and running statistics, so every tensor matters."""
  rng = np.random.default_rng(seed)
  variables: dict = {}
  for _, (keys, torch_shape) in sorted(_torch_layout().items()):
    leaf = keys[-1]
    if leaf == "kernel":
      o, i, kh, kw = torch_shape
      value = rng.normal(0.0, np.sqrt(2.0 / (i * kh * kw)), (kh, kw, i, o))
    elif leaf in ("scale", "var"):
      value = rng.uniform(0.5, 1.5, torch_shape)
    else:
      value = rng.normal(0.0, 0.1, torch_shape)
    _set(variables, keys, value.astype(np.float32))
  return variables

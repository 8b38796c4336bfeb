"""StyleGAN2 building blocks (NHWC), as LIA and IF-MDM's stage-1 renderer use them.

- Equalized learning rate: weights are stored N(0, 1) and scaled by 1/sqrt(fan_in) at
  every use (`EqualDense`, `EqualConv2d`, `ModulatedConv`), so Adam's per-parameter step
  is the same for every layer whatever its fan-in.
- Fused bias + leaky ReLU: leaky_relu(x + b, 0.2) * sqrt(2) (the gain keeps the
  activations' second moment).
- FIR resampling with the [1, 3, 3, 1] binomial filter (`upfirdn`): zero-insertion
  upsampling, padding, a true 2-D convolution with the filter, then striding.
- Modulated convolution: the kernel's input channels are scaled by an affine of the style,
  then each output channel is demodulated back to unit L2 norm. It is computed in the
  equivalent non-fused form, x * s -> shared conv -> y * d, which needs no per-example
  kernels (grouped convs), so it shards over the batch like any conv.

Every parameter carries logical axis names (talkjax/nn/layers.py). Parameters are float32;
`dtype` is the compute dtype (styles and demodulation coefficients stay float32).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax.nn.layers import logical_init

BLUR_KERNEL = (1, 3, 3, 1)
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
_DIMS = ("NHWC", "HWIO", "NHWC")
_normal = nn.initializers.normal(stddev=1.0)


def fir_kernel(taps: Sequence[float] = BLUR_KERNEL) -> np.ndarray:
  """The separable 2-D filter outer(taps, taps), normalised to sum 1."""
  k = np.asarray(taps, np.float64)
  k = np.outer(k, k) if k.ndim == 1 else k
  return k / k.sum()


def upfirdn(x, kernel, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)):
  """Upsample by zero insertion, pad (pad0 before, pad1 after), convolve every channel
  with the 2-D `kernel` (a true convolution: the kernel is flipped), keep every `down`-th
  sample. Same in height and width. (B, H, W, C) -> (B, (H*up + p0 + p1 - kh + 1) / down, ...)

  A separable kernel (the FIR filters: outer(taps, taps)) runs as two 1-D passes of shifted
  multiply-adds, which XLA fuses with their neighbours; with the depthwise (channel-grouped)
  convolution a general kernel needs, the paper renderer's 64 px CPU training step took
  1.64 s against 0.94 s."""
  kernel = np.asarray(kernel, np.float64)
  u, sv, vt = np.linalg.svd(kernel)
  if sv[1:].max(initial=0.0) <= 1e-12 * sv[0]:
    rows, cols = u[:, 0] * math.sqrt(sv[0]), vt[0] * math.sqrt(sv[0])
    for axis, taps in ((1, rows), (2, cols)):
      x = _fir_1d(x, taps, axis, up, down, pad)
    return x
  c = x.shape[-1]
  w = jnp.asarray(kernel[::-1, ::-1, None, None], x.dtype) * jnp.ones((1, 1, 1, c), x.dtype)
  # lhs_dilation puts up-1 zeros between samples; torch's upfirdn also puts them after the
  # last one, hence the extra up-1 of trailing padding.
  padding = [(pad[0], pad[1] + up - 1)] * 2
  return jax.lax.conv_general_dilated(x, w, (down, down), padding, lhs_dilation=(up, up),
                                      dimension_numbers=_DIMS, feature_group_count=c)


def _fir_1d(x, taps, axis: int, up: int, down: int, pad: tuple[int, int]):
  """upfirdn along one axis with 1-D taps (zero insertion puts up-1 zeros after every
  sample, as torch's upfirdn2d does)."""
  n = x.shape[axis]
  if up > 1:
    x = jnp.stack([x] + [jnp.zeros_like(x)] * (up - 1), axis=axis + 1)
    x = x.reshape(x.shape[:axis] + (n * up,) + x.shape[axis + 2:])
  config = [(0, 0, 0)] * x.ndim
  config[axis] = (pad[0], pad[1], 0)
  x = jax.lax.pad(x, jnp.zeros((), x.dtype), config)
  length = x.shape[axis] - len(taps) + 1
  flipped = [float(t) for t in taps[::-1]]            # a true convolution
  y = sum(t * jax.lax.slice_in_dim(x, j, j + length, axis=axis) for j, t in enumerate(flipped)
          if t != 0.0)
  return jax.lax.slice_in_dim(y, 0, length, down, axis=axis) if down > 1 else y


def upsample2x(x, taps: Sequence[float] = BLUR_KERNEL):
  """FIR 2x upsampling: (B, H, W, C) -> (B, 2H, 2W, C) (StyleGAN2's `Upsample`)."""
  p = len(taps) - 2
  return upfirdn(x, fir_kernel(taps) * 4, up=2, pad=((p + 1) // 2 + 1, p // 2))


def blur(x, pad: tuple[int, int], taps: Sequence[float] = BLUR_KERNEL, gain: float = 1.0):
  return upfirdn(x, fir_kernel(taps) * gain, pad=pad)


def fused_leaky_relu(x, bias=None):
  if bias is not None:
    x = x + bias.astype(x.dtype)
  return nn.leaky_relu(x, LRELU_SLOPE) * jnp.asarray(LRELU_GAIN, x.dtype)


def _conv(x, w, stride: int = 1, padding="SAME"):
  return jax.lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=_DIMS)


def _transposed_conv2x(x, w):
  """out[2y + i, 2x + j] += x[y, x] . w[i, j]: (B, H, W, I) -> (B, 2H + k - 2, 2W + k - 2, O).

  As one plain convolution over the input, not a convolution over the zero-dilated input:
  output row 2m + a gets the taps i = a, a + 2, ... of input rows m, m - 1, ..., so the
  four (row, column) parities are four small kernels of ceil(k / 2) taps, stacked along
  the output channels and interleaved after (depth to space). The dilated form multiplies
  three zeros for every product that counts and ran 2-5x slower on XLA's CPU backend."""
  k, (b, h, wd, _), out = w.shape[0], x.shape, w.shape[-1]
  taps = (k + 1) // 2                          # taps per parity
  rows, cols = h + (k - 1) // 2, wd + (k - 1) // 2
  zero = jnp.zeros_like(w[0, 0])
  pick = lambda a: [a + 2 * (taps - 1 - d) for d in range(taps)]   # tap at window offset d
  kernel = jnp.concatenate(
      [jnp.stack([jnp.stack([w[i, j] if i < k and j < k else zero for j in pick(pc)])
                  for i in pick(pr)]) for pr in (0, 1) for pc in (0, 1)], axis=-1)
  xp = jnp.pad(x, ((0, 0), (taps - 1, rows - h), (taps - 1, cols - wd), (0, 0)))
  y = jax.lax.conv_general_dilated(xp, kernel, (1, 1), "VALID", dimension_numbers=_DIMS)
  y = y.reshape(b, rows, cols, 2, 2, out).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(b, 2 * rows, 2 * cols, out)[:, :2 * h + k - 2, :2 * wd + k - 2]


class EqualDense(nn.Module):
  """y = x . (W lr_mul / sqrt(in)) + b lr_mul, W ~ N(0, 1 / lr_mul^2); optional fused lrelu."""
  features: int
  axes: Sequence[str | None] = ("embed", "mlp")
  use_bias: bool = True
  bias_init: float = 0.0
  lr_mul: float = 1.0
  activate: bool = False
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    init = lambda key, shape, dtype=jnp.float32: _normal(key, shape, dtype) / self.lr_mul
    kernel = self.param("kernel", logical_init(init, self.axes), (fan_in, self.features))
    dtype = self.dtype or x.dtype
    y = x.astype(dtype) @ (kernel * (self.lr_mul / math.sqrt(fan_in))).astype(dtype)
    bias = None
    if self.use_bias:
      bias = self.param("bias", logical_init(nn.initializers.constant(self.bias_init),
                                             self.axes[-1:]), (self.features,))
      bias = (bias * self.lr_mul).astype(dtype)
    if self.activate:
      return fused_leaky_relu(y, bias)
    return y if bias is None else y + bias


class EqualConv2d(nn.Module):
  """StyleGAN2's ConvLayer: [blur + stride 2 if `down`] -> equalized conv -> [bias]
  -> [leaky ReLU * sqrt 2]. Without `down` it is a 'SAME' conv."""
  features: int
  kernel_size: int = 3
  down: bool = False
  use_bias: bool = True
  activate: bool = False
  out_axis: str = "embed"
  taps: Sequence[float] = BLUR_KERNEL
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x):
    k, fan_in = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", logical_init(_normal, (None, None, "channels", self.out_axis)),
                        (k, k, fan_in, self.features))
    dtype = self.dtype or x.dtype
    x = x.astype(dtype)
    w = (kernel / math.sqrt(fan_in * k * k)).astype(dtype)
    if self.down:
      p = len(self.taps) - 2 + k - 1
      y = _conv(blur(x, ((p + 1) // 2, p // 2), self.taps), w, 2, "VALID")
    else:
      y = _conv(x, w)
    bias = None
    if self.use_bias:
      bias = self.param("bias", logical_init(nn.initializers.zeros, (self.out_axis,)),
                        (self.features,)).astype(dtype)
    if self.activate:
      return fused_leaky_relu(y, bias)
    return y if bias is None else y + bias


class ModulatedConv(nn.Module):
  """StyleGAN2's modulated conv: w'[k, i, o] = w[k, i, o] s_i (s = affine(style), bias 1),
  demodulated by 1 / sqrt(sum_{k, i} w'^2 + eps); `upsample`: a stride-2 transposed conv
  followed by the FIR blur (x 4), (B, H, W, I) -> (B, 2H, 2W, O). `use_bias` adds a plain
  (unmodulated) bias after it."""
  features: int
  kernel_size: int = 3
  demodulate: bool = True
  upsample: bool = False
  use_bias: bool = False
  out_axis: str = "embed"
  taps: Sequence[float] = BLUR_KERNEL
  eps: float = 1e-8
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x, style):
    k, fan_in = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", logical_init(_normal, (None, None, "channels", self.out_axis)),
                        (k, k, fan_in, self.features))
    s = EqualDense(fan_in, bias_init=1.0, dtype=jnp.float32, name="modulation")(
        style.astype(jnp.float32))                                   # (B, I)
    w = kernel / math.sqrt(fan_in * k * k)
    dtype = self.dtype or x.dtype
    x = x.astype(dtype) * s[:, None, None, :].astype(dtype)
    wd = w.astype(dtype)
    if self.upsample:
      p = len(self.taps) - 2 - (k - 1)
      y = blur(_transposed_conv2x(x, wd), ((p + 1) // 2 + 1, p // 2 + 1), self.taps, gain=4.0)
    else:
      y = _conv(x, wd)
    if self.demodulate:
      d = jax.lax.rsqrt((s * s) @ jnp.sum(w * w, axis=(0, 1)) + self.eps)   # (B, O)
      y = y * d[:, None, None, :].astype(dtype)
    if self.use_bias:
      bias = self.param("bias", logical_init(nn.initializers.zeros, (self.out_axis,)),
                        (self.features,))
      y = y + bias.astype(dtype)
    return y


class NoiseInjection(nn.Module):
  """x + weight * N(0, 1) per pixel (shared over channels); draws from the 'noise' rng."""

  @nn.compact
  def __call__(self, x):
    weight = self.param("weight", logical_init(nn.initializers.zeros, ()), ())
    noise = jax.random.normal(self.make_rng("noise"), x.shape[:-1] + (1,), x.dtype)
    return x + weight.astype(x.dtype) * noise


class StyledConv(nn.Module):
  """ModulatedConv (demodulated) -> [noise] -> fused bias + leaky ReLU.

  Noise is off by default: the IF-MDM / LIA code never passes noise to its StyledConvs (their
  NoiseInjection is the identity at training and inference), and a renderer without it is
  a deterministic function of (source, motion code), which stage 2's cached motion codes,
  the tests and frame-exact evaluation rely on. `noise=True` adds StyleGAN2's per-pixel
  noise (and its weight parameter) and needs a 'noise' rng at apply time."""
  features: int
  kernel_size: int = 3
  upsample: bool = False
  noise: bool = False
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x, style):
    y = ModulatedConv(self.features, self.kernel_size, upsample=self.upsample, dtype=self.dtype,
                      name="conv")(x, style)
    if self.noise:
      y = NoiseInjection(name="noise")(y)
    bias = self.param("bias", logical_init(nn.initializers.zeros, ("embed",)), (self.features,))
    return fused_leaky_relu(y, bias)


class ToRGB(nn.Module):
  """Features -> RGB, plus the FIR-upsampled RGB of the coarser scale (skip architecture).

  `modulated=True` is StyleGAN2's (modulated 1x1 conv without demodulation, + bias);
  `modulated=False` is LIA / IF-MDM's (an unmodulated 1x1 ConvLayer with fused leaky
  ReLU, + bias), which takes no style."""
  modulated: bool = True
  channels: int = 3
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x, style=None, skip=None):
    if self.modulated:
      y = ModulatedConv(self.channels, 1, demodulate=False, use_bias=True,
                        out_axis="out_channels", dtype=self.dtype, name="conv")(x, style)
    else:
      y = EqualConv2d(self.channels, 1, activate=True, out_axis="out_channels",
                      dtype=self.dtype, name="conv")(x)
      bias = self.param("bias", logical_init(nn.initializers.zeros, ("out_channels",)),
                        (self.channels,))
      y = y + bias.astype(y.dtype)
    if skip is not None:
      y = y + upsample2x(skip.astype(y.dtype))
    return y


class ResDownBlock(nn.Module):
  """StyleGAN2's residual discriminator block: 3x3 conv, 3x3 conv with blurred stride-2
  downsampling, plus a blurred stride-2 1x1 skip, summed / sqrt 2.
  (B, H, W, C) -> (B, H/2, W/2, F)."""
  features: int
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x):
    h = EqualConv2d(x.shape[-1], 3, activate=True, dtype=self.dtype, name="conv1")(x)
    h = EqualConv2d(self.features, 3, down=True, activate=True, dtype=self.dtype, name="conv2")(h)
    skip = EqualConv2d(self.features, 1, down=True, use_bias=False, dtype=self.dtype,
                       name="skip")(x)
    return (h + skip) * jnp.asarray(1 / math.sqrt(2.0), h.dtype)


def minibatch_stddev(x, group: int = 4, eps: float = 1e-8):
  """Appends StyleGAN2's minibatch-stddev feature: the batch is split into `g` strided
  groups (example n in group n // (B / g), position n % (B / g)); for each position, the
  std over its g examples, averaged over H, W and C, becomes one extra channel.
  g = gcd(B, group) (torch's code needs B divisible by min(B, group))."""
  b, h, w, c = x.shape
  g = math.gcd(b, group)
  y = x.astype(jnp.float32).reshape(g, b // g, h, w, c)
  std = jnp.sqrt(jnp.var(y, axis=0) + eps).mean(axis=(1, 2, 3))        # (B / g,)
  feature = jnp.broadcast_to(jnp.tile(std, g)[:, None, None, None], (b, h, w, 1))
  return jnp.concatenate([x, feature.astype(x.dtype)], axis=-1)

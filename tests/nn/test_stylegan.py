"""StyleGAN2 blocks against float64 NumPy references written from the definitions (zero
insertion, padding and shifted sums for FIR filtering; per-example modulated kernels for
modulated convs: the module computes the equivalent x * s -> conv -> y * d form)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkjax.nn.stylegan import (EqualConv2d, ModulatedConv, NoiseInjection, ResDownBlock,
                                 StyledConv, ToRGB, blur, fir_kernel, fused_leaky_relu,
                                 minibatch_stddev, upfirdn, upsample2x)

FIR = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
# Random weights without threefry's compile cost (see tests/models/test_ifmdm_paper_renderer.py).
KEY = jax.random.key(0, impl="unsafe_rbg")


def rel_err(a, ref):
  return float(np.abs(np.asarray(a, np.float64) - ref).max() / np.abs(ref).max())


def ref_upfirdn(x, k, up=1, down=1, pad=(0, 0)):
  """Zero insertion (x at every up-th position, zeros after each sample), padding, true
  convolution sum_m z[m] k[n - m] as a sum over taps, then every down-th sample."""
  b, h, w, c = x.shape
  z = np.zeros((b, h * up, w * up, c))
  z[:, ::up, ::up] = x
  z = np.pad(z, ((0, 0), pad, pad, (0, 0)))
  kh, kw = k.shape
  oh, ow = z.shape[1] - kh + 1, z.shape[2] - kw + 1
  out = np.zeros((b, oh, ow, c))
  for i in range(kh):
    for j in range(kw):
      out += k[kh - 1 - i, kw - 1 - j] * z[:, i:i + oh, j:j + ow]
  return out[:, ::down, ::down]


def ref_conv_same(x, w):
  """Cross-correlation (torch's conv2d) with zero padding k // 2: x (H, W, I), w (k, k, I, O)."""
  k = w.shape[0]
  p = k // 2
  xp = np.pad(x, ((p, p), (p, p), (0, 0)))
  h, wd = x.shape[:2]
  out = np.zeros((h, wd, w.shape[-1]))
  for i in range(k):
    for j in range(k):
      out += np.einsum("hwi,io->hwo", xp[i:i + h, j:j + wd], w[i, j])
  return out


def ref_transposed_conv2x(x, w):
  """out[2y + i, 2x + j] += x[y, x] . w[i, j] (torch's conv_transpose2d, stride 2)."""
  h, wd = x.shape[:2]
  k = w.shape[0]
  out = np.zeros((2 * h + k - 2, 2 * wd + k - 2, w.shape[-1]))
  for i in range(k):
    for j in range(k):
      out[i:i + 2 * h:2, j:j + 2 * wd:2] += np.einsum("hwi,io->hwo", x, w[i, j])
  return out


def ref_modulated_weights(p, style, demodulate):
  """Per-example kernels (B, k, k, I, O) from the module's raw parameters."""
  kernel = np.asarray(p["kernel"], np.float64)
  k, _, cin, _ = kernel.shape
  mk = np.asarray(p["modulation"]["kernel"], np.float64)
  s = style @ (mk / math.sqrt(mk.shape[0])) + np.asarray(p["modulation"]["bias"], np.float64)
  w = kernel[None] / math.sqrt(cin * k * k) * s[:, None, None, :, None]
  if demodulate:
    w = w / np.sqrt((w ** 2).sum(axis=(1, 2, 3), keepdims=True) + 1e-8)
  return w


def _randomised(params, seed):
  """The same tree with every leaf redrawn (biases too, so they are exercised)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape) * 0.5 + 1.0
                                            if a.ndim == 1 else rng.standard_normal(a.shape),
                                            jnp.float32), params)


def test_fir_kernel_and_blur_of_a_delta():
  np.testing.assert_allclose(fir_kernel(), FIR, rtol=0, atol=0)
  x = np.zeros((1, 9, 9, 1), np.float32)
  x[0, 4, 4] = 1.0
  out = np.asarray(jax.jit(lambda x: blur(x, (2, 1)))(jnp.asarray(x)))
  assert out.shape == (1, 9, 9, 1)
  np.testing.assert_allclose(out[0, 3:7, 3:7, 0], FIR, atol=1e-7)   # the filter, centred


@pytest.mark.parametrize("up,down,pad", [(1, 1, (2, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)),
                                         (2, 2, (3, 0)), (1, 1, (1, 1))])
def test_upfirdn_matches_reference(up, down, pad):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 8, 8, 3))
  k = rng.uniform(0.1, 1.0, (4, 4))   # asymmetric: a missing flip shows
  out = jax.jit(lambda x: upfirdn(x, k, up, down, pad))(jnp.asarray(x, jnp.float32))
  ref = ref_upfirdn(x, k, up, down, pad)
  assert out.shape == ref.shape
  assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("up,down,pad", [(1, 1, (2, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)),
                                         (2, 2, (3, 0)), (1, 2, (2, 2))])
def test_separable_upfirdn_matches_reference(up, down, pad):
  """Separable kernels take the two-pass path: rows and columns differ, so a swapped or
  unflipped pass shows."""
  rng = np.random.default_rng(3)
  x = rng.standard_normal((2, 9, 8, 3))
  k = np.outer(rng.uniform(0.1, 1.0, 4), rng.uniform(0.1, 1.0, 4))
  out = jax.jit(lambda x: upfirdn(x, k, up, down, pad))(jnp.asarray(x, jnp.float32))
  ref = ref_upfirdn(x, k, up, down, pad)
  assert out.shape == ref.shape
  assert rel_err(out, ref) < 1e-5


def test_upsample2x_matches_reference_and_keeps_constants():
  x = np.random.default_rng(1).standard_normal((1, 6, 6, 2))
  up2 = jax.jit(upsample2x)
  out = up2(jnp.asarray(x, jnp.float32))
  assert out.shape == (1, 12, 12, 2)
  assert rel_err(out, ref_upfirdn(x, FIR * 4, up=2, pad=(2, 1))) < 1e-5
  ones = np.asarray(up2(jnp.ones((1, 6, 6, 1))))
  np.testing.assert_allclose(ones[0, 2:-2, 2:-2], 1.0, atol=1e-6)   # unit DC gain inside


def test_fused_leaky_relu():
  x = jnp.asarray([[-1.0, 2.0]])
  np.testing.assert_allclose(jax.jit(fused_leaky_relu)(x, jnp.asarray([0.0, 1.0])),
                             [[-0.2 * math.sqrt(2), 3 * math.sqrt(2)]], rtol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_transposed_conv_by_parities_matches_reference(k):
  from talkjax.nn.stylegan import _transposed_conv2x
  rng = np.random.default_rng(5)
  x, w = rng.standard_normal((7, 5, 3)), rng.standard_normal((k, k, 3, 2))
  out = jax.jit(_transposed_conv2x)(jnp.asarray(x[None], jnp.float32),
                                    jnp.asarray(w, jnp.float32))[0]
  ref = ref_transposed_conv2x(x, w)
  assert out.shape == ref.shape == (2 * 7 + k - 2, 2 * 5 + k - 2, 2)
  assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("upsample,demodulate,kernel_size", [(False, True, 3), (True, True, 3),
                                                             (False, False, 1), (True, False, 3)])
def test_modulated_conv_matches_reference(upsample, demodulate, kernel_size):
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, 8, 8, 5))
  style = rng.standard_normal((2, 7))
  mod = ModulatedConv(4, kernel_size, demodulate=demodulate, upsample=upsample)
  x32, style32 = jnp.asarray(x, jnp.float32), jnp.asarray(style, jnp.float32)
  params = _randomised(nn.meta.unbox(jax.jit(mod.init)(jax.random.PRNGKey(0), x32,
                                                       style32))["params"], 3)
  out = jax.jit(lambda p, x, s: mod.apply({"params": p}, x, s))(params, x32, style32)
  w = ref_modulated_weights(params, style, demodulate)
  if upsample:
    ref = np.stack([ref_transposed_conv2x(x[b], w[b]) for b in range(2)])
    p = 4 - 2 - (kernel_size - 1)
    ref = ref_upfirdn(ref, FIR * 4, pad=((p + 1) // 2 + 1, p // 2 + 1))
  else:
    ref = np.stack([ref_conv_same(x[b], w[b]) for b in range(2)])
  assert out.shape == ((2, 16, 16, 4) if upsample else (2, 8, 8, 4))
  assert rel_err(out, ref) < 1e-5


def test_demodulation_gives_unit_norm_kernels_and_unit_variance_outputs():
  rng = np.random.default_rng(4)
  cin, cout = 64, 16
  x = rng.standard_normal((2, 40, 40, cin))
  style = 3.0 * rng.standard_normal((2, 8))    # styles far from 1: modulation alone rescales
  outs = {}
  for demodulate in (True, False):
    mod = ModulatedConv(cout, 3, demodulate=demodulate)
    params = nn.meta.unbox(jax.jit(mod.init)(jax.random.PRNGKey(5), jnp.zeros((1, 4, 4, cin)),
                                             jnp.zeros((1, 8))))["params"]
    w = ref_modulated_weights(params, style, demodulate)
    if demodulate:   # every (example, output channel) kernel has unit L2 norm
      np.testing.assert_allclose((w ** 2).sum(axis=(1, 2, 3)), 1.0, rtol=1e-6)
    y = np.asarray(jax.jit(lambda p, x, s: mod.apply({"params": p}, x, s))(
        params, jnp.asarray(x, jnp.float32), jnp.asarray(style, jnp.float32)))
    outs[demodulate] = y[:, 1:-1, 1:-1].reshape(-1, cout).var(axis=0)   # away from padding
  assert abs(outs[True].mean() - 1.0) < 0.05 and np.all(np.abs(outs[True] - 1.0) < 0.2)
  assert abs(outs[False].mean() - 1.0) > 1.0   # without demodulation the styles' scale shows


def test_equal_conv_downsample_matches_reference():
  rng = np.random.default_rng(6)
  x = rng.standard_normal((2, 8, 8, 3))
  for k in (3, 1):
    layer = EqualConv2d(4, k, down=True, activate=True)
    params = _randomised(nn.meta.unbox(jax.jit(layer.init)(jax.random.PRNGKey(0),
                                                           jnp.zeros((1, 8, 8, 3))))["params"], 7)
    out = jax.jit(lambda p, x: layer.apply({"params": p}, x))(params, jnp.asarray(x, jnp.float32))
    p = 2 + k - 1
    blurred = ref_upfirdn(x, FIR, pad=((p + 1) // 2, p // 2))
    w = np.asarray(params["kernel"], np.float64) / math.sqrt(3 * k * k)
    n = blurred.shape[1] - k + 1
    conv = sum(np.einsum("bhwi,io->bhwo", blurred[:, i:i + n, j:j + n], w[i, j])
               for i in range(k) for j in range(k))[:, ::2, ::2]
    pre = conv + np.asarray(params["bias"], np.float64)
    ref = np.where(pre >= 0, pre, 0.2 * pre) * math.sqrt(2)
    assert out.shape == (2, 4, 4, 4)
    assert rel_err(out, ref) < 1e-5


def test_minibatch_stddev_matches_reference():
  rng = np.random.default_rng(8)
  for b in (8, 6):
    x = rng.standard_normal((b, 4, 4, 5))
    out = np.asarray(jax.jit(lambda x: minibatch_stddev(x, group=4))(jnp.asarray(x, jnp.float32)))
    g = math.gcd(b, 4)
    m = b // g
    for n in range(b):
      members = x[[n % m + j * m for j in range(g)]]
      expected = np.sqrt(members.var(axis=0) + 1e-8).mean()
      np.testing.assert_allclose(out[n, ..., -1], expected, rtol=1e-5)
    np.testing.assert_array_equal(out[..., :5], x.astype(np.float32))


def test_noise_injection_is_off_by_default_and_seeded_when_on():
  x, style = jnp.ones((1, 8, 8, 4)), jnp.ones((1, 6))
  plain = StyledConv(4)
  params = jax.eval_shape(plain.init, KEY, x, style)
  assert "noise" not in params["params"]                       # no noise, no rng needed
  noisy = StyledConv(4, noise=True)
  p = nn.meta.unbox(jax.jit(noisy.init)({"params": KEY, "noise": KEY}, x, style))["params"]
  p["noise"]["weight"] = jnp.asarray(0.5)
  apply = jax.jit(lambda p, key: noisy.apply({"params": p}, x, style, rngs={"noise": key}))
  run = lambda seed: apply(p, jax.random.PRNGKey(seed))
  np.testing.assert_array_equal(run(3), run(3))
  assert float(np.abs(np.asarray(run(3)) - np.asarray(run(4))).max()) > 1e-3
  inject = jax.jit(lambda w, x, key: NoiseInjection().apply({"params": {"weight": w}}, x,
                                                             rngs={"noise": key}))
  np.testing.assert_allclose(inject(jnp.zeros(()), x, jax.random.PRNGKey(0)), x)


def test_blocks_shapes_skip_and_logical_axes():
  x, style = jnp.ones((2, 8, 8, 6)), jnp.ones((2, 5))
  for module, args, shape in [(ResDownBlock(12), (x,), (2, 4, 4, 12)),
                              (StyledConv(3, upsample=True), (x, style), (2, 16, 16, 3)),
                              (ToRGB(), (x, style), (2, 8, 8, 3)),
                              (ToRGB(modulated=False), (x,), (2, 8, 8, 3))]:
    variables = jax.jit(module.init)(KEY, *args)
    for leaf in jax.tree.leaves(variables, is_leaf=lambda v: isinstance(v, nn.Partitioned)):
      assert isinstance(leaf, nn.Partitioned) and len(leaf.names) == leaf.value.ndim
    assert jax.eval_shape(module.apply, variables, *args).shape == shape
  # The skip input is added FIR-upsampled.
  rgb = ToRGB(modulated=False)
  variables = jax.jit(rgb.init)(KEY, x)
  skip = jnp.asarray(np.random.default_rng(9).standard_normal((2, 4, 4, 3)), jnp.float32)
  with_skip = jax.jit(lambda v, x, s: rgb.apply(v, x, skip=s))(variables, x, skip)
  without = jax.jit(lambda v, x, s: rgb.apply(v, x) + upsample2x(s))(variables, x, skip)
  np.testing.assert_allclose(with_skip, without, atol=1e-5)

"""Vocal separation (talkjax/audio/separate.py) with tiny MDX-layout ONNX models exported
from PyTorch: the transforms against torch.stft / torch.istft, and the chunked procedure
against what the network computes on the whole signal: a linear network gives the scaled
signal back wherever one chunk alone covers a sample, more than n_fft / 2 from that
chunk's edges (elsewhere the procedure blends chunks whose edges see their own padding,
as the release's does: checked loosely)."""

import numpy as np
import pytest
import torch

from talkjax.audio.separate import MdxSettings, VocalSeparator, istft, stft
from talkjax.errors import TalkjaxError

N_FFT, HOP, DIM_F, DIM_T = 256, 64, 96, 16     # chunk = 64 x 15 = 960 samples
SETTINGS = MdxSettings(n_fft=N_FFT, hop=HOP)


class _Net(torch.nn.Module):
  def __init__(self, kind):
    super().__init__()
    self.kind = kind

  def forward(self, x):
    if self.kind == "half":
      return 0.5 * x
    if self.kind == "swap":           # planes (L re, L im, R re, R im) -> (R..., L...)
      return torch.cat([x[:, 2:], x[:, :2]], dim=1)
    return torch.relu(x)


def _export(tmp_path, kind, shape=(1, 4, DIM_F, DIM_T)):
  path = tmp_path / f"{kind}.onnx"
  torch.onnx.export(_Net(kind).eval(), torch.zeros(shape), str(path), opset_version=13,
                    input_names=["input"], output_names=["output"], dynamo=False)
  return path


def _exact(n, overlap, chunk=960):
  """Samples of an n-sample signal covered by one chunk only, n_fft / 2 from its edges."""
  step = int((1 - overlap) * chunk)
  covered = np.zeros(n + N_FFT // 2 + chunk, int)
  clean = np.zeros_like(covered, bool)
  for start in range(0, covered.size, step):
    covered[start:start + chunk] += 1
    clean[start + N_FFT // 2:start + chunk - N_FFT // 2] |= True
  inner = (covered == 1) & clean
  return inner[N_FFT // 2:N_FFT // 2 + n]     # the mixture starts n_fft / 2 zeros early


def _close(out, want, where):
  peak = np.abs(want).max()
  assert where.mean() > 0.4
  assert np.abs(out - want)[:, where].max() < 3e-3 * peak    # float32 network
  assert np.abs(out - want).max() < 0.15 * peak


def _tones(n, freqs, seed=0):
  """Sinusoids at bin-centre frequencies well inside bins 3..DIM_F (44.1 kHz), faded in
  and out over 2 FFT lengths (an abrupt start would put energy in every bin)."""
  rng = np.random.default_rng(seed)
  t = np.arange(n) / 44100
  fade = np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / (2 * N_FFT))
  return fade * sum(rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))
                    for f in freqs)


def test_stft_and_istft_match_torch():
  x = np.random.default_rng(0).standard_normal((2, 2000))
  window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
  want = torch.stft(torch.from_numpy(x), N_FFT, HOP, window=window, center=True,
                    return_complex=True).numpy()
  got = stft(x, N_FFT, HOP)
  assert got.shape == want.shape
  assert np.abs(got - want).max() < 1e-9
  back = torch.istft(torch.from_numpy(want), N_FFT, HOP, window=window, center=True,
                     length=2000).numpy()
  assert np.abs(istft(got, N_FFT, HOP, 2000) - back).max() < 1e-9
  assert np.abs(back - x).max() < 1e-9


@pytest.mark.parametrize("overlap", [0.25, 0.0])
def test_a_linear_network_gives_the_scaled_signal_back_across_chunks(tmp_path, overlap):
  sep = VocalSeparator(_export(tmp_path, "half"), MdxSettings(n_fft=N_FFT, hop=HOP,
                                                              overlap=overlap))
  assert (sep.dim_f, sep.dim_t, sep.chunk) == (DIM_F, DIM_T, 960)
  bin_hz = 44100 / N_FFT
  mix = np.stack([_tones(5000, [10 * bin_hz, 37 * bin_hz]),
                  _tones(5000, [21 * bin_hz, 60 * bin_hz], seed=1)])    # several chunks
  out = sep.separate(mix)
  assert out.shape == mix.shape
  # the network halves the 96 bins it sees; the tones do not reach the others
  _close(out, 0.5 * mix, _exact(5000, overlap))


def test_the_planes_are_left_and_right_real_and_imaginary(tmp_path):
  sep = VocalSeparator(_export(tmp_path, "swap"), SETTINGS)
  bin_hz = 44100 / N_FFT
  mix = np.stack([_tones(3000, [12 * bin_hz]), _tones(3000, [50 * bin_hz], seed=2)])
  _close(sep.separate(mix), mix[::-1], _exact(3000, 0.25))


def test_denoise_averages_the_network_on_the_spectrum_and_its_negative(tmp_path):
  # relu(s)/2 - relu(-s)/2 = s/2: with denoise a ReLU network halves the signal
  path = _export(tmp_path, "relu")
  bin_hz = 44100 / N_FFT
  mix = np.stack([_tones(3000, [15 * bin_hz])] * 2)
  denoised = VocalSeparator(path, MdxSettings(n_fft=N_FFT, hop=HOP, denoise=True)).separate(mix)
  exact = _exact(3000, 0.25)
  _close(denoised, 0.5 * mix, exact)
  plain = VocalSeparator(path, SETTINGS).separate(mix)
  assert np.abs(plain - 0.5 * mix)[:, exact].max() > 10 * np.abs(denoised - 0.5 * mix)[:, exact].max()


def test_mono_16k_in_and_out(tmp_path):
  sep = VocalSeparator(_export(tmp_path, "half"), SETTINGS)
  t = np.arange(16000) / 16000
  speech = (0.3 * np.sin(2 * np.pi * 1500 * t)).astype(np.float32)
  out = sep(speech, 16000)
  assert out.shape == speech.shape and out.dtype == np.float32
  assert np.abs(out - 0.5 * speech).max() < 0.05
  assert np.sqrt(np.mean((out - 0.5 * speech) ** 2)) < 0.01


def test_bad_models_are_named(tmp_path):
  with pytest.raises(TalkjaxError, match="vocal separator model not found"):
    VocalSeparator(tmp_path / "missing.onnx", SETTINGS)
  (tmp_path / "junk.onnx").write_bytes(b"not a model")
  with pytest.raises(TalkjaxError, match="cannot load the ONNX model"):
    VocalSeparator(tmp_path / "junk.onnx", SETTINGS)
  with pytest.raises(TalkjaxError, match=r"an MDX-Net takes one \(batch, 4, dim_f, dim_t\)"):
    VocalSeparator(_export(tmp_path, "half", shape=(1, 2, DIM_F, DIM_T)), SETTINGS)
  with pytest.raises(TalkjaxError, match="n_fft=128 gives 65"):
    VocalSeparator(_export(tmp_path, "half"), MdxSettings(n_fft=128, hop=HOP))

"""Vocal separation with an MDX-Net ONNX model (MEMO's release: Kim_Vocal_2.onnx).

MEMO's release isolates the voice before it reads speech features, with the
`audio-separator` package's MDX procedure; talkjax does the same as an optional step
(`talkjax sample --separate-vocals`), on the host, once per request:
1. the audio at 44.1 kHz, two channels (a mono file is duplicated), scaled down to a
   peak of 0.9 when louder;
2. cut into chunks of hop x (dim_t - 1) samples every (1 - overlap) chunks (the mixture
   padded with n_fft / 2 zeros before and enough after), each chunk:
   STFT (Hann window of n_fft, `hop`, centred), the first `dim_f` bins, real and
   imaginary parts of both channels as 4 planes (L re, L im, R re, R im), the 3 lowest
   bins zeroed, the network, the inverse STFT (bins above dim_f zero);
3. the chunks overlap-added under Hann windows and normalised by the windows' sum; the
   padding removed. The release's optional "denoise" averages the network on the
   spectrum and minus itself (`denoise=True`).
dim_f and dim_t are read from the model's input shape (batch, 4, dim_f, dim_t); n_fft and
hop are the model's settings (Kim_Vocal_2: 7680 and 1024, the defaults).
The network runs in onnxruntime (the `separate` extra), as the release's runs it: an
MDX graph's operators vary with the exporter, and this step runs once per request on
the host, not in the compiled sampler. Deviations, labelled: stereo input is mixed to
mono first (the stem is mono speech for the model anyway), and the stem keeps the mix's
scale (the release multiplies it by the input's peak; talkjax normalises loudness next).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from talkjax.errors import MissingCapabilityError, TalkjaxError

RATE = 44100
_FIX = ("pass an MDX-Net vocal model exported to ONNX (MEMO's release: "
        "misc/vocal_separator/Kim_Vocal_2.onnx)")


@dataclasses.dataclass(frozen=True)
class MdxSettings:
  n_fft: int = 7680
  hop: int = 1024
  overlap: float = 0.25
  max_peak: float = 0.9
  denoise: bool = False


def _session(path):
  try:
    import onnxruntime
  except ImportError as e:
    raise MissingCapabilityError("vocal separation runs the ONNX model with onnxruntime",
                                 fix="pip install 'talkjax[separate]' (or onnxruntime)") from e
  if not os.path.isfile(path):
    raise TalkjaxError("vocal separator model not found", path=path, fix=_FIX)
  try:
    return onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
  except Exception as e:   # onnxruntime raises its own types for unreadable files
    raise TalkjaxError(f"cannot load the ONNX model ({type(e).__name__}: {e})", path=path,
                       fix=_FIX) from e


def hann(n: int) -> np.ndarray:
  """The periodic Hann window (torch.hann_window's default)."""
  return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float64)


def stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
  """(C, N) -> (C, n_fft // 2 + 1, frames) complex, centred (reflect-padded by n_fft / 2)."""
  pad = n_fft // 2
  x = np.pad(x, ((0, 0), (pad, pad)), mode="reflect")
  frames = 1 + (x.shape[-1] - n_fft) // hop
  idx = np.arange(n_fft)[None] + hop * np.arange(frames)[:, None]
  return np.fft.rfft(x[:, idx] * hann(n_fft), axis=-1).transpose(0, 2, 1)


def istft(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
  """Inverse of `stft` (overlap-add, divided by the summed squared window)."""
  window = hann(n_fft)
  frames = np.fft.irfft(spec.transpose(0, 2, 1), n=n_fft, axis=-1) * window
  total = n_fft + hop * (frames.shape[1] - 1)
  out = np.zeros((spec.shape[0], total))
  norm = np.zeros(total)
  for t in range(frames.shape[1]):
    out[:, t * hop:t * hop + n_fft] += frames[:, t]
    norm[t * hop:t * hop + n_fft] += window ** 2
  pad = n_fft // 2
  return (out / np.where(norm > 1e-11, norm, 1.0))[:, pad:pad + length]


class VocalSeparator:
  """`separator(samples, rate)` -> the vocal stem, mono float32 at `rate`."""

  def __init__(self, path, settings: MdxSettings = MdxSettings()):
    self.path, self.settings = os.fspath(path), settings
    self.session = _session(self.path)
    inputs = self.session.get_inputs()
    shape = list(inputs[0].shape) if len(inputs) == 1 else []
    if len(shape) != 4 or shape[1] != 4 or not all(isinstance(d, int) for d in shape[2:]):
      raise TalkjaxError(f"the model's input is {[i.shape for i in inputs]}, an MDX-Net "
                         "takes one (batch, 4, dim_f, dim_t) spectrogram", path=self.path,
                         fix=_FIX)
    self.input_name = inputs[0].name
    self.dim_f, self.dim_t = int(shape[2]), int(shape[3])
    bins = settings.n_fft // 2 + 1
    if self.dim_f > bins:
      raise TalkjaxError(f"the model reads {self.dim_f} frequency bins, n_fft={settings.n_fft} "
                         f"gives {bins}", path=self.path,
                         fix="set the n_fft the model was trained with")
    self.chunk = settings.hop * (self.dim_t - 1)
    self.trim = settings.n_fft // 2
    if self.chunk <= 2 * self.trim:
      raise TalkjaxError(f"dim_t={self.dim_t} x hop={settings.hop} is too short for "
                         f"n_fft={settings.n_fft}", path=self.path,
                         fix="set the hop and n_fft the model was trained with")

  def _network(self, spec: np.ndarray) -> np.ndarray:
    return self.session.run(None, {self.input_name: spec.astype(np.float32)})[0]

  def _chunk(self, wave: np.ndarray) -> np.ndarray:
    """(2, chunk) -> (2, chunk): one chunk through STFT, the network and back."""
    s = self.settings
    spec = stft(wave, s.n_fft, s.hop)[:, :self.dim_f]              # (2, dim_f, dim_t)
    planes = np.stack([spec.real, spec.imag], axis=1).reshape(1, 4, self.dim_f, -1)
    planes[:, :, :3] = 0
    out = self._network(planes)
    if s.denoise:
      out = 0.5 * out - 0.5 * self._network(-planes)
    out = np.asarray(out, np.float64).reshape(2, 2, self.dim_f, -1)
    full = np.zeros((2, s.n_fft // 2 + 1, out.shape[-1]), complex)
    full[:, :self.dim_f] = out[:, 0] + 1j * out[:, 1]
    return istft(full, s.n_fft, s.hop, wave.shape[-1])

  def separate(self, mix: np.ndarray, progress=None) -> np.ndarray:
    """(2, N) at 44.1 kHz -> (2, N): the procedure above."""
    s = self.settings
    chunk, trim = self.chunk, self.trim
    gen = chunk - 2 * trim
    pad = gen + trim - mix.shape[-1] % gen
    mixture = np.concatenate([np.zeros((2, trim)), mix, np.zeros((2, pad))], axis=1)
    step = int((1 - s.overlap) * chunk)
    result = np.zeros_like(mixture)
    divider = np.zeros_like(mixture)
    starts = range(0, mixture.shape[-1], step)
    for start in (starts if progress is None else progress(starts)):
      end = min(start + chunk, mixture.shape[-1])
      part = np.zeros((2, chunk))
      part[:, :end - start] = mixture[:, start:end]
      out = self._chunk(part)[:, :end - start]
      window = np.hanning(end - start) if s.overlap else np.ones(end - start)
      result[:, start:end] += out * window
      divider[:, start:end] += window
    with np.errstate(invalid="ignore", divide="ignore"):
      waves = np.where(divider > 0, result / divider, 0.0)
    return waves[:, trim:trim + mix.shape[-1]]

  def __call__(self, samples: np.ndarray, rate: int) -> np.ndarray:
    from talkjax.audio.load import resample
    x = np.asarray(samples, np.float64).reshape(-1)
    if rate != RATE:
      x = resample(x.astype(np.float32), rate, RATE).astype(np.float64)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > self.settings.max_peak:
      x = x * (self.settings.max_peak / peak)
    vocals = self.separate(np.stack([x, x])).mean(0)
    if rate != RATE:
      vocals = resample(vocals.astype(np.float32), RATE, rate)
    return np.asarray(vocals, np.float32)

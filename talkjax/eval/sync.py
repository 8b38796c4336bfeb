"""Sync-C / Sync-D (a.k.a. LSE-C / LSE-D): the SyncNet lip-sync protocol of `syncnet_python`.

`sync_scores(frames_uint8, audio_16k, params)` follows the reference `SyncNetInstance.evaluate`
step by step, on face crops already cut out of the video:

1. Frames (25 fps) are resized to 224x224 as the reference's crop step does
   (`cv2.resize`, bilinear), and put in its channel order (BGR, as `cv2.imread` reads them).
2. Audio (16 kHz mono) as 16-bit PCM, as the reference reads its wav file; float audio is
   quantised the way ffmpeg writes `pcm_s16le` (x * 32768, rounded, clipped).
3. 13 MFCCs at 100 Hz, computed as `python_speech_features.mfcc` with its defaults does
   (25 ms rectangular frames every 10 ms, pre-emphasis 0.97, 512-point FFT, 26 mel filters,
   orthonormal DCT-II, lifter 22, c0 replaced by the log frame energy), in numpy float64.
4. `L = min(frames, samples // 640)`; windows `i = 0 .. L - 6` (the reference stops one
   window short of the last possible one; kept): video frames `i .. i+4` against MFCC
   columns `4i .. 4i+19`. Both towers run through `talkjax.eval.extract.map_batches`.
5. For every window i and offset index k in 0..30, the distance between lip feature i and
   audio feature i + k - 15, the audio features zero-padded by 15 rows at both ends as the
   reference pads them (so edge offsets mix in `|lip feature|`), with torch's
   `pairwise_distance` epsilon (|a - b + 1e-6|).
6. Per-offset mean distance over windows; Sync-D = its minimum, Sync-C = median - minimum,
   offset = 15 - argmin (frames; positive: the sound comes first and the lips follow that
   many frames later), framewise confidence = median - distance at the best offset,
   median-filtered over 9 windows with zero padding (scipy's `medfilt`), one value per
   window as the reference prints it.

The reference only warns when audio and video lengths differ and then truncates to the
shorter; here audio more than 0.2 s (5 frames) shorter than the video is an error, since a
generated clip with its audio cut short is almost always a mistake, and longer audio is
truncated as the reference does.
"""

from __future__ import annotations

import numpy as np

from talkjax.errors import TalkjaxError
from talkjax.eval.extract import map_batches
from talkjax.eval.nets import syncnet

FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS       # 640
MFCC_PER_FRAME = 4                           # 100 Hz MFCC / 25 fps
WINDOW_FRAMES = 5
WINDOW_MFCC = 20
VSHIFT = 15                                  # offsets -15..+15 frames
CROP_SIZE = 224
AUDIO_SLACK_FRAMES = 5                       # audio may be this many frames shorter
MEDIAN_KERNEL = 9

# python_speech_features.mfcc defaults
_WIN, _HOP, _NFFT, _NFILT, _NCEP, _PREEMPH, _LIFTER = 400, 160, 512, 26, 13, 0.97, 22


def min_frames(vshift: int = VSHIFT) -> int:
  """Fewest video frames for which every offset in -vshift..+vshift compares at least one
  real (not zero-padded) audio window: vshift + 1 windows of 5 frames, plus the window the
  reference leaves out."""
  return vshift + 1 + WINDOW_FRAMES


# ----------------------------------------------------------------------------- audio

def pcm16(audio) -> np.ndarray:
  """Audio as the 16-bit sample values the reference reads from its wav file (float64).

  int16 input is taken as is; float input in [-1, 1] is scaled by 32768, rounded to the
  nearest integer and clipped, as ffmpeg's float -> s16 conversion does."""
  audio = np.asarray(audio)
  if audio.dtype == np.int16:
    return audio.astype(np.float64)
  scaled = np.rint(audio.astype(np.float64) * 32768.0)
  return np.clip(scaled, -32768, 32767)


def _mel_filterbank(sample_rate: int) -> np.ndarray:
  """(26, 257) triangular filters on FFT bins, evenly spaced in mel from 0 to Nyquist."""
  def hz2mel(hz):
    return 2595.0 * np.log10(1.0 + hz / 700.0)

  def mel2hz(mel):
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

  mels = np.linspace(hz2mel(0.0), hz2mel(sample_rate / 2), _NFILT + 2)
  bins = np.floor((_NFFT + 1) * mel2hz(mels) / sample_rate)
  bank = np.zeros((_NFILT, _NFFT // 2 + 1))
  fft_bin = np.arange(_NFFT // 2 + 1)
  for j in range(_NFILT):
    lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
    rise = (fft_bin >= lo) & (fft_bin < mid)
    fall = (fft_bin >= mid) & (fft_bin < hi)
    bank[j, rise] = (fft_bin[rise] - lo) / (mid - lo)
    bank[j, fall] = (hi - fft_bin[fall]) / (hi - mid)
  return bank


def _dct_ortho(n: int, keep: int) -> np.ndarray:
  """(n, keep) matrix of the orthonormal DCT-II, first `keep` coefficients."""
  k = np.arange(keep)[None, :]
  i = np.arange(n)[:, None]
  basis = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * np.sqrt(2.0 / n)
  basis[:, 0] /= np.sqrt(2.0)
  return basis


def mfcc(signal, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """(frames, 13) MFCCs of a mono signal, as `python_speech_features.mfcc(signal, rate)`.

  Frames: 1 if the signal fits in one window, else 1 + ceil((len - 400) / 160), the tail
  zero-padded. Feed it the 16-bit sample values (see `pcm16`), as the reference does."""
  x = np.asarray(signal, np.float64).reshape(-1)
  if x.size == 0:
    raise ValueError("mfcc needs at least one sample")
  win = round(0.025 * sample_rate)
  hop = round(0.01 * sample_rate)
  x = np.concatenate([x[:1], x[1:] - _PREEMPH * x[:-1]])
  count = 1 if len(x) <= win else 1 + int(np.ceil((len(x) - win) / hop))
  padded = np.zeros((count - 1) * hop + win)
  padded[:len(x)] = x
  frames = np.lib.stride_tricks.sliding_window_view(padded, win)[::hop]
  power = np.abs(np.fft.rfft(frames, _NFFT)) ** 2 / _NFFT
  eps = np.finfo(np.float64).eps
  energy = power.sum(1)
  energy = np.where(energy == 0, eps, energy)
  bands = power @ _mel_filterbank(sample_rate).T
  bands = np.where(bands == 0, eps, bands)
  cep = np.log(bands) @ _dct_ortho(_NFILT, _NCEP)
  cep *= 1.0 + (_LIFTER / 2.0) * np.sin(np.pi * np.arange(_NCEP) / _LIFTER)
  cep[:, 0] = np.log(energy)
  return cep


# ----------------------------------------------------------------------------- video

def _linear_taps(n_in: int, n_out: int, clamp_weights: bool):
  """Source indices and 11-bit fixed-point weights of OpenCV's INTER_LINEAR resize.

  Positions are computed in float32 as OpenCV does; along x a position left of the first
  or right of the last pixel takes that pixel with full weight, along y the weights stay
  and only the row indices are clamped (OpenCV treats the two axes differently)."""
  scale = 1.0 / (n_out / n_in)
  pos = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
  i0 = np.floor(pos).astype(np.int64)
  frac = (pos - i0.astype(np.float32)).astype(np.float32)
  if clamp_weights:
    low, high = i0 < 0, i0 >= n_in - 1
    frac[low | high] = 0
    i0[low] = 0
    i0[high] = n_in - 1
  w0 = np.rint((np.float32(1) - frac) * np.float32(2048)).astype(np.int32)
  w1 = np.rint(frac * np.float32(2048)).astype(np.int32)
  return np.clip(i0, 0, n_in - 1), np.clip(i0 + 1, 0, n_in - 1), w0, w1


def resize_224(frames: np.ndarray, chunk: int = 16) -> np.ndarray:
  """uint8 (T, H, W, C) -> (T, 224, 224, C) as `cv2.resize(frame, (224, 224))` does
  (bilinear, OpenCV's fixed-point arithmetic and rounding; bit-exact with OpenCV 5 on x86)."""
  frames = np.asarray(frames)
  t, h, w = frames.shape[:3]
  if (h, w) == (CROP_SIZE, CROP_SIZE):
    return frames.copy()
  yi0, yi1, yw0, yw1 = _linear_taps(h, CROP_SIZE, clamp_weights=False)
  xi0, xi1, xw0, xw1 = _linear_taps(w, CROP_SIZE, clamp_weights=True)
  out = np.empty((t, CROP_SIZE, CROP_SIZE) + frames.shape[3:], np.uint8)
  xw0, xw1 = xw0[:, None], xw1[:, None]
  yw0, yw1 = yw0[:, None, None], yw1[:, None, None]
  for start in range(0, t, chunk):
    x = frames[start:start + chunk].astype(np.int32)
    rows = x[:, :, xi0] * xw0 + x[:, :, xi1] * xw1           # (t, H, 224, C), 11 fraction bits
    top, bottom = rows[:, yi0] >> 4, rows[:, yi1] >> 4
    value = (((yw0 * top) >> 16) + ((yw1 * bottom) >> 16) + 2) >> 2
    out[start:start + chunk] = np.clip(value, 0, 255)
  return out


# ----------------------------------------------------------------------------- protocol

def _check_inputs(frames, audio, fps):
  if abs(float(fps) - FPS) > 1e-3:
    raise TalkjaxError(f"SyncNet scores need {FPS} fps video, got {fps:g} fps",
                       fix=f"resample the video to {FPS} fps first (e.g. ffmpeg -r {FPS})")
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise TalkjaxError(f"face crops must be uint8 frames (T, H, W, 3), got {frames.dtype} "
                       f"{frames.shape}",
                       fix="pass the face-crop video as np.uint8 with shape (T, H, W, 3)")
  if min(frames.shape[1:3]) < 1:
    raise TalkjaxError(f"face crops are empty ({frames.shape[1]}x{frames.shape[2]} pixels)",
                       fix="pass non-empty face crops")
  need = min_frames()
  if len(frames) < need:
    raise TalkjaxError(f"video too short for the SyncNet offset search: {len(frames)} frames, "
                       f"need at least {need} ({need / FPS:.2f} s at {FPS} fps)",
                       fix=f"score clips of at least {need} frames")
  if audio is None:
    raise TalkjaxError("no audio given for the SyncNet scores",
                       fix=f"pass the clip's mono audio at {SAMPLE_RATE} Hz")
  audio = np.asarray(audio)
  if audio.ndim == 2 and 1 in audio.shape:
    audio = audio.reshape(-1)
  if audio.ndim != 1:
    raise TalkjaxError(f"audio must be mono (samples,), got shape {audio.shape}",
                       fix="mix the channels down to mono, e.g. audio.mean(axis=1)")
  if audio.size == 0:
    raise TalkjaxError("audio is empty", fix=f"pass the clip's audio at {SAMPLE_RATE} Hz")
  if not (audio.dtype == np.int16 or np.issubdtype(audio.dtype, np.floating)):
    raise TalkjaxError(f"audio must be float in [-1, 1] or int16 PCM, got {audio.dtype}",
                       fix="convert with audio.astype(np.float32) / 32768")
  if np.issubdtype(audio.dtype, np.floating) and not np.all(np.isfinite(audio)):
    raise TalkjaxError("audio contains NaN or infinite samples",
                       fix="check the audio decoding / generation step")
  audio_frames = len(audio) // SAMPLES_PER_FRAME
  if audio_frames < len(frames) - AUDIO_SLACK_FRAMES:
    raise TalkjaxError(
        f"audio ({len(audio) / SAMPLE_RATE:.2f} s) is much shorter than the video "
        f"({len(frames) / FPS:.2f} s); at most {AUDIO_SLACK_FRAMES / FPS:.1f} s shorter "
        f"is accepted",
        fix=f"pass the full audio track at {SAMPLE_RATE} Hz (resample it if it is at "
            "another rate)")
  if min(len(frames), audio_frames) < need:
    raise TalkjaxError(f"audio too short for the SyncNet offset search: {audio_frames} "
                       f"frames' worth, need at least {need} ({need / FPS:.2f} s)",
                       fix=f"score clips of at least {need / FPS:.2f} s of audio")
  return frames, audio


def _medfilt(x: np.ndarray, kernel: int) -> np.ndarray:
  half = kernel // 2
  padded = np.pad(x, half)
  return np.median(np.lib.stride_tricks.sliding_window_view(padded, kernel), axis=1)


def offset_distances(lip_feat: np.ndarray, aud_feat: np.ndarray,
                     vshift: int = VSHIFT) -> np.ndarray:
  """(N, 2 * vshift + 1) distances: window i against audio window i + k - vshift, the
  audio features zero-padded at both ends (as the reference's `calc_pdist`)."""
  lip = np.asarray(lip_feat, np.float64)
  aud = np.pad(np.asarray(aud_feat, np.float64), ((vshift, vshift), (0, 0)))
  shifted = np.lib.stride_tricks.sliding_window_view(aud, 2 * vshift + 1, axis=0)
  diff = lip[:, :, None] - shifted[:len(lip)] + 1e-6                # (N, D, offsets)
  return np.sqrt((diff * diff).sum(1))


def scores_from_features(lip_feat: np.ndarray, aud_feat: np.ndarray,
                         vshift: int = VSHIFT) -> dict:
  """Sync-C, Sync-D, offset and framewise confidence from per-window features (step 6)."""
  dists = offset_distances(lip_feat, aud_feat, vshift)
  mean = dists.mean(0)
  best = int(np.argmin(mean))
  median = float(np.median(mean))
  framewise = _medfilt(median - dists[:, best], MEDIAN_KERNEL)
  return {"sync_c": median - float(mean[best]), "sync_d": float(mean[best]),
          "offset": vshift - best, "framewise_conf": framewise, "mean_dists": mean}


def sync_scores(frames_uint8, audio_16k, params, fps: float = FPS, *,
                channel_order: str = "rgb", batch_size: int = 32,
                progress: str | None = None) -> dict:
  """SyncNet scores of a face-crop clip and its audio, as the reference protocol.

  frames_uint8: (T, H, W, 3) uint8 face crops at 25 fps (RGB; `channel_order="bgr"` for
  frames read with OpenCV). audio_16k: mono audio at 16 kHz, float in [-1, 1] or int16.
  params: `talkjax.eval.nets.syncnet.load_params(".../syncnet_v2.model")`.
  Returns {"sync_c": float (Sync-C / LSE-C, higher is better), "sync_d": float (Sync-D /
  LSE-D, lower is better), "offset": int (frames; positive: the lips move that many frames
  after the sound), "framewise_conf":
  np.ndarray (one per 5-frame window), "mean_dists": np.ndarray (31,) per offset -15..+15
  in the order +15..-15, as the reference indexes them}.
  """
  if channel_order not in ("rgb", "bgr"):
    raise TalkjaxError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}",
                       fix="pass channel_order='rgb' (default) or 'bgr'")
  frames, audio = _check_inputs(frames_uint8, audio_16k, fps)
  length = min(len(frames), len(audio) // SAMPLES_PER_FRAME)
  windows = length - WINDOW_FRAMES

  crops = resize_224(frames[:windows + WINDOW_FRAMES - 1])
  if channel_order == "rgb":
    crops = np.ascontiguousarray(crops[..., ::-1])
  lip_in = np.lib.stride_tricks.sliding_window_view(crops, WINDOW_FRAMES, axis=0)
  lip_in = lip_in.transpose(0, 4, 1, 2, 3)                          # (N, 5, 224, 224, 3) view

  cep = mfcc(pcm16(audio)).T.astype(np.float32)                     # (13, frames)
  starts = np.arange(windows) * MFCC_PER_FRAME
  aud_in = np.stack([cep[:, s:s + WINDOW_MFCC] for s in starts])    # (N, 13, 20)

  lip_feat = map_batches(syncnet.lip_embed, params, lip_in, batch_size,
                         progress=progress and f"{progress} (lips)")
  aud_feat = map_batches(syncnet.audio_embed, params, aud_in, batch_size,
                         progress=progress and f"{progress} (audio)")
  return scores_from_features(lip_feat, aud_feat)

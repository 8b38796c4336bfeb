"""Loading real files of every supported container, rate, sample type and channel count."""

import numpy as np
import pytest
import soundfile as sf

from talkjax.audio.load import SILENCE_RMS, load_audio
from talkjax.errors import TalkjaxError


def _tone(freq, rate, seconds=1.0, amp=0.3):
  t = np.arange(int(rate * seconds)) / rate
  return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _dominant_freq(x, rate=16000):
  spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
  return np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spec)]


def _rms_dbfs(x):
  return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_wav_rates_and_sample_types(tmp_path, rate, subtype):
  path = tmp_path / "a.wav"
  sf.write(path, _tone(1000, rate), rate, subtype=subtype)
  x = load_audio(path)
  assert x.dtype == np.float32 and x.ndim == 1
  assert abs(x.size - 16000) <= 1
  assert abs(_dominant_freq(x) - 1000) < 2
  assert abs(_rms_dbfs(x) - (-20.0)) < 0.01


def test_stereo_mix_and_channel_pick(tmp_path):
  rate = 44100
  stereo = np.stack([_tone(500, rate), _tone(3000, rate, amp=0.1)], axis=1)
  path = tmp_path / "s.wav"
  sf.write(path, stereo, rate, subtype="PCM_16")
  assert abs(_dominant_freq(load_audio(path, channel=0)) - 500) < 2
  assert abs(_dominant_freq(load_audio(path, channel=1)) - 3000) < 2
  mix = load_audio(path, channel="mix", loudness_dbfs=None)
  spec = np.abs(np.fft.rfft(mix))
  freqs = np.fft.rfftfreq(mix.size, 1 / 16000)
  level = lambda f: spec[np.argmin(np.abs(freqs - f))]
  # the mix averages the channels: 0.15 at 500 Hz, 0.05 at 3 kHz
  assert level(500) / level(3000) == pytest.approx(3.0, rel=0.02)
  with pytest.raises(TalkjaxError, match="channel 2"):
    load_audio(path, channel=2)


def test_resampling_removes_tones_above_new_nyquist(tmp_path):
  # 11 kHz at 48 kHz would alias to 5 kHz at 16 kHz without a proper anti-alias filter.
  rate = 48000
  x = _tone(1000, rate) + _tone(11000, rate)
  path = tmp_path / "hf.wav"
  sf.write(path, x, rate, subtype="FLOAT")
  y = load_audio(path, loudness_dbfs=None)
  spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
  freqs = np.fft.rfftfreq(y.size, 1 / 16000)
  at = lambda f: spec[np.abs(freqs - f) < 20].max()
  assert at(5000) < 1e-4 * at(1000)


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_flac_and_ogg(tmp_path, fmt, subtype):
  path = tmp_path / f"a.{fmt.lower()}"
  sf.write(path, _tone(440, 22050, 1.5), 22050, format=fmt, subtype=subtype)
  x = load_audio(path)
  assert abs(x.size - 24000) <= 1
  assert abs(_dominant_freq(x) - 440) < 2


def _encode_pyav(path, codec, rate, x, layout="mono"):
  import av
  with av.open(str(path), "w") as container:
    stream = container.add_stream(codec, rate=rate, layout=layout)
    frame = av.AudioFrame.from_ndarray(x[None, :].astype(np.float32), format="fltp", layout=layout)
    frame.sample_rate = rate
    for packet in stream.encode(frame):
      container.mux(packet)
    for packet in stream.encode(None):
      container.mux(packet)


@pytest.mark.parametrize("suffix,codec", [("mp3", "libmp3lame"), ("m4a", "aac")])
def test_mp3_and_m4a(tmp_path, suffix, codec):
  path = tmp_path / f"a.{suffix}"
  _encode_pyav(path, codec, 44100, _tone(700, 44100, 2.0))
  x = load_audio(path)
  # encoders add a little priming delay/padding; the content must be the same tone
  assert abs(x.size / 16000 - 2.0) < 0.1
  assert abs(_dominant_freq(x) - 700) < 2


def test_silence_is_valid(tmp_path):
  path = tmp_path / "silence.wav"
  sf.write(path, np.zeros(16000, np.int16), 16000, subtype="PCM_16")
  x = load_audio(path)
  assert x.size == 16000 and np.all(x == 0)
  assert SILENCE_RMS > 0


def test_loudness_peak_limit(tmp_path):
  # a click train: raising its RMS to -20 dBFS would clip, so the peak limit wins
  x = np.zeros(16000, np.float32)
  x[::4000] = 0.5
  path = tmp_path / "clicks.wav"
  sf.write(path, x, 16000, subtype="FLOAT")
  y = load_audio(path)
  assert np.abs(y).max() == pytest.approx(0.99, abs=1e-6)


def test_errors_name_the_file(tmp_path):
  empty = tmp_path / "empty.wav"
  empty.write_bytes(b"")
  corrupt = tmp_path / "corrupt.mp3"
  corrupt.write_bytes(b"\x00not audio at all\xff" * 50)
  short = tmp_path / "short.wav"
  sf.write(short, np.zeros(100, np.float32), 16000)  # 6 ms < one 25 fps frame
  header_only = tmp_path / "header_only.wav"
  sf.write(header_only, np.zeros(0, np.float32), 16000)
  for path, what in [(empty, "empty"), (corrupt, "cannot decode"), (short, "shorter than one"),
                     (header_only, "no samples"), (tmp_path / "missing.wav", "not found")]:
    with pytest.raises(TalkjaxError) as info:
      load_audio(path)
    assert str(path) in str(info.value) and what in str(info.value)

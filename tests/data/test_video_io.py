"""mp4 writing and reading with PyAV: shapes, sync of sound and picture, clear errors."""

import numpy as np
import pytest

from talkjax.data.video_io import read_mp4, write_mp4
from talkjax.errors import TalkjaxError


def test_roundtrip_keeps_frames_and_audio_in_sync(tmp_path):
  fps, sr = 25, 16000
  frames = np.zeros((50, 48, 64, 3), np.uint8)
  frames[25:] = 220  # the picture turns bright at 1.0 s ...
  t = np.arange(2 * sr) / sr
  audio = (0.4 * np.sin(2 * np.pi * 440 * t) * (t >= 1.0)).astype(np.float32)  # ... the tone too
  path = tmp_path / "clip.mp4"
  write_mp4(path, frames, fps, audio)
  got, got_fps, got_audio = read_mp4(path)
  assert got.shape == (50, 48, 64, 3) and got_fps == 25
  bright = int(np.argmax(got.mean((1, 2, 3)) > 110))
  onset = int(np.argmax(np.abs(got_audio) > 0.1))
  assert bright == 25
  assert abs(onset / sr - bright / fps) < 0.01  # within a quarter of a frame
  assert abs(len(got_audio) - len(audio)) <= 1


def test_video_without_audio_reads_none(tmp_path):
  path = tmp_path / "silent.mp4"
  write_mp4(path, np.full((5, 32, 32, 3), 90, np.uint8), 10)
  frames, fps, audio = read_mp4(path)
  assert frames.shape == (5, 32, 32, 3) and fps == 10 and audio is None


def test_unreadable_files_raise_talkjax_error(tmp_path):
  bad = tmp_path / "bad.mp4"
  bad.write_bytes(b"this is not a video")
  with pytest.raises(TalkjaxError, match="bad.mp4"):
    read_mp4(bad)
  with pytest.raises(TalkjaxError, match="not found"):
    read_mp4(tmp_path / "missing.mp4")
  with pytest.raises(TalkjaxError, match="uint8"):
    write_mp4(tmp_path / "x.mp4", np.zeros((2, 8, 8, 3), np.float32), 25)


def test_read_frames_shows_the_frames_a_25_fps_video_would_and_stops_early(tmp_path):
  from talkjax.data.video_io import read_frames
  frames = np.zeros((20, 32, 32, 3), np.uint8)
  frames[:] = (np.arange(20) * 12)[:, None, None, None]
  level = lambda x: np.round(x.mean((1, 2, 3)) / 12).astype(int)
  write_mp4(tmp_path / "ten.mp4", frames, 10)     # each frame on screen for 2.5 frames at 25
  got, rate = read_frames(tmp_path / "ten.mp4", fps=25, count=9)
  assert rate == 10 and level(got).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3]
  got, _ = read_frames(tmp_path / "ten.mp4", fps=25, count=1000)   # the whole video: 2 s
  assert len(got) == 50 and level(got)[-1] == 19
  write_mp4(tmp_path / "same.mp4", frames, 25)
  got, rate = read_frames(tmp_path / "same.mp4", fps=25, count=1000)
  assert rate == 25 and level(got).tolist() == list(range(20))


def _rotated_copy(src, dst):
  """`src` with a 90-degree rotation in its track header's display matrix, as phones write
  portrait video: the ISO BMFF tkhd matrix {0, -1, 0; 1, 0, 0; 0, 0, 1} (16.16 fixed point),
  byte for byte what FFmpeg 5.1 writes for `-metadata:s:v rotate=90`. Its own autorotate
  shows that file turned counterclockwise (measured with the ffmpeg binary once)."""
  import struct
  data = bytearray(src.read_bytes())
  box = data.find(b"tkhd") - 4
  assert data[box + 8] == 0                    # version 0: the matrix is at byte 48
  data[box + 48:box + 84] = struct.pack(">9I", 0, 0xFFFF0000, 0, 0x10000, 0, 0, 0, 0,
                                        0x40000000)
  dst.write_bytes(bytes(data))


def test_a_sideways_phone_video_is_read_upright(tmp_path):
  from talkjax.data.video_io import read_frames
  frames = np.zeros((4, 32, 64, 3), np.uint8)
  frames[:, :, :16] = 255                        # a white band along the left edge
  write_mp4(tmp_path / "stored.mp4", frames, 25)
  _rotated_copy(tmp_path / "stored.mp4", tmp_path / "phone.mp4")
  want = np.rot90(frames, 1, axes=(1, 2))        # counterclockwise: the band at the bottom
  for got in (read_mp4(tmp_path / "phone.mp4")[0],
              read_frames(tmp_path / "phone.mp4", fps=25, count=4)[0]):
    assert got.shape == (4, 64, 32, 3)
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 3
  assert read_mp4(tmp_path / "stored.mp4")[0].shape == (4, 32, 64, 3)   # no matrix: as stored


def test_the_real_data_builders_read_a_sideways_phone_video_upright(tmp_path):
  """Building HDTF, MEAD, DyConv or your own clips decodes with datasets/real/media.py: its
  probe reports the size as shown and its frames come turned, as read_mp4's do."""
  from talkjax_datasets.real import media
  frames = np.zeros((5, 48, 80, 3), np.uint8)
  frames[:, :, :20] = 255
  write_mp4(tmp_path / "stored.mp4", frames, 25)
  _rotated_copy(tmp_path / "stored.mp4", tmp_path / "phone.mp4")
  info = media.probe(str(tmp_path / "phone.mp4"))
  assert (info.width, info.height) == (48, 80)
  assert media.probe(str(tmp_path / "stored.mp4")).width == 80   # no matrix: as stored
  got = np.stack([f for _, f in media.frames(str(tmp_path / "phone.mp4"), 25)])
  assert got.shape == (5, 80, 48, 3)
  want = np.rot90(frames, 1, axes=(1, 2))
  assert np.abs(got.astype(int) - want.astype(int)).mean() < 3

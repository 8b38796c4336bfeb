"""HDTF layout and build on a tiny raw tree of real media: the official annotation files,
clips cut from whole videos by their times or already cut, the annotated square crops
(scaled when the video is smaller than annotated), audio aligned with the cut."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from talkjax.data.recorded import RecordedClips
from talkjax.errors import TalkjaxError
from talkjax_datasets.hdtf.builder import build
from talkjax_datasets.hdtf.layout import scan, seconds
from talkjax_datasets.real.options import BuildOptions

# importlib import mode puts no test folder on sys.path; raw_media.py sits beside this file.
sys.path.insert(0, str(Path(__file__).parent))
import raw_media  # noqa: E402

OPTIONS = BuildOptions(resolution=64, segment_frames=16)
SIZE = (160, 120)
FACE = 64
DRIFT = 10.0   # px/s: the face moves steadily, so a cut in the wrong place shows

TIMES = """\
Radio11.mp4 00:00-00:01 00:01-00:03 00:03-00:04
Radio12.mp4 00:00-00:02 0:00:02-0:00:03
Radio13.mp4 00:00-00:02
Radio14.mp4 00:xx-01:00
"""
# Radio11's crops are at its own size (resolution 0: unknown, used as is); Radio12's at
# twice its size (annotated at 240 px high, downloaded at 120). Radio11_2 has no crop.
CROPS = """\
Radio11_0.mp4 40 80 20 80
Radio11_1.mp4 50 80 24 72
Radio12_0.mp4 60 160 30 160
Radio12_1.mp4 80 160 40 160
Radio13_0.mp4 0 100 0 100
"""
RESOLUTIONS = "Radio11.mp4 0\nRadio12.mp4 240\nRadio13.mp4 720\n"
# key -> (square in the video's pixels, source fps, first second of the source shown)
EXPECTED = {
    "Radio11_0": ((40, 20, 80), 25, 0.0),
    "Radio11_1": ((50, 20, 80), 25, 1.0),
    "Radio12_0": ((30, 15, 80), 30, 0.0),   # the cut file, which starts at its own 0
    "Radio12_1": ((40, 20, 80), 25, 2.0),
}
LENGTHS = {"Radio11_0": 25, "Radio11_1": 50, "Radio12_0": 50, "Radio12_1": 25}


def _gapped_speech(seconds_, rate=48000):
  """Speech with a silent second from 1 s to 2 s."""
  audio = raw_media.speech(seconds_, rate, seed=1)
  audio[rate:2 * rate] = 0
  return audio


def write_raw(raw: Path):
  notes = raw / "HDTF_dataset"
  notes.mkdir(parents=True)
  (notes / "RD_annotion_time.txt").write_text(TIMES)
  (notes / "RD_crop_wh.txt").write_text(CROPS)
  (notes / "RD_resolution.txt").write_text(RESOLUTIONS)
  (notes / "RD_video_url.txt").write_text("Radio11.mp4 https://www.youtube.com/watch?v=x\n")
  videos = raw / "downloads" / "RD"
  videos.mkdir(parents=True)
  raw_media.write_video(videos / "Radio11.mp4", seconds=3.0, fps=25, size=SIZE, face_size=FACE,
                        audio=_gapped_speech(3.0), audio_rate=48000, drift=DRIFT)
  raw_media.write_video(videos / "Radio12.mp4", seconds=3.0, fps=25, size=SIZE, face_size=FACE,
                        audio=raw_media.speech(3.0, 48000, seed=2), audio_rate=48000,
                        drift=DRIFT)
  raw_media.write_video(raw / "Radio12_0.mp4", seconds=2.0, fps=30, size=SIZE, face_size=FACE,
                        audio=raw_media.speech(2.0, 48000, seed=3), audio_rate=48000,
                        drift=DRIFT)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  root = tmp_path_factory.mktemp("hdtf") / "raw"
  write_raw(root)
  return root


@pytest.fixture(scope="module")
def split_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("hdtf_split") / "split.txt"
  path.write_text("Radio11 train\nRadio12.mp4 val\nRadio13 test\nRadio14 test\n")
  return path


@pytest.fixture(scope="module")
def built(raw, split_file, tmp_path_factory):
  out = tmp_path_factory.mktemp("hdtf_out") / "out"
  build(raw, out, OPTIONS, split_file=split_file, workers=1)
  return out


def test_times_parse():
  assert seconds("01:30") == 90 and seconds("1:01:30") == 3690 and seconds("00:02.5") == 2.5
  for bad in ("1:30:", "xx:10", "90", "00:1a"):
    with pytest.raises(ValueError):
      seconds(bad)


def test_scan_cuts_crops_and_skips(raw, split_file):
  items, skips = scan(raw, split_file=split_file)
  by_key = {i.key: i for i in items}
  assert sorted(by_key) == sorted(EXPECTED)
  whole = str(raw / "downloads/RD/Radio11.mp4")
  assert (by_key["Radio11_1"].video.path, by_key["Radio11_1"].span) == (whole, (1.0, 3.0))
  # The cut clip is preferred over cutting the whole video.
  assert (by_key["Radio12_0"].video.path, by_key["Radio12_0"].span) == (
      str(raw / "Radio12_0.mp4"), None)
  assert by_key["Radio12_1"].span == (2.0, 3.0)
  assert by_key["Radio11_1"].crop == (50, 20, 80)   # 80 x 72 made square about its centre
  assert by_key["Radio11_0"].crop_height is None
  assert (by_key["Radio12_0"].crop, by_key["Radio12_0"].crop_height) == ((60, 30, 160), 240)
  assert by_key["Radio12_1"].labels == (("subset", "RD"), ("video", "Radio12"))
  assert {i.identity: i.split for i in items} == {"Radio11": "train", "Radio12": "val"}
  reasons = sorted((s.reason, s.source) for s in skips)
  assert reasons == sorted([("bad annotation", "Radio11_2"),
                            ("bad annotation", str(raw / "HDTF_dataset/RD_annotion_time.txt")),
                            ("missing video", "Radio13")])
  line = next(s for s in skips if s.source.endswith(".txt"))
  assert "line 4" in line.detail and "RD_annotion_time.txt" in line.detail


def test_scan_hash_split_covers_annotated_videos(raw):
  notes = {}
  items, _ = scan(raw, seed=0, val=0.3, test=0.3, notes=notes)
  splits = {i.identity: i.split for i in items}
  assert set(splits) == {"Radio11", "Radio12"} and notes == {}
  assert {i.identity: i.split for i in scan(raw, seed=0, val=0.3, test=0.3)[0]} == splits


def test_scan_without_annotations_names_the_files(tmp_path):
  raw_media.write_video(tmp_path / "Radio11.mp4", seconds=0.2, size=SIZE)
  with pytest.raises(TalkjaxError, match="annotion_time.txt.*crop_wh.txt.*resolution.txt"):
    scan(tmp_path)
  (tmp_path / "WDA_annotion_time.txt").write_text("Radio11.mp4 00:00-00:01\n")
  with pytest.raises(TalkjaxError, match="WDA_crop_wh.txt"):
    scan(tmp_path)


def _expected_crop(key, k):
  """Output frame k of a clip cut and cropped by hand from the frame the source shows then."""
  (left, top, side), fps, start = EXPECTED[key]
  t = np.floor((start + (k + 0.5) / 25) * fps + 1e-6) / fps
  frame = raw_media.frame_at(t, *SIZE, FACE, drift=DRIFT)
  box = (left, top, left + side, top + side)
  return np.asarray(Image.fromarray(frame).resize((64, 64), Image.Resampling.BILINEAR, box=box),
                    np.float32)


def test_build_cuts_and_crops_as_annotated(built):
  for split, keys in (("train", ["Radio11_0", "Radio11_1"]), ("val", ["Radio12_0", "Radio12_1"])):
    clips = RecordedClips(built, split)
    assert [c["key"] for c in clips.index] == keys
    for n, key in enumerate(keys):
      assert clips.num_frames(n) == LENGTHS[key]
      rec = clips.clip(n)
      assert rec["frames"].shape == (LENGTHS[key], 64, 64, 3)
      assert rec["audio"].shape == (LENGTHS[key] * 640,)
      np.testing.assert_array_equal(rec["emotion"], -1)
      for k in (0, LENGTHS[key] - 1):
        got = rec["frames"][k].astype(np.float32)
        right = np.abs(got - _expected_crop(key, k)).mean()
        # The same square a second earlier (or at the start of the video): the face is
        # elsewhere, so a cut or crop off by that much would be told apart.
        wrong = np.abs(got - _expected_crop(key, k + 25 if k < 25 else k - 25)).mean()
        assert right < 8 and wrong > 2 * right, (key, k, right, wrong)


def test_build_audio_follows_the_cut(built):
  clips = RecordedClips(built, "train")
  audio = clips.read(1, 0, 50)["audio"]   # Radio11 from 1 s to 3 s: silent, then speech
  rms = lambda x: float(np.sqrt(np.mean(x ** 2)))
  quiet, loud = rms(audio[1600:14400]), rms(audio[17600:30400])
  assert loud > 0.02 and quiet < 0.02 * loud, (quiet, loud)
  first = clips.read(0, 0, 25)["audio"]   # 0 s to 1 s: speech throughout
  assert rms(first[:8000]) > 0.3 * rms(first[8000:]) > 0


def test_build_report(built):
  report = json.loads((built / "build_report.json").read_text())
  assert report["written"] == {"train": 2, "val": 2, "test": 0}
  assert report["skipped"] == {"bad annotation": 2, "missing video": 1}
  assert report["inputs"] == 7
  assert report["frames"] == {"train": 75, "val": 75, "test": 0}
  sources = {c["key"]: c["source"] for c in json.loads(
      next(built.glob("hdtf/*/*/clips.json")).read_text())["splits"]["train"]}
  assert sources["Radio11_1"].endswith("Radio11.mp4 [1-3 s]")


def test_ifmdm_both_stages_train_from_the_hdtf_build(built, tmp_path):
  """IF-MDM (the hdtf_512 configs' family) trains from an HDTF build: stage 1 reads frame
  pairs, stage 2 caches every clip's motion codes (read in pieces) from that stage-1
  checkpoint and trains on them; models smaller than the tiny configs', 2 steps each, on
  the 64 px build."""
  import subprocess
  run = subprocess.run(
      [sys.executable, "-m", "talkjax.cli", "train", "--config", "ifmdm/synthtalk_tiny_stage1",
       "--workdir", str(tmp_path / "s1"), "--set", "data.kind=hdtf", f"data.path={built}",
       "data.batch_size=8", "train.steps=2", "train.log_every=1", "checkpoint.every=2",
       "model.channels=(8, 8, 16, 16)", "model.disc_channels=(8, 8, 8, 8)", "model.latent=24"],
      capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  logged = [json.loads(x) for x in (tmp_path / "s1" / "metrics.jsonl").read_text().splitlines()]
  assert [m["step"] for m in logged if "loss" in m][-1] == 2
  assert all(np.isfinite(m["loss"]) for m in logged if "loss" in m)
  run = subprocess.run(
      [sys.executable, "-m", "talkjax.cli", "train", "--config", "ifmdm/synthtalk_tiny_stage2",
       "--workdir", str(tmp_path / "s2"), "--set", "data.kind=hdtf", f"data.path={built}",
       f"stage1.workdir={tmp_path / 's1'}", "data.batch_size=8", "data.stride=1",
       "train.steps=2", "train.log_every=1", "checkpoint.every=2", "model.window=16",
       "model.hidden=32", "model.layers=1", "model.heads=2", "model.audio.n_mels=8"],
      capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  cache = list((tmp_path / "s1" / "motion_codes").glob("step2/hdtf_*/train_*.npz"))
  assert len(cache) == 1
  codes = np.load(cache[0])
  frames = sum(c["frames"] for c in RecordedClips(built, "train").index)
  assert codes["motion"].shape[0] == frames and codes["offsets"][-1] == frames

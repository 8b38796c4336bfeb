"""MEAD layout and build on a tiny raw tree of real media: extracted folders and archives,
the standard split, per-frame emotion labels, and every way an input is skipped."""

import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from talkjax.data.recorded import RecordedClips
from talkjax.errors import TalkjaxError
from talkjax_datasets.mead.builder import build
from talkjax_datasets.mead.layout import STANDARD_SPLIT, scan
from talkjax_datasets.real.items import Media
from talkjax_datasets.real.options import BuildOptions
from talkjax_datasets.synthtalk.spec import EMOTIONS

# importlib import mode puts no test folder on sys.path; raw_media.py sits beside this file.
sys.path.insert(0, str(Path(__file__).parent))
import raw_media  # noqa: E402

OPTIONS = BuildOptions(resolution=64, segment_frames=16)
# key -> (seconds, source fps) of the clips that build.
WRITTEN = {
    "M003/front/angry/level_1/001": (1.2, 25),
    "M003/front/happy/level_3/001": (1.6, 30),
    "M032/front/neutral/level_1/001": (1.2, 25),
    "M037/front/sad/level_2/001": (1.2, 25),
    "W099/front/fear/level_1/001": (1.4, 25),
}


def _video(path, seconds, fps, *, own_audio=False, seed=0):
  path.parent.mkdir(parents=True, exist_ok=True)
  audio = raw_media.speech(seconds, 48000, seed=seed) if own_audio else None
  raw_media.write_video(path, seconds=seconds, fps=fps, audio=audio, audio_rate=48000)


def _m4a(path, seconds, seed=0):
  path.parent.mkdir(parents=True, exist_ok=True)
  raw_media.write_m4a(path, raw_media.speech(seconds, 48000, seed=seed), rate=48000)


def _placeholder(path):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b"not decoded: skipped before decoding")


def _tar(path, folder):
  """An uncompressed archive of `folder`'s files, named below the folder's name (as MEAD's
  video.tar holds video/...)."""
  with tarfile.open(path, "w") as tar:
    for p in sorted(folder.rglob("*")):
      if p.is_file():
        tar.add(p, arcname=p.relative_to(folder.parent).as_posix())


def write_raw(raw: Path, scratch: Path):
  # M003 (train), extracted: the speech is the m4a (the videos have no sound of their own).
  s = raw / "M003"
  _video(s / "video/front/angry/level_1/001.mp4", 1.2, 25)
  _m4a(s / "audio/angry/level_1/001.m4a", 1.2, seed=1)
  _video(s / "video/front/happy/level_3/001.mp4", 1.6, 30)
  _m4a(s / "audio/happy/level_3/001.m4a", 1.6, seed=2)
  _placeholder(s / "video/left_30/angry/level_1/001.mp4")   # another view: not built
  _placeholder(s / "video/front/happpy/level_1/001.mp4")    # bad annotation
  _placeholder(s / "video/front/sad/level_x/001.mp4")       # bad annotation
  # M032 (val), as downloaded: video.tar + audio.tar; clip 002 has no m4a and no sound.
  parts = scratch / "M032"
  _video(parts / "video/front/neutral/level_1/001.mp4", 1.2, 25)
  _video(parts / "video/front/neutral/level_1/002.mp4", 1.2, 25)
  _m4a(parts / "audio/neutral/level_1/001.m4a", 1.2, seed=3)
  (raw / "M032").mkdir()
  _tar(raw / "M032/video.tar", parts / "video")
  _tar(raw / "M032/audio.tar", parts / "audio")
  # M037 (test), extracted; 002.mp4 stopped downloading half-way.
  s = raw / "M037"
  _video(s / "video/front/sad/level_2/001.mp4", 1.2, 25)
  _m4a(s / "audio/sad/level_2/001.m4a", 1.2, seed=4)
  _video(s / "video/front/sad/level_2/002.mp4", 1.2, 25)
  raw_media.truncate(s / "video/front/sad/level_2/002.mp4", 0.5)
  _m4a(s / "audio/sad/level_2/002.m4a", 1.2, seed=5)
  # W099 (outside the standard split): a corrupt audio.tar; the video's own sound is used.
  s = raw / "W099"
  _video(s / "video/front/fear/level_1/001.mp4", 1.4, 25, own_audio=True, seed=6)
  (s / "audio.tar").write_bytes(bytes(range(256)) * 8)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  root = tmp_path_factory.mktemp("mead")
  write_raw(root / "raw", root / "scratch")
  return root / "raw"


@pytest.fixture(scope="module")
def built(raw, tmp_path_factory):
  """Built with TFDS's in-memory shuffle limit at 0 bytes: every split spills to bucket
  files, as a real build's splits past 1 GB do (without TensorFlow: datasets/tfds_spill.py),
  so every test below reads what that path wrote."""
  from tensorflow_datasets.core import shuffle
  out = tmp_path_factory.mktemp("mead_out") / "out"
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 0)
    build(raw, out, OPTIONS, workers=1)
  return out


def test_standard_split_lists_the_protocol_speakers():
  assert sum(s == "train" for s in STANDARD_SPLIT.values()) == 32
  assert [s for s, v in STANDARD_SPLIT.items() if v == "val"] == [
      "M032", "M033", "M034", "M035", "W033", "W035", "W036"]
  assert [s for s, v in STANDARD_SPLIT.items() if v == "test"] == [
      "M037", "M039", "M040", "M041", "M042", "W037", "W038", "W040"]


def test_scan_reads_folders_and_archives(raw):
  notes = {}
  items, skips = scan(raw, notes=notes)
  by_key = {i.key: i for i in items}
  assert sorted(by_key) == sorted(list(WRITTEN) + ["M032/front/neutral/level_1/002",
                                                   "M037/front/sad/level_2/002"])
  tarred = by_key["M032/front/neutral/level_1/001"]
  assert tarred.video == Media(str(raw / "M032/video.tar"), "video/front/neutral/level_1/001.mp4")
  assert tarred.audio == Media(str(raw / "M032/audio.tar"), "audio/neutral/level_1/001.m4a")
  assert by_key["M032/front/neutral/level_1/002"].audio is None
  assert by_key["W099/front/fear/level_1/001"].audio is None
  happy = by_key["M003/front/happy/level_3/001"]
  assert (happy.identity, happy.split, happy.emotion, happy.intensity) == (
      "M003", "train", EMOTIONS.index("happy"), 2)
  assert happy.labels == (("view", "front"), ("emotion", "happy"), ("level", "3"))
  assert happy.audio == Media(str(raw / "M003/audio/happy/level_3/001.m4a"))
  assert {i.identity: i.split for i in items} == {
      "M003": "train", "M032": "val", "M037": "test", "W099": "train"}
  assert notes == {"speakers_outside_standard_split": ["W099"]}
  reasons = sorted((s.reason, Path(s.source).name) for s in skips)
  assert reasons == [("bad annotation", "001.mp4"), ("bad annotation", "001.mp4"),
                     ("unreadable archive", "audio.tar")]
  assert any("happpy" in s.detail for s in skips)
  assert any("level_x" in s.detail for s in skips)


def test_scan_views_and_split_file(raw, tmp_path):
  items, _ = scan(raw, views=("front", "left_30"))
  assert "M003/left_30/angry/level_1/001" in {i.key for i in items}
  split_file = tmp_path / "split.txt"
  split_file.write_text("# speaker split\nM003 test\nW099, val\n")
  notes = {}
  items, _ = scan(raw, split_file=split_file, notes=notes)
  assert {i.identity: i.split for i in items} == {"M003": "test", "W099": "val"}
  assert notes == {"speakers_not_in_split_file": ["M032", "M037"]}
  with pytest.raises(TalkjaxError, match="view"):
    scan(raw, views=("side",))
  with pytest.raises(TalkjaxError, match="does not exist"):
    scan(raw / "nowhere")


def test_build_writes_each_split_with_labels(built):
  expected = {"train": ["M003/front/angry/level_1/001", "M003/front/happy/level_3/001",
                        "W099/front/fear/level_1/001"],
              "val": ["M032/front/neutral/level_1/001"], "test": ["M037/front/sad/level_2/001"]}
  for split, keys in expected.items():
    clips = RecordedClips(built, split)
    assert [c["key"] for c in clips.index] == keys
    for n, entry in enumerate(clips.index):
      seconds, _ = WRITTEN[entry["key"]]
      speaker, view, emotion, level, _ = entry["key"].split("/")
      assert entry["speaker"] == speaker
      assert entry["labels"] == {"view": view, "emotion": emotion, "level": level[-1]}
      assert clips.identities[entry["identity"]] == speaker
      frames = clips.num_frames(n)
      assert frames == round(seconds * 25)
      rec = clips.read(n, 0, frames)   # spans two or three 16-frame records
      assert len(rec["frames"]) == frames
      assert rec["audio"].shape == (frames * 640,)
      assert np.sqrt(np.mean(rec["audio"][:frames * 600] ** 2)) > 0.01   # speech, not padding
      np.testing.assert_array_equal(rec["emotion"], EMOTIONS.index(emotion))
      np.testing.assert_array_equal(rec["intensity"], int(level[-1]) - 1)
      np.testing.assert_array_equal(rec["speaking"], -1)


def test_build_frames_are_face_crops(built):
  clips = RecordedClips(built, "val")
  frames = clips.clip(0)["frames"]
  assert frames.shape == (30, 64, 64, 3)
  # The crop is around the face (the astronaut photo), not the plain background around it.
  background = np.array((70, 90, 110))
  assert np.abs(frames[:, 24:40, 24:40].astype(float) - background).mean() > 30


def test_interrupted_build_resumes_with_the_same_arguments(raw, tmp_path):
  out = tmp_path / "out"
  build(raw, out, OPTIONS, views=("front",), workers=1, keep_staging=True)
  staged = sorted(p.name for p in (out / ".staging/items").iterdir())
  # The kept staging stands for a build cut short after its items: the same call resumes
  # (no item is decoded again), other views are refused.
  with pytest.raises(TalkjaxError, match="views"):
    build(raw, out, OPTIONS, views=("front", "top"), workers=1)
  path = build(raw, out, OPTIONS, views=("front",), workers=1)
  assert sorted(json.loads((path / "clips.json").read_text())["splits"]) == ["test", "train", "val"]
  assert len(staged) == 7 and not (out / ".staging").exists()


def test_build_report_counts_skips(built):
  report = json.loads((built / "build_report.json").read_text())
  assert report["written"] == {"train": 3, "val": 1, "test": 1}
  assert report["identities"] == {"train": 2, "val": 1, "test": 1}
  assert report["skipped"] == {"bad annotation": 2, "missing audio": 1,
                               "unreadable archive": 1, "unreadable video": 1}
  assert report["inputs"] == 10
  sources = {s["reason"]: s["source"] for s in report["skips"]}
  assert sources["missing audio"].endswith("video.tar:video/front/neutral/level_1/002.mp4")
  assert sources["unreadable video"].endswith("M037/video/front/sad/level_2/002.mp4")
  assert sources["unreadable archive"].endswith("W099/audio.tar")
  total = sum(round(s * 25) for s, _ in WRITTEN.values())
  assert sum(report["frames"].values()) == total
  assert not (built / ".staging").exists()


def test_the_mead_emotion_config_trains_from_the_build(built, tmp_path):
  """experiments/memo/mead_emotion.py reads a MEAD build (windows shortened to the tiny
  clips); the labels it learns are MEAD's, read from the folder names."""
  import subprocess
  from talkjax.models.audio_emotion.tasks import EmotionWindows
  from talkjax.audio.emotion import emotion_index
  clips = RecordedClips(built, "train")
  source = EmotionWindows(clips, window=16000, offsets=(0.0, 0.1, 0.2))
  first = source[0]
  clip, _ = source.items[0]
  assert int(first["emotion"]) == emotion_index(EMOTIONS[clips.index[clip]["emotion"]])
  run = subprocess.run(
      [sys.executable, "-m", "talkjax.cli", "train", "--config", "memo/mead_emotion",
       "--workdir", str(tmp_path / "emo"), "--set", f"data.path={built}",
       "model.emotion_audio.window_s=1.0", "data.offsets=(0.0,0.1,0.2)", "data.batch_size=8",
       "data.worker_count=0", "train.steps=2", "train.log_every=1", "checkpoint.every=2"],
      capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  logged = [json.loads(x) for x in (tmp_path / "emo" / "metrics.jsonl").read_text().splitlines()]
  assert [m["step"] for m in logged if "loss" in m][-1] == 2

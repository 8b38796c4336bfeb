"""Real-dataset builds read through Grain: windows across stored segments, exact audio,
resumable and deterministic builds, disjoint shards per process, weighted mixtures, configs
that name the wrong kind."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "datasets"))
import raw_media  # noqa: E402

from talkjax.data.recorded import RecordedClips  # noqa: E402
from talkjax.data.windows import ClipWindows  # noqa: E402
from talkjax.errors import TalkjaxError  # noqa: E402

CLI = [sys.executable, "-m", "talkjax.cli"]


def _tree(root, people=4, background=(70, 90, 110)):
  for p in range(people):
    folder = root / f"id{p:03d}"
    folder.mkdir(parents=True)
    raw_media.write_video(folder / "a.mp4", seconds=1.6, fps=30, audio=raw_media.speech(1.6, seed=p),
                          background=background)
  return root


def _build(raw, out, *extra):
  return subprocess.run(CLI + ["data", "build", "clips", "--raw", str(raw), "--out", str(out),
                               "--resolution", "64", "--segment-frames", "16", "--workers", "1",
                               *extra], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("real")
  raw = _tree(root / "raw")
  done = _build(raw, root / "out")
  assert done.returncode == 0, done.stderr[-2000:]
  return root


def test_windows_span_segments_with_exact_audio(built):
  clips = RecordedClips(built / "out", "train")
  whole = clips.clip(0)
  assert whole["frames"].shape == (40, 64, 64, 3) and whole["audio"].shape == (40 * 640,)
  source = ClipWindows(clips, window=12, stride=2)
  assert len(source) == len(clips) * ((40 - 12) // 2 + 1)
  item = source[6]                           # clip 0, frames 12..23: records 0 and 1
  np.testing.assert_allclose((item["frames"] + 1) * 127.5, whole["frames"][12:24], atol=0.01)
  np.testing.assert_array_equal(item["audio"], whole["audio"][12 * 640:24 * 640])
  np.testing.assert_allclose((item["reference"] + 1) * 127.5, whole["frames"][0], atol=0.01)
  assert item["emotion"].tolist() == [-1] * 12 and item["speaking"].tolist() == [-1] * 12
  with pytest.raises(TalkjaxError, match="frames 30..50"):
    clips.read(0, 30, 50)


def test_interrupted_build_resumes_to_the_same_records(built, tmp_path):
  raw = _tree(tmp_path / "raw6", people=6)
  out = tmp_path / "cut"
  cmd = CLI + ["data", "build", "clips", "--raw", str(raw), "--out", str(out), "--resolution",
               "64", "--segment-frames", "16", "--workers", "1"]
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
  staged = out / ".staging" / "items"
  deadline = time.time() + 120
  while time.time() < deadline and len(list(staged.glob("*.npz")) if staged.exists() else []) < 2:
    time.sleep(0.2)
  os.killpg(proc.pid, signal.SIGKILL)       # a preempted VM: no chance to clean up
  proc.wait()
  before = len(list(staged.glob("*.npz")))
  assert 2 <= before < 6 and not (out / "build_report.json").exists()
  again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  assert f"resuming: {before} of 6 items were done before" in again.stderr
  fresh = tmp_path / "fresh"
  assert _build(raw, fresh, "--workers", "2").returncode == 0
  # Deterministic, whatever happened: every record holds the same values (the files' bytes
  # are not compared: protobuf writes a record's feature map in a per-process hash order).
  for split in ("train", "val", "test"):
    a, b = RecordedClips(out, split), RecordedClips(fresh, split)
    assert a.index == b.index
    for number in range(sum(-(-c["frames"] // 16) for c in a.index)):
      x, y = a._record(number), b._record(number)
      assert x.keys() == y.keys()
      assert all(np.array_equal(np.asarray(x[k]), np.asarray(y[k])) for k in x)
  assert not (out / ".staging").exists()
  other = subprocess.run(cmd[:-2] + ["--workers", "1", "--fps", "20"], capture_output=True,
                         text=True, timeout=120)
  assert other.returncode == 2 and "a finished build is already here" in other.stderr


_READER = """
import json, sys
from talkjax.data.loader import make_loader
from talkjax.data.prepare import open_clips
from talkjax.data.windows import ClipWindows
source = ClipWindows(open_clips(sys.argv[1], "train"), window=8, stride=8)
loader = make_loader(source, global_batch_size=4, seed=3, num_epochs=1,
                     process_index=int(sys.argv[2]), process_count=2)
seen = [[int(a) for a in (b["audio"][:, 3000] * 1e6).round()] for b in loader]
print(json.dumps(seen))
"""


def test_two_processes_read_disjoint_shards(built):
  source = ClipWindows(RecordedClips(built / "out", "train"), window=8, stride=8)
  everything = {int(round(source[i]["audio"][3000] * 1e6)) for i in range(len(source))}
  assert len(everything) == len(source) == 10
  runs = [subprocess.Popen([sys.executable, "-c", _READER, str(built / "out"), str(i)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for i in (0, 1)]
  answers = [r.communicate(timeout=120) for r in runs]
  assert all(r.returncode == 0 for r in runs), [e[-2000:] for _, e in answers]
  shards = [json.loads(out) for out, _ in answers]
  mine = [{a for batch in shard for a in batch} for shard in shards]
  assert all(len(batch) == 2 for shard in shards for batch in shard)   # half of 4 each
  assert mine[0] and mine[1] and not mine[0] & mine[1]
  assert mine[0] | mine[1] <= everything and len(mine[0] | mine[1]) == 8   # 10 // 4 batches


def test_racing_reader_threads_open_the_build_once(built, monkeypatch):
  """Grain's 16 reader threads reach an unopened source together; opening imports
  tensorflow_datasets, whose lazy imports deadlocked when several threads ran them at once
  (a loader that never gave its first batch). One thread opens, the rest wait for it."""
  import threading
  import tensorflow_datasets as tfds
  opened = []
  real = tfds.builder_from_directory
  def counting(path):
    opened.append(path)
    time.sleep(0.05)   # a slow disk: every thread arrives while the first is still opening
    return real(path)
  monkeypatch.setattr(tfds, "builder_from_directory", counting)
  clips = RecordedClips(built / "out", "train")
  barrier = threading.Barrier(16)
  got = [None] * 16
  def read(i):
    barrier.wait()
    got[i] = clips.read(i % len(clips), 0, 4)["audio"]
  threads = [threading.Thread(target=read, args=(i,)) for i in range(16)]
  [t.start() for t in threads]
  [t.join(timeout=60) for t in threads]
  assert len(opened) == 1 and all(g is not None and len(g) == 2560 for g in got)


def test_mixture_draws_by_weight(built, tmp_path):
  import ml_collections
  from talkjax.data.prepare import windows
  raw = _tree(tmp_path / "red", people=3, background=(200, 30, 30))
  assert _build(raw, tmp_path / "red_out", "--val", "0", "--test", "0").returncode == 0
  d = ml_collections.ConfigDict(dict(kind="clips", path=str(built / "out"), mixture=(
      f"{built / 'out'}:1", f"{tmp_path / 'red_out'}:3")))
  mixed = windows(d, "train", window=8, stride=8)
  red = [mixed[i]["frames"][0, 1, 1, 0] > 0.3 for i in range(len(mixed))]
  assert len(mixed) == 10 + 15 and abs(np.mean(red) - 0.75) < 0.1
  d.mixture = (f"{built / 'out'}:1", "nowhere")
  with pytest.raises(TalkjaxError, match="PATH:WEIGHT"):
    windows(d, "train", window=8)


def test_a_config_naming_the_wrong_kind_is_told_what_the_folder_holds(built, tmp_path):
  """(Training from builds: tests/datasets/test_hdtf.py (IF-MDM, both stages) and
  test_mead.py (the MEAD emotion config).)"""
  wrong = subprocess.run(CLI + ["train", "--config", "memo/synthtalk_tiny_vae", "--workdir",
                                str(tmp_path / "w"), "--set", "data.kind=mead",
                                f"data.path={built / 'out'}", "data.batch_size=8"],
                         capture_output=True, text=True, timeout=300)
  assert wrong.returncode == 2 and "holds a clips build" in wrong.stderr
  assert "set data.kind=clips" in wrong.stderr
  missing = subprocess.run(CLI + ["train", "--config", "memo/synthtalk_tiny_vae", "--workdir",
                                  str(tmp_path / "m"), "--set", "data.kind=hdtf",
                                  f"data.path={tmp_path / 'nothing'}", "data.batch_size=8"],
                           capture_output=True, text=True, timeout=300)
  assert missing.returncode == 2 and "talkjax data build hdtf --raw" in missing.stderr


def test_preview_shows_a_real_build(built, tmp_path):
  from PIL import Image
  from talkjax_datasets.synthtalk.preview import write_preview
  sheet, video = write_preview(built / "out", tmp_path / "pv", clips=2)
  assert Image.open(sheet).size == (8 * 64, 2 * (64 + 14))
  from talkjax.data.video_io import read_mp4
  frames, fps, audio = read_mp4(video)
  assert len(frames) == 80 and fps == 25 and abs(len(audio) - 80 * 640) <= 640

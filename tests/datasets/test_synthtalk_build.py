"""SynthTalk generator and TFDS build: determinism, splits, ground truth, argument errors."""

import json

import numpy as np
import pytest

from talkjax.cli import main
from talkjax.errors import TalkjaxError
from talkjax_datasets.synthtalk.builder import build
from talkjax_datasets.synthtalk.clip import make_clip
from talkjax_datasets.synthtalk.spec import EMOTIONS, BuildSpec, split_of_identity

SPEC = BuildSpec(identities=10, clips=20, seconds=2, resolution=64, seed=3)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  return build(SPEC, tmp_path_factory.mktemp("st") / "out", workers=1)


def test_clip_is_deterministic_and_seed_changes_identity():
  a, b = make_clip(SPEC, 4), make_clip(SPEC, 4)
  for key in ("frames", "audio", "mouth_open", "head_pose", "identity_params"):
    np.testing.assert_array_equal(a[key], b[key])
  other = make_clip(BuildSpec(identities=10, clips=20, seconds=2, resolution=64, seed=4), 4)
  assert not np.allclose(other["identity_params"], a["identity_params"])


def test_clip_shapes_and_ground_truth_ranges():
  clip = make_clip(SPEC, 1)
  assert clip["frames"].shape == (50, 64, 64, 3) and clip["frames"].dtype == np.uint8
  assert clip["audio"].shape == (32000,) and np.isfinite(clip["audio"]).all()
  assert 0 <= clip["mouth_open"].min() and clip["mouth_open"].max() <= 1
  assert clip["head_pose"].shape == (50, 5)
  assert set(np.unique(clip["speaking"])) <= {0, 1}
  assert 0 <= clip["emotion"][0] < len(EMOTIONS)


def test_silence_closes_the_mouth_and_speech_opens_it():
  clips = [make_clip(SPEC, i) for i in range(6)]
  speaking = np.concatenate([c["speaking"] for c in clips]) == 1
  # Subtract each clip's emotion bias (its resting opening) before comparing.
  opening = np.concatenate([c["mouth_open"] - c["mouth_open"].min() for c in clips])
  assert opening[speaking].mean() > 0.25
  assert opening[~speaking].mean() < 0.1


def test_mouth_follows_audio_energy():
  from talkjax.eval.audio_mouth import implied_mouth_opening
  spec = BuildSpec(identities=10, clips=20, seconds=4, resolution=64)
  corrs = []
  for i in range(6):
    c = make_clip(spec, i)
    implied = implied_mouth_opening(c["audio"], 25, 100)
    # The implied trajectory is read LEAD_S ahead already (lips lead the sound): no shift here.
    corrs.append(np.corrcoef(implied, c["mouth_open"])[0, 1])
  assert np.mean(corrs) > 0.75


def test_dyadic_clip_has_partner_audio_and_turns():
  spec = BuildSpec(identities=10, clips=20, seconds=6, resolution=64, dyadic=True)
  clip = make_clip(spec, 2)
  assert clip["partner_audio"].shape == clip["audio"].shape
  assert 0 < clip["speaking"].mean() < 1  # it both speaks and listens


def test_build_writes_array_record_with_disjoint_identity_splits(built):
  import tensorflow_datasets as tfds
  files = {p.name for p in built.iterdir()}
  assert any(name.startswith("synthtalk-train.array_record") for name in files)
  sources = tfds.builder_from_directory(str(built)).as_data_source()
  ids = {s: {int(sources[s][i]["identity"]) for i in range(len(sources[s]))} for s in sources}
  assert sum(len(sources[s]) for s in sources) == SPEC.clips
  assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["val"])
  assert all(split_of_identity(i, 10) == "test" for i in ids["test"])
  meta = json.loads((built / "metadata.json").read_text())
  assert meta["fps"] == 25 and meta["resolution"] == 64


def test_a_split_too_big_to_shuffle_in_memory_builds_without_tensorflow(built, tmp_path,
                                                                        monkeypatch):
  """Past TFDS's in-memory limit (1 GB; here 0 bytes) a split spills to bucket files that
  TFDS writes with tf.io.gfile; without TensorFlow installed the build still completes, by
  the same records as an in-memory build."""
  import importlib.util

  import tensorflow_datasets as tfds
  from tensorflow_datasets.core import shuffle

  from talkjax_datasets import tfds_spill
  assert importlib.util.find_spec("tensorflow") is None      # what the stand-in is for
  monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 0)
  opened = []
  gfile = tfds_spill._GFILE.GFile
  monkeypatch.setattr(tfds_spill._GFILE, "GFile",
                      lambda path, mode="r": opened.append(mode) or gfile(path, mode))
  spilled = build(SPEC, tmp_path / "out", workers=1)
  assert "wb" in opened and "rb" in opened          # buckets written, then read back
  assert not list(spilled.rglob("bucket_*.tmp"))   # and removed
  a = tfds.builder_from_directory(str(built)).as_data_source()
  b = tfds.builder_from_directory(str(spilled)).as_data_source()
  for split in ("train", "val", "test"):
    assert len(a[split]) == len(b[split]) > 0
    for i in range(len(a[split])):
      assert a[split][i]["audio"].tobytes() == b[split][i]["audio"].tobytes()
      assert list(a[split][i]["frames"]) == list(b[split][i]["frames"])


def test_the_spill_raises_the_open_files_limit_as_tfds_does(tmp_path):
  """TFDS holds up to 1000 bucket files open per split; at the soft limit of open files the
  stand-in raises it and opens the file (a process of its own: the limit is process-wide)."""
  import subprocess
  import sys
  script = f"""
import os, resource
from tensorflow_datasets.core import shuffle   # loaded, as in a build (it calls the stand-in)
from talkjax_datasets import tfds_spill
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
assert hard > len(os.listdir("/proc/self/fd")) + 100, hard
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 4, hard))
low = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
files = [tfds_spill._GFILE.GFile("{tmp_path}/bucket_%d.tmp" % i, "wb") for i in range(40)]
assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > low
print("opened", len(files))
"""
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        timeout=120)
  assert done.returncode == 0 and "opened 40" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("kwargs, message", [
    ({"resolution": 7}, "--resolution"), ({"seconds": 0}, "--seconds"), ({"fps": -1}, "--fps"),
    ({"identities": 2}, "--identities"), ({"clips": 3}, "--clips")])
def test_invalid_build_arguments_raise_clear_errors(kwargs, message):
  with pytest.raises(TalkjaxError, match=message):
    BuildSpec(**{**dict(identities=10, clips=20), **kwargs}).validate()


def test_cli_rejects_bad_arguments_with_exit_2(tmp_path, capsys):
  assert main(["data", "build", "synthtalk", "--out", str(tmp_path / "x"), "--resolution", "7"]) == 2
  assert "--resolution" in capsys.readouterr().err
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "file").write_text("x")
  assert main(["data", "build", "synthtalk", "--out", str(tmp_path / "full")]) == 2
  assert "not empty" in capsys.readouterr().err


def test_cli_build_and_preview(tmp_path, capsys):
  out = tmp_path / "st"
  assert main(["data", "build", "synthtalk", "--out", str(out), "--identities", "3",
               "--clips", "3", "--seconds", "1", "--dyadic", "--workers", "1"]) == 0
  assert main(["data", "preview", "--data", str(out), "--out", str(tmp_path / "pv"),
               "--clips", "1"]) == 0
  from talkjax.data.video_io import read_mp4
  frames, fps, audio = read_mp4(tmp_path / "pv" / "preview.mp4")
  assert frames.shape == (25, 64, 64, 3) and fps == 25 and audio is not None
  assert (tmp_path / "pv" / "contact_sheet.png").stat().st_size > 1000

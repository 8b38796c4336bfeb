"""The SynthTalk Grain source: fixed shapes, exact audio alignment, pickling, bad input."""

import pickle

import numpy as np
import pytest

from talkjax.data.synthtalk import SynthTalkClips, SynthTalkWindows
from talkjax.errors import TalkjaxError
from talkjax_datasets.synthtalk.builder import build
from talkjax_datasets.synthtalk.spec import BuildSpec


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("st") / "out"
  build(BuildSpec(identities=5, clips=10, seconds=1.2, resolution=64, dyadic=True), out, workers=1)
  return out


def test_windows_have_fixed_shapes_and_exact_audio(data_dir):
  source = SynthTalkWindows(data_dir, "train", window=8, stride=2)
  assert len(source) == len(source.clips) * ((30 - 8) // 2 + 1)
  item = source[3]
  assert item["frames"].shape == (8, 64, 64, 3) and item["frames"].dtype == np.float32
  assert -1.0 <= item["frames"].min() and item["frames"].max() <= 1.0
  assert item["audio"].shape == (8 * 16000 // 25,)
  assert item["partner_audio"].shape == item["audio"].shape
  assert item["mouth_open"].shape == (8,) and item["head_pose"].shape == (8, 5)
  # Window 3 of clip 0 starts at frame 6 -> sample 6 * 640 of the clip's audio.
  clip = source.clips.clip(0)
  np.testing.assert_array_equal(item["audio"], clip["audio"][6 * 640:14 * 640])
  np.testing.assert_array_equal(item["mouth_open"], clip["mouth_open"][6:14])
  np.testing.assert_allclose((item["frames"] + 1) * 127.5, clip["frames"][6:14], atol=0.01)


def test_source_is_deterministic_and_picklable_for_grain_workers(data_dir):
  import grain
  source = SynthTalkWindows(data_dir, "train", window=4)
  again = pickle.loads(pickle.dumps(source))
  np.testing.assert_array_equal(source[5]["frames"], again[5]["frames"])
  batches = list(grain.MapDataset.source(source).shuffle(seed=1).batch(3)[:2])
  assert batches[0]["frames"].shape == (3, 4, 64, 64, 3)
  assert batches[0]["audio"].shape == (3, 4 * 640)


def test_window_rules_give_clear_errors(data_dir, tmp_path):
  with pytest.raises(TalkjaxError, match="window"):
    SynthTalkWindows(data_dir, "train", window=999)
  with pytest.raises(TalkjaxError, match="split"):
    SynthTalkClips(data_dir, "nope")
  with pytest.raises(TalkjaxError, match="no built SynthTalk"):
    SynthTalkWindows(tmp_path, "train")


def test_corrupt_frame_names_the_dataset(data_dir):
  from talkjax.data.synthtalk import decode_frame
  with pytest.raises(TalkjaxError, match="cannot be decoded") as err:
    decode_frame(b"not an image", data_dir)
  assert str(data_dir) in str(err.value)


def test_corrupt_record_file_gives_talkjax_error(data_dir, tmp_path):
  import shutil
  src = SynthTalkClips(data_dir, "train").path
  broken = tmp_path / "broken"
  shutil.copytree(src, broken)
  shard = next(broken.glob("synthtalk-train.array_record*"))
  shard.write_bytes(b"\x00" * 64)
  with pytest.raises(TalkjaxError, match="cannot be read"):
    SynthTalkWindows(broken, "train", window=4)[0]


def test_an_index_past_the_split_is_named_as_such(data_dir):
  clips = SynthTalkClips(data_dir, "train")
  with pytest.raises(TalkjaxError, match=f"which holds {len(clips)}"):
    clips.record(len(clips))

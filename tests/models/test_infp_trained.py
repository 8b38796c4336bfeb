"""Behaviour of the trained INFP that ships with talkjax (talkjax/assets/), on people and
conversations it never saw: the portrait speaks when its own track has voice and listens
when the partner's has, swapping the two tracks swaps the behaviour, and chunks join
without a seam."""

import numpy as np
import pytest

from talkjax.eval import audio_mouth
from talkjax.eval import probe as probe_lib
from talkjax.models import shipped_demo_model
from talkjax.pipelines.sampler import Sampler
from talkjax_datasets.synthtalk.clip import make_clip
from talkjax_datasets.synthtalk.spec import BuildSpec


@pytest.fixture(scope="module")
def gen():
  return Sampler.load(shipped_demo_model("infp"))


@pytest.fixture(scope="module")
def talks():
  spec = BuildSpec(identities=6, clips=6, seconds=8.0, resolution=64, seed=4242, dyadic=True)
  clips = [make_clip(spec, i) for i in range(3)]
  return (np.stack([c["frames"][0] for c in clips]), np.stack([c["audio"] for c in clips]),
          np.stack([c["partner_audio"] for c in clips]))


def _speaking_accuracy(frames, track):
  reading = probe_lib.read_frames(probe_lib.load_params(), frames)
  expected = audio_mouth.voice_activity(track, 25, len(frames))
  return float(((reading["speaking"] > 0.5) == expected).mean())


def test_swapping_the_two_tracks_swaps_speaking_and_listening(gen, talks):
  images, me, you = talks
  mine = gen.generate(images, me, partner_audio=you, seed=1)["frames"]
  theirs = gen.generate(images, you, partner_audio=me, seed=1)["frames"]
  # The same portrait follows its own track's turns, then, swapped, the partner's (the
  # shipped model measured 0.98 / 0.97 / 0.975 and 0.99 / 0.965 / 0.99 per clip; 0.33 /
  # 0.195 / 0.285 against the track it no longer speaks).
  follows = [_speaking_accuracy(mine[i], me[i]) for i in range(len(images))]
  swapped = [_speaking_accuracy(theirs[i], you[i]) for i in range(len(images))]
  unswapped = [_speaking_accuracy(theirs[i], me[i]) for i in range(len(images))]
  assert min(follows + swapped) >= 0.7 and np.mean(follows + swapped) >= 0.85
  assert max(unswapped) <= 0.65 and np.mean(unswapped) <= 0.5


def test_chunks_join_without_a_seam(gen, talks):
  images, me, you = talks
  motion = gen.generate(images, me, partner_audio=you, seed=3)["motion"]
  steps = np.linalg.norm(np.diff(motion, axis=1), axis=-1)        # (B, T-1) frame to frame
  w = gen.window
  at_seams = steps[:, w - 1::w]                                    # last of chunk k -> first of k+1
  inside = np.delete(steps, np.arange(w - 1, steps.shape[1], w), axis=1)
  assert at_seams.size >= 9
  # Measured on the shipped model: the median step across a chunk boundary is 0.91x the
  # median step inside a chunk (0.073 vs 0.080; ground truth's own median frame step on
  # these clips: 0.078), the largest boundary step 0.47 against the inside steps' 99.5th
  # percentile 0.81. Its chunks' first frames blend into the lookahead frames the chunk
  # before made (sample.crossfade); without the blend the same model measured 2.78x here
  # (1.9-3.8x over sampling seeds 0-5, 0.73-1.07x with it), so the mark (1.5x) fails a
  # sampler that lands the whole join on one frame.
  assert np.median(at_seams) < 1.5 * np.median(inside), (np.median(at_seams), np.median(inside))
  assert at_seams.max() < np.percentile(inside, 99.5) * 1.5


def test_the_shipped_file_is_a_stage1_a_new_stage2_can_train_on(gen, talks, tmp_path,
                                                                 monkeypatch):
  """stage1.workdir naming the shipped model file: its renderer (int8 as stored) is stage 1,
  and its motion encoder reads a face as the shipped sampler's renderer does."""
  import jax

  from talkjax import config as cfg
  from talkjax.models.infp.builders import build_imitation, load_stage1
  monkeypatch.setenv("HOME", str(tmp_path))
  config = cfg.load_config("infp/synthtalk_tiny_stage2",
                           [f"stage1.workdir={shipped_demo_model('infp')}"])
  stage = load_stage1(config)
  assert stage.config.family == "infp_stage1"
  assert stage.cache_dir.parent == tmp_path / ".cache" / "talkjax" / "stages"
  model = build_imitation(stage.config.model)
  face = talks[0][:1].astype(np.float32) / 127.5 - 1.0
  apply = jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.encode_motion))
  encode = lambda p: np.asarray(apply(p, face))
  code = encode(stage.params["trainable"]["generator"])
  assert code.shape == (1, 20) and np.isfinite(code).all() and np.abs(code).max() > 0
  np.testing.assert_array_equal(code, encode(jax.device_get(gen.params["renderer"])))


def test_a_model_without_a_style_encoder_refuses_a_style_clip(talks, tmp_path, capsys):
  """The shipped model has no style encoder (model.style.frames=0): a reference clip is a
  one-line error naming why, before any sampling."""
  import soundfile
  from PIL import Image
  from talkjax.cli import main
  from talkjax.data.video_io import write_mp4
  Image.fromarray(talks[0][0]).save(tmp_path / "face.png")
  soundfile.write(tmp_path / "me.wav", talks[1][0][:16000], 16000)
  write_mp4(tmp_path / "ref.mp4", np.repeat(talks[0][:1], 5, 0), 25)
  code = main(["sample", "--checkpoint", str(shipped_demo_model("infp")), "--image",
               str(tmp_path / "face.png"), "--audio", str(tmp_path / "me.wav"), "--style-video",
               str(tmp_path / "ref.mp4"), "--out", str(tmp_path / "talk.mp4")])
  assert code == 2
  err = capsys.readouterr().err
  assert "takes no style video" in err and "trained without a style encoder" in err, err
  assert not (tmp_path / "talk.mp4").exists()

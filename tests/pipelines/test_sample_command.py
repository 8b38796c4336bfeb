"""`talkjax sample` with hostile inputs and outputs: every case is a one-line error (exit 2),
a reported failed line that leaves the good ones alone, or a warned, documented handling."""

import json

import numpy as np
import pytest
import soundfile
from PIL import Image

from talkjax.cli import main
from talkjax.data.video_io import read_mp4

from corpus import png_claiming


@pytest.fixture(scope="module")
def talker(tmp_path_factory):
  """A trained test-bed talker (32 px): fast enough for ten minutes of audio."""
  root = tmp_path_factory.mktemp("talker")
  assert main(["train", "--config", "testbed/talker", "--workdir", str(root / "run"), "--set",
               "train.steps=1", "checkpoint.every=1", "checkpoint.async_save=False"]) == 0
  return str(root / "run")


@pytest.fixture()
def files(tmp_path):
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 255, (48, 48, 3), np.uint8)).save(tmp_path / "face.png")
  soundfile.write(tmp_path / "a.wav", (rng.standard_normal(16000) * 0.2).astype(np.float32), 16000)
  return tmp_path


def sample(talker, files, *args):
  return main(["sample", "--checkpoint", talker, "--image", str(files / "face.png"),
               "--audio", str(files / "a.wav"), "--crop", "center", *args])


@pytest.mark.parametrize("out, message", [
    ("/proc/talkjax-test.mp4", "/proc/talkjax-test.mp4: cannot write there"),
    ("{tmp}/face.png/x.mp4", "x.mp4: cannot write there"),
    ("{tmp}/folder.mp4", "folder.mp4: the output path is a folder"),
])
def test_unwritable_outputs_fail_before_any_work(files, capsys, out, message):
  (files / "folder.mp4").mkdir()
  # A checkpoint that does not exist: the output is checked first, so its error is the one seen.
  code = main(["sample", "--checkpoint", str(files / "no-model"), "--image", str(files / "face.png"),
               "--audio", str(files / "a.wav"), "--out", out.format(tmp=files)])
  err = capsys.readouterr().err
  assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--view-size", "100000"], "--view-size 100000 is out of range"),
    (["--view-size", "-5"], "--view-size -5 is out of range"),
    (["--batch-size", "0"], "--batch-size 0 is out of range"),
    (["--set", "noise_scale=abc"], "noise_scale='abc' is not a number"),
    (["--set", "noise_scale=1e9"], "noise_scale=1000000000.0 is out of range"),
    (["--seed", "-1"], "seed -1 must be a whole number in 0..4294967295"),
    (["--emotion", "furious"], "unknown emotion 'furious'"),
])
def test_bad_options_are_one_line_errors(talker, files, capsys, args, message):
  code = sample(talker, files, "--out", str(files / "o.mp4"), *args)
  err = capsys.readouterr().err
  assert code == 2 and message in err and len(err.strip().splitlines()) == 1
  assert not (files / "o.mp4").exists()


def test_a_manifest_keeps_its_good_lines(talker, files, capsys):
  (files / "bomb.png").write_bytes(png_claiming(30000, 30000))
  lines = [{"image": "face.png", "audio": "a.wav", "name": "one", "emotion": "happy"},
           {"image": "bomb.png", "audio": "a.wav", "name": "bomb"},
           {"image": "face.png", "audio": "a.wav", "name": "one", "seed": 2},      # same name
           {"image": "face.png", "audio": str(files), "name": "folder"},
           {"image": "face.png", "audio": "a.wav", "name": "two", "options": {"amplitude": 20}}]
  (files / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
  code = main(["sample", "--checkpoint", talker, "--manifest", str(files / "m.jsonl"),
               "--out", str(files / "out"), "--crop", "center", "--view-size", "64", "--gif"])
  captured = capsys.readouterr()
  assert code == 1 and "2 written, 3 failed" in captured.err
  assert "FAILED bomb: " in captured.err and "more pixels than the limit" in captured.err
  assert "writes " in captured.err and "which request 'one' writes too" in captured.err
  assert "FAILED folder: " in captured.err and "is a folder, not an audio file" in captured.err
  assert sorted(p.name for p in (files / "out").iterdir()) == ["one.gif", "one.mp4", "two.gif",
                                                               "two.mp4"]
  frames, _, _ = read_mp4(files / "out" / "one.mp4")
  assert frames.shape == (25, 64, 64, 3)


def test_the_video_carries_the_users_own_sound(talker, files):
  import av
  t = np.arange(int(44100 * 1.3)) / 44100
  stereo = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)], 1)
  soundfile.write(files / "s.wav", stereo.astype(np.float32), 44100)
  code = main(["sample", "--checkpoint", talker, "--image", str(files / "face.png"),
               "--audio", str(files / "s.wav"), "--crop", "center", "--out", str(files / "s.mp4")])
  assert code == 0
  with av.open(str(files / "s.mp4")) as container:
    stream = container.streams.audio[0]
    assert (stream.rate, stream.channels) == (44100, 2)
    decoded = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
  frames = int(np.ceil(1.3 * 25))
  assert abs(decoded.shape[1] / 44100 - frames / 25) < 0.05
  # Both channels as they were (AAC delays by its priming samples; compare by correlation).
  for channel, tone in enumerate((220, 330)):
    spectrum = np.abs(np.fft.rfft(decoded[channel, 4096:4096 + 32768]))
    assert abs(np.argmax(spectrum) * 44100 / 32768 - tone) < 3


def _mdx_onnx(path, scale):
  """An MDX-layout separator (a (1, 4, dim_f, dim_t) spectrogram in and out) that scales."""
  import torch

  class Scale(torch.nn.Module):
    def forward(self, x):
      return x * scale
  torch.onnx.export(Scale().eval(), torch.zeros(1, 4, 64, 16), str(path), opset_version=13,
                    input_names=["input"], output_names=["output"], dynamo=False)
  return path


def test_separate_vocals_feeds_the_model_the_stem_and_keeps_the_files_sound(talker, files,
                                                                           capsys):
  from talkjax.pipelines.pipeline import Pipeline
  out = files / "v.mp4"
  # a separator that finds no voice: the model hears silence (and says so), the video
  # still carries the file's sound
  assert sample(talker, files, "--out", str(out), "--separate-vocals",
                str(_mdx_onnx(files / "none.onnx", 0.0)), "--png") == 0
  assert "the audio is silent" in capsys.readouterr().err
  frames = np.stack([np.asarray(Image.open(f)) for f in sorted((files / "v").glob("*.png"))])
  silent = Pipeline.load(talker, crop="center")(str(files / "face.png"),
                                                np.zeros(16000, np.float32))
  assert np.array_equal(frames, silent.frames)
  plain = Pipeline.load(talker, crop="center")(str(files / "face.png"), str(files / "a.wav"))
  assert not np.array_equal(frames, plain.frames)
  # without a MODEL it takes the checkpoint's separator/, and says when there is none
  assert sample(talker, files, "--out", str(out), "--separate-vocals") == 2
  err = capsys.readouterr().err
  assert "separator/*.onnx, and there is none" in err and len(err.strip().splitlines()) == 1


def test_ten_minutes_of_silence_make_a_ten_minute_video(talker, files, capsys):
  soundfile.write(files / "quiet.wav", np.zeros(600 * 16000, np.int16), 16000, subtype="PCM_16")
  code = main(["sample", "--checkpoint", talker, "--image", str(files / "face.png"),
               "--audio", str(files / "quiet.wav"), "--crop", "center",
               "--out", str(files / "q.mp4")])
  captured = capsys.readouterr()
  assert code == 0 and "ok q: 15000 frames (600.00 s)" in captured.out
  assert "warning q: the audio is silent" in captured.err
  import av
  with av.open(str(files / "q.mp4")) as container:
    assert container.streams.video[0].frames == 15000


def test_a_request_that_cannot_fit_in_memory_is_refused_before_it_runs(talker, files):
  import psutil
  from talkjax import config as cfg
  from talkjax.errors import TalkjaxError
  from talkjax.models import random_generator
  from talkjax.pipelines.sampler import SEGMENT_FRAMES, Sampler
  sampler = Sampler(*random_generator(cfg.load_config("testbed/talker"), resolution=1024))
  per_example = SEGMENT_FRAMES * 1024 * 1024 * 3 * 2          # frames and their float copy
  batch = int(2 * psutil.virtual_memory().total // per_example) + 1
  images = np.zeros((batch, 1024, 1024, 3), np.uint8)
  audio = np.zeros((batch, 11 * 16000), np.float32)
  with pytest.raises(TalkjaxError, match=r"a batch of \d+ .* needs about .* GiB per device"):
    sampler.generate(images, audio)


def test_bench_names_the_resolutions_a_config_can_take(capsys):
  code = main(["bench", "sample", "--config", "ifmdm/hdtf_512_stage2", "--resolutions", "64"])
  err = capsys.readouterr().err
  assert code == 2
  assert "6 channels for 5 scales" in err and "use one of 128, 256, 512" in err
  # The light renderer in the paper renderer's place: another rule, named as clearly.
  code = main(["bench", "sample", "--config", "ifmdm/hdtf_512_stage2", "--resolutions", "64",
               "--set", "stage1.overrides=model.renderer=fast"])
  err = capsys.readouterr().err
  assert code == 2
  assert "a multiple of 128" in err and "use one of 128, 256, 384, 512" in err


def test_a_batch_too_big_fails_its_requests_and_the_others_are_written(files):
  import psutil
  from talkjax import config as cfg
  from talkjax.models import random_generator
  from talkjax.pipelines.pipeline import Failure, Pipeline, Request
  from talkjax.pipelines.sampler import SEGMENT_FRAMES, Sampler
  from talkjax.pipelines.writing import ResultWriter
  # 256 px: the small request really runs, and a segment holds SEGMENT_FRAMES frames of
  # float32 buffers (at 1024 px, 13 GB of host memory for a 1 s request); the big batch is
  # too big by its number of rows instead, each 3 s long (another bucket than the 1 s one).
  res = 256
  sampler = Sampler(*random_generator(cfg.load_config("testbed/talker"), resolution=res))
  long = files / "long.wav"
  soundfile.write(long, np.zeros(3 * 16000, np.float32), 16000)
  big = int(2 * psutil.virtual_memory().total // (SEGMENT_FRAMES * res * res * 3 * 2)) + 1
  requests = [Request(str(files / "face.png"), str(long), name=f"big{i}") for i in range(big)]
  requests.append(Request(str(files / "face.png"), str(files / "a.wav"), name="small"))
  sink = lambda r: ResultWriter(files / f"{r.name}.mp4", r.fps, audio=r.audio, track=r.track)
  out = list(Pipeline(sampler, crop="center", batch_size=big).run(requests, progress=False, sink=sink))
  failed = [r for r in out if isinstance(r, Failure)]
  assert len(failed) == big and all("GiB per device" in f.error for f in failed)
  assert [r.name for r in out if not isinstance(r, Failure)] == ["small"]
  assert sorted(p.name for p in files.glob("*.mp4")) == ["small.mp4"]   # no partial files

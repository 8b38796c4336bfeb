"""SynthTalk metrics judged against ground truth: ground truth (through the mp4 codec) meets
every mark, and each control fails the marks it should: a still portrait, ground truth 2
frames late, the mouth halved, the same motion on another person. The marks are written
here as literals; the module's verdicts must agree with them."""

import json

import numpy as np
import pytest

from talkjax.cli import main
from talkjax.errors import TalkjaxError
from talkjax.eval import controls, probe, versus_truth
from talkjax.eval.generated import (ClipList, check_held_out, evaluate_generator,
                                    stage_configs)
from talkjax_datasets.synthtalk.clip import make_clip
from talkjax_datasets.synthtalk.spec import BuildSpec

MONO = BuildSpec(identities=6, clips=6, seconds=12, resolution=64, seed=12345)
DYADIC = BuildSpec(identities=3, clips=3, seconds=10, resolution=64, seed=12345, dyadic=True)


def _through_mp4(frames, audio, path):
  from talkjax.data.video_io import read_mp4, write_mp4
  write_mp4(path, frames, 25, audio)
  return read_mp4(path)[0]


def _score_all(spec, tmp_path):
  params = probe.load_params()
  truth, codec, ctl = [], [], {name: [] for name in controls.CONTROLS}
  for i in range(spec.clips):
    clip = make_clip(spec, i)
    ref = probe.read_frames(params, clip["frames"][:1])["identity"][0]
    kw = dict(emotion=int(clip["emotion"][0]), partner_audio=clip.get("partner_audio"))
    score = lambda f: versus_truth.video_scores(probe.read_frames(params, f), clip["audio"],
                                                25, ref, **kw)
    truth.append(score(clip["frames"]))
    codec.append(score(_through_mp4(clip["frames"], clip["audio"], tmp_path / f"{i}.mp4")))
    for name in controls.CONTROLS:
      ctl[name].append(score(controls.control_video(name, clip["frames"], spec, i)))
  return truth, codec, {n: versus_truth.compare(s, truth) for n, s in ctl.items()}


@pytest.fixture(scope="module")
def mono(tmp_path_factory):
  return _score_all(MONO, tmp_path_factory.mktemp("mono"))


@pytest.fixture(scope="module")
def dyadic(tmp_path_factory):
  return _score_all(DYADIC, tmp_path_factory.mktemp("dyadic"))


def _values(report):
  return {k: r["value"] for k, r in report["metrics"].items()}


def test_ground_truth_itself_is_in_sync_and_read_well(mono):
  truth, _, _ = mono
  assert np.mean([t["lipsync_corr0"] for t in truth]) > 0.9
  assert all(t["best_offset"] == 0 for t in truth)
  assert np.mean([t["emotion_accuracy"] for t in truth]) > 0.95
  assert np.mean([t["blink_rate"] for t in truth]) > 0.1   # a blink every 2-5 s


def test_ground_truth_through_the_video_codec_meets_every_mark(mono):
  truth, codec, _ = mono
  report = versus_truth.compare(codec, truth)
  v = _values(report)
  assert v["lipsync_corr0"] >= 0.85
  assert v["best_offset"] <= 1
  assert 0.75 <= v["mouth_std"] <= 1.33 and 0.75 <= v["mouth_mean"] <= 1.33
  assert 0.5 <= v["head_std"] <= 2.0 and 0.5 <= v["blink_rate"] <= 2.0
  assert v["identity_sim"] <= 0.05
  assert v["emotion_accuracy"] >= 0.8
  assert report["passes"], v


def test_a_still_portrait_fails_every_motion_mark_but_keeps_the_identity(mono):
  report = mono[2]["still"]
  v = _values(report)
  assert v["lipsync_corr0"] < 0.85
  assert v["mouth_std"] < 0.75
  assert v["head_std"] < 0.5
  assert v["blink_rate"] < 0.5
  assert v["identity_sim"] <= 0.05     # nothing moved, so nothing drifted: identity passes
  assert not report["passes"]
  for key in ("lipsync_corr0", "mouth_std", "head_std", "blink_rate"):
    assert not report["metrics"][key]["pass"], key


def test_ground_truth_two_frames_late_fails_lip_sync_and_offset_only(mono):
  report = mono[2]["lagged"]
  v = _values(report)
  assert v["lipsync_corr0"] < 0.85
  assert v["best_offset"] >= 2
  assert 0.75 <= v["mouth_std"] <= 1.33 and v["identity_sim"] <= 0.05
  failed = {k for k, r in report["metrics"].items() if not r["pass"]}
  assert failed == {"lipsync_corr0", "best_offset"}


def test_half_mouth_amplitude_fails_amplitude_and_opening_only(mono):
  report = mono[2]["half_mouth"]
  v = _values(report)
  assert v["mouth_std"] < 0.75 and v["mouth_mean"] < 0.75
  assert v["lipsync_corr0"] >= 0.85     # correlation cannot see amplitude: the ratio can
  failed = {k for k, r in report["metrics"].items() if not r["pass"]}
  assert failed == {"mouth_std", "mouth_mean"}


def test_another_person_with_the_same_motion_fails_identity_only(mono):
  report = mono[2]["other_identity"]
  v = _values(report)
  assert v["identity_sim"] > 0.05
  failed = {k for k, r in report["metrics"].items() if not r["pass"]}
  assert failed == {"identity_sim"}


def test_dyadic_marks_pass_truth_and_fail_their_controls(dyadic):
  truth, codec, ctl = dyadic
  assert np.mean([t["speak_listen_accuracy"] for t in truth]) > 0.9
  assert np.mean([t["nod_contrast"] for t in truth]) > 1.2      # listeners nod
  dyadic_marks = {"speak_listen_accuracy", "speak_lipsync_corr0", "listen_mouth_closed",
                  "nod_contrast"}
  through_codec = versus_truth.compare(codec, truth)["metrics"]
  assert all(through_codec[k]["pass"] for k in dyadic_marks), through_codec
  failed = lambda name: {k for k, r in ctl[name]["metrics"].items() if not r["pass"]} & dyadic_marks
  still = _values(ctl["still"])
  assert still["speak_listen_accuracy"] < 0.8 and still["nod_contrast"] < 0.5
  assert failed("still") >= {"speak_listen_accuracy", "speak_lipsync_corr0", "nod_contrast"}
  assert failed("lagged") == {"speak_lipsync_corr0"}
  assert _values(ctl["half_mouth"])["listen_mouth_closed"] > 1.1
  assert "listen_mouth_closed" in failed("half_mouth")


def test_compare_matches_a_float64_reference_and_brackets_it():
  rng = np.random.default_rng(0)
  gen = [{"mouth_std": float(x), "identity_sim": float(y)}
         for x, y in zip(rng.uniform(0.1, 0.3, 12), rng.uniform(0.8, 0.9, 12))]
  tru = [{"mouth_std": float(x), "identity_sim": float(y)}
         for x, y in zip(rng.uniform(0.2, 0.3, 12), rng.uniform(0.9, 1.0, 12))]
  report = versus_truth.compare(gen, tru)
  ratio = np.mean([g["mouth_std"] for g in gen]) / np.mean([t["mouth_std"] for t in tru])
  gap = np.mean([t["identity_sim"] for t in tru]) - np.mean([g["identity_sim"] for g in gen])
  assert report["metrics"]["mouth_std"]["value"] == pytest.approx(ratio, rel=1e-12)
  assert report["metrics"]["identity_sim"]["value"] == pytest.approx(gap, rel=1e-12)
  lo, hi = report["metrics"]["mouth_std"]["interval"]
  assert lo < ratio < hi and hi - lo < 0.5
  with pytest.raises(ValueError):
    versus_truth.compare(gen, tru[:3])


def test_no_blink_anywhere_in_ground_truth_is_not_applicable():
  rows = [{"blink_rate": 0.0, "mouth_std": 0.2}] * 3
  report = versus_truth.compare(rows, rows)
  assert report["not_applicable"] == ["blink_rate"] and "blink_rate" not in report["metrics"]


def test_a_model_is_refused_data_of_the_seed_it_was_trained_on():
  from talkjax.eval.generated import generator_from_checkpoint
  from talkjax.models import shipped_demo_model
  _, sampler = generator_from_checkpoint(shipped_demo_model())
  with pytest.raises(TalkjaxError, match="seed 0"):
    check_held_out(stage_configs(sampler.hook), {"seed": 0}, "data/train")
  check_held_out(stage_configs(sampler.hook), {"seed": 12345}, "data/heldout")


def test_evaluate_generator_scores_a_generator_and_its_controls():
  spec = BuildSpec(identities=2, clips=2, seconds=3, resolution=64, seed=4242)
  source = ClipList([make_clip(spec, i) for i in range(2)], spec)
  # A "generator" that returns the clip's ground truth 2 frames late.
  truth = {id(c["audio"]): c["frames"] for c in source.clips}
  late = lambda image, audio: controls.lagged(truth[id(audio)])
  result = evaluate_generator(late, source, controls=True, progress=False)
  assert result["comparison"]["metrics"]["best_offset"]["value"] == 2.0
  assert not result["comparison"]["passes"]
  assert result["controls"]["lagged"]["metrics"]["best_offset"]["value"] == 2.0
  assert len(result["per_clip"]) == 2 and len(result["curves"]) == 2


def test_eval_model_command_writes_json_table_and_plots(tmp_path, capsys):
  from talkjax.models import shipped_demo_model
  from talkjax_datasets.synthtalk.builder import build
  data = build(BuildSpec(identities=3, clips=3, seconds=2.56, resolution=64, seed=777),
               tmp_path / "heldout", workers=1)
  report = tmp_path / "report"
  assert main(["eval", "model", "--checkpoint", str(shipped_demo_model()), "--data", str(data),
               "--split", "train", "--report", str(report), "--json",
               str(tmp_path / "m.json")]) == 0
  out = capsys.readouterr().out
  assert "| metric | ground truth | generated |" in out
  assert "| lip-sync (corr. at offset 0) |" in out
  metrics = json.loads((report / "metrics.json").read_text())
  assert metrics["clips"] == 1 and metrics["data_seed"] == 777
  assert set(metrics["comparison"]["metrics"]) >= {"lipsync_corr0", "mouth_std", "identity_sim"}
  curves = json.loads((report / "curves.json").read_text())
  clip = curves["clips"][0]
  frames = len(clip["truth"]["identity"])
  assert curves["fps"] == 25 and frames == 64        # 2.56 s at 25 fps, every frame
  assert all(len(clip[side][k]) == frames for side in ("generated", "truth")
             for k in ("identity", "mouth_open", "implied_mouth", "lipsync_rolling"))
  # the numbers are the scores': ground truth is itself at the first frame, and the
  # curve's mean is the clip's identity score
  assert clip["truth"]["identity"][0] > 0.99
  np.testing.assert_allclose(np.mean(clip["generated"]["identity"]),
                             metrics["per_clip"][0]["generated"]["identity_sim"], atol=1e-3)
  png = (report / "curves.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
  table = (report / "table.md").read_text()
  assert table.count("\n|") >= 8


def test_eval_model_refuses_the_training_seed_before_generating(tmp_path, capsys):
  from talkjax.models import shipped_demo_model
  from talkjax_datasets.synthtalk.builder import build
  data = build(BuildSpec(identities=3, clips=3, seconds=1, resolution=64, seed=0),
               tmp_path / "train_seed", workers=1)
  assert main(["eval", "model", "--checkpoint", str(shipped_demo_model()), "--data", str(data),
               "--split", "train"]) == 2
  err = capsys.readouterr().err
  assert "seed 0" in err and "--seed 12345" in err


def test_a_long_video_that_drifts_in_its_last_10_s_fails_the_tail_identity():
  params = probe.load_params()
  spec = BuildSpec(identities=3, clips=3, seconds=30, resolution=64, seed=4243)
  clip = make_clip(spec, 0)
  truth = clip["frames"]
  other = controls.control_video("other_identity", truth, spec, 0)
  drifted = np.concatenate([truth[:-250], other[-250:]])   # another face for the last 10 s
  ref = probe.read_frames(params, truth[:1])["identity"][0]
  score = lambda f: versus_truth.video_scores(probe.read_frames(params, f), clip["audio"], 25,
                                              ref)
  t, d = score(truth), score(drifted)
  assert len(truth) == 750 and "identity_sim_last10s" in t
  report = versus_truth.compare([d], [t])["metrics"]["identity_sim_last10s"]
  assert report["value"] > 0.02 and not report["pass"]
  assert versus_truth.compare([t], [t])["metrics"]["identity_sim_last10s"]["pass"]
  short = score(truth[:700])   # 28 s: not a long video, no tail identity
  assert "identity_sim_last10s" not in short


def test_a_generator_is_told_each_clips_emotion_when_asked():
  from talkjax_datasets.synthtalk.spec import EMOTIONS
  spec = BuildSpec(identities=3, clips=3, seconds=1, resolution=64, seed=4244)
  source = ClipList([make_clip(spec, i) for i in range(3)], spec)
  told = []

  def truth_of(image, audio, emotion=None):
    told.append(emotion)
    return next(c["frames"] for c in source.clips if c["audio"] is audio)
  result = evaluate_generator(truth_of, source, give_emotion=True, progress=False)
  assert told == [EMOTIONS[int(c["emotion"][0])] for c in source.clips]
  assert result["emotion"] == "given"
  told.clear()
  assert evaluate_generator(truth_of, source, progress=False)["emotion"] == "model's own"
  assert told == [None] * 3


def test_eval_model_refuses_give_emotion_for_a_model_without_one(tmp_path, capsys):
  from talkjax.models import shipped_demo_model
  from talkjax_datasets.synthtalk.builder import build
  data = build(BuildSpec(identities=3, clips=3, seconds=1, resolution=64, seed=778),
               tmp_path / "heldout", workers=1)
  assert main(["eval", "model", "--checkpoint", str(shipped_demo_model("ifmdm")), "--data",
               str(data), "--split", "train", "--give-emotion"]) == 2
  assert "takes no emotion" in capsys.readouterr().err


def test_eval_model_samples_at_the_settings_given(tmp_path, capsys):
  from talkjax.models import shipped_demo_model
  from talkjax_datasets.synthtalk.builder import build
  data = build(BuildSpec(identities=3, clips=3, seconds=2.56, resolution=64, seed=779),
               tmp_path / "heldout", workers=1)
  base = ["eval", "model", "--checkpoint", str(shipped_demo_model("ifmdm")), "--data",
          str(data), "--split", "train", "--clips", "1"]
  runs = {}
  for steps in (2, 25):
    out = tmp_path / f"steps{steps}.json"
    assert main(base + ["--set", f"steps={steps}", "--json", str(out)]) == 0
    runs[steps] = json.loads(out.read_text())
  assert [runs[s]["sampling"]["steps"] for s in (2, 25)] == [2, 25]
  scores = [runs[s]["per_clip"][0]["generated"]["mouth_std"] for s in (2, 25)]
  assert abs(scores[0] - scores[1]) > 1e-4   # the videos were sampled differently
  capsys.readouterr()
  assert main(base + ["--set", "stepz=5"]) == 2
  assert "unknown IF-MDM sampling option(s) ['stepz']" in capsys.readouterr().err

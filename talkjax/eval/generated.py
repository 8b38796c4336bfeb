"""Scoring a generator on held-out SynthTalk clips, against those clips' ground truth.

Each clip's first frame is the identity image and its audio drives the generator; the
probe then reads the generated video *and* the clip's ground-truth video, and
`versus_truth.compare` judges the first against the second (talkjax/eval/README.md).
`evaluate_generator(generate, source)` accepts any `generate(image uint8 (R, R, 3), audio
16 kHz) -> frames uint8 (T, R, R, 3)`, so every model family is judged by the same rule;
with `give_emotion=True` it is also told each clip's emotion (`emotion=` a SynthTalk
emotion name), and with `give_partner=True` each dyadic clip's partner track
(`partner_audio=`), for families that take them; with `give_truth=True` each clip's
ground-truth frames (`truth=`: a renderer stage redraws them, talkjax/eval/redrawn.py).
With `controls=True` the same marks also judge the control videos (a still portrait,
ground truth 2 frames late, the mouth halved, another person): the report then shows
what each mark rejects next to what the model scored.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from talkjax.errors import TalkjaxError
from talkjax.eval import controls as controls_lib
from talkjax.eval import versus_truth
from talkjax_datasets.synthtalk.spec import EMOTIONS

CURVE_CLIPS = 3   # clips whose per-frame curves the report keeps (for the plots)


def generator_from_checkpoint(checkpoint, seed: int = 0, options: dict | None = None):
  """(`generate(image, audio, emotion=None) -> frames`, the sampler) of a trained model
  (folder or file); `emotion` (a name) goes to families that take one; `options`: sampling
  settings (the family's knobs, checked here, before any sampling; default: the model's)."""
  from talkjax.pipelines.sampler import Sampler
  sampler = Sampler.load(checkpoint)
  knobs = sampler.knobs(**(options or {}))

  def generate(image, audio, emotion=None, partner_audio=None):
    inputs = None
    if emotion is not None:
      inputs = {k: np.asarray(v)[None]
                for k, v in sampler.hook.request_inputs(emotion=emotion).items()}
    partner = None if partner_audio is None else np.asarray(partner_audio)[None]
    return sampler.generate(image[None], audio[None], seed=seed, inputs=inputs,
                            partner_audio=partner, knobs=knobs)["frames"][0]
  return generate, sampler


def stage_configs(hook) -> list:
  """The configs of every stage of a generator (the model file or training folder records
  them): its own and its linked stages'."""
  return [hook.config, *getattr(hook, "linked", {}).values()]


def training_data_seeds(configs) -> set[int]:
  """The SynthTalk seeds the stages with these configs were trained on."""
  seeds = set()
  for config in configs:
    data = config.get("data", None) if config is not None else None
    if data is not None and data.get("kind") == "synthtalk" and "synthtalk" in data:
      seeds.add(int(data.synthtalk.seed))
  return seeds


def check_held_out(configs, meta: dict, data_path) -> None:
  """Refuses a SynthTalk set drawn with a seed any of the stages (`configs`) was trained on
  (same people)."""
  seed = int(meta.get("seed", -1))
  if seed in training_data_seeds(configs):
    raise TalkjaxError(
        f"this SynthTalk set was built with seed {seed}, the seed the model was trained on: "
        "its people and speech are training data", path=data_path,
        fix="build a held-out set with another seed: talkjax data build synthtalk --out "
            "data/heldout20 --identities 20 --clips 20 --seconds 20 --seed 12345")


class ClipList:
  """Clips held in memory (made by `make_clip`), readable like a built SynthTalkClips."""

  def __init__(self, clips: list[dict], spec):
    import dataclasses
    self.clips, self.fps, self.path = clips, int(spec.fps), "<in memory>"
    self.meta = dataclasses.asdict(spec)

  def __len__(self):
    return len(self.clips)

  def clip(self, index: int) -> dict:
    return self.clips[index]


def evaluate_generator(generate, source, count: int | None = None, *, controls: bool = False,
                       suite=None, progress: bool = True, give_emotion: bool = False,
                       give_partner: bool = False, give_truth: bool = False) -> dict:
  """Scores `generate` on the first `count` clips of `source` (SynthTalkClips or ClipList);
  `give_emotion`: call it with each clip's emotion too; `give_partner`: with each dyadic
  clip's partner track (`partner_audio=`), for families that take one; `give_truth`: with
  its ground-truth frames (`truth=`).

  Returns {comparison, controls (optional), suite (optional), per_clip, curves}."""
  from talkjax.eval import probe as probe_lib
  params = probe_lib.load_params()
  count = len(source) if count is None else min(count, len(source))
  if count < 1:
    raise TalkjaxError("no clips to score", path=source.path, fix="pass --clips 1 or more")
  fps = source.fps
  spec = controls_lib.spec_from_metadata(source.meta) if controls else None
  scored = {"generated": [], "truth": []}
  control_scores = {name: [] for name in controls_lib.CONTROLS} if controls else {}
  per_clip, curves = [], []
  for i in tqdm(range(count), desc="evaluating", unit="clip", disable=not progress):
    clip = source.clip(i)
    truth = clip["frames"]
    image = truth[0]
    told = {"emotion": EMOTIONS[int(clip["emotion"][0])]} if give_emotion else {}
    if give_partner and clip.get("partner_audio") is not None:
      told["partner_audio"] = clip["partner_audio"]
    if give_truth:
      told["truth"] = truth
    generated = np.asarray(generate(image, clip["audio"], **told))
    if generated.shape[1:] != truth.shape[1:]:
      raise TalkjaxError(f"the generator made {generated.shape[1:3]} frames for "
                         f"{truth.shape[1:3]} ground truth", path=source.path,
                         fix="evaluate on a SynthTalk set built at the model's resolution")
    n = min(len(generated), len(truth))   # a generator may round the length to its chunks
    generated, truth = generated[:n], truth[:n]
    ref = probe_lib.read_frames(params, image[None])["identity"][0]
    kwargs = dict(emotion=int(clip["emotion"][0]), partner_audio=clip.get("partner_audio"))

    def score(frames):
      return versus_truth.video_scores(probe_lib.read_frames(params, frames), clip["audio"],
                                       fps, ref, **kwargs)

    row = {"generated": score(generated), "truth": score(truth)}
    for key in scored:
      scored[key].append(row[key])
    for name in control_scores:
      video = controls_lib.control_video(name, truth, spec, int(clip["clip_index"]))
      control_scores[name].append(score(video[:n]))
    if suite is not None:
      suite.add(image, generated, truth, clip["audio"], fps,
                still=controls_lib.still(truth) if controls else None)
    per_clip.append({"clip": i, **{k: _plain(v) for k, v in row.items()}})
    if i < CURVE_CLIPS:
      curves.append({"clip": i, "generated": row["generated"]["curves"],
                     "truth": row["truth"]["curves"]})
  result = {"clips": count, "fps": fps, "emotion": "given" if give_emotion else "model's own",
            "comparison": versus_truth.compare(scored["generated"], scored["truth"]),
            "per_clip": per_clip, "curves": curves}
  if controls:
    result["controls"] = {name: versus_truth.compare(s, scored["truth"])
                          for name, s in control_scores.items()}
  if suite is not None:
    result["suite"] = suite.results()
    for clip, sync in zip(result["curves"], suite.sync_curves):
      clip["syncnet"] = sync   # per-window SyncNet confidence, for the plots
  return result


def _plain(scores: dict) -> dict:
  """A video's scores without the per-frame curves, JSON-ready."""
  return {k: (np.round(v, 5).tolist() if isinstance(v, np.ndarray) else v)
          for k, v in scores.items() if k != "curves"}

"""Make a talking-head video from the built-in SynthTalk model.

Renders a person and speech the model never trained on (SynthTalk drawn with another seed),
writes the mp4 (with sound), a side-by-side image (ground truth above, generated below) and
the SynthTalk metrics of the video next to ground truth's on the same clip (the table of
`talkjax eval model`), and prints where they are. The default model is the 64 px SynthTalk
IF-MDM shipped with talkjax (talkjax/assets/), trained by the documented commands that
`--train` runs again from scratch (about an hour on 2 idle CPU cores). MEMO (`--family
memo`, the emotion read from the speech) ships no model yet: its tiny model does not yet
meet the marks (experiments/memo/README.md); `--family memo --train` trains one (every
stage, about 2.5 hours on 2 CPU cores) and shows it. INFP (`--family infp`, a 64 px
model shipped, its marks in experiments/infp/README.md) is shown a two-person
conversation: the agent's and the partner's tracks drive the portrait, which speaks in its
turns and listens (nods, closed mouth) in the partner's; the mp4 plays both voices.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

EXAMPLES = """\
examples:
  talkjax demo                        # writes ./talkjax-demo/{demo.mp4,side_by_side.png,metrics.json}
  talkjax demo --out /tmp/demo --seed 3 --seconds 20
  talkjax demo --family memo --train  # train the tiny MEMO model, then show it
  talkjax demo --family infp          # a conversation: the portrait speaks and listens
  talkjax demo --train                # retrain the small SynthTalk model first
"""

HELD_OUT_SEED = 2026    # training uses seed 0, the probe seed 1: these people are new


def add_arguments(parser):
  parser.add_argument("--out", default="talkjax-demo", help="output folder (default: %(default)s)")
  parser.add_argument("--seed", type=int, default=0, help="which held-out identity/speech to use")
  parser.add_argument("--seconds", type=float, default=10.0, help="video length (default 10)")
  from talkjax.models import DEMOS
  parser.add_argument("--family", default=next(iter(DEMOS)), choices=sorted(DEMOS),
                      help="which shipped model to show (default: %(default)s)")
  parser.add_argument("--train", action="store_true",
                      help="retrain the family's demo model from scratch (every stage) before "
                           "sampling; rerunning resumes")
  parser.add_argument("--model", help="use this model file or stage-2 folder instead")


def shipped_model(family: str | None = None) -> pathlib.Path:
  from talkjax.errors import TalkjaxError
  from talkjax.models import shipped_demo_model
  path = shipped_demo_model(family)
  if not path.is_file():
    raise TalkjaxError("this install ships no trained model for this demo", path=path,
                       fix=f"train it: talkjax demo --family {family} --train")
  return path


def train_demo_model(out: pathlib.Path, family: str | None = None) -> pathlib.Path:
  """Every stage of the registry's demo recipe for `family` with its shipped config, then
  one model file. Rerunning resumes each stage from its folder."""
  from talkjax import bundle
  from talkjax import config as cfg
  from talkjax.models import demo_recipe, load_generator, make_task
  from talkjax.train.loop import train
  recipe, folders = demo_recipe(family), {}
  for name, config_name, links in recipe["stages"]:
    folders[name] = out / "train" / name
    overrides = [f"{key}={folders[stage]}" for key, stage in links.items()]
    config = cfg.load_config(config_name, overrides)
    print(f"training {name} ({config_name}) in {folders[name]} ...", file=sys.stderr)
    train(config, make_task(config), folders[name])
  model = out / "model.msgpack"
  bundle.save(model, *load_generator(folders[recipe["stages"][-1][0]]))
  return model


def side_by_side(truth, generated, path, columns: int = 8, size: int = 128):
  import numpy as np
  from PIL import Image
  from talkjax.pipelines.writing import upscale
  idx = np.linspace(0, len(generated) - 1, columns).round().astype(int)
  rows = [np.concatenate(list(upscale(frames[idx], size)), axis=1) for frames in (truth, generated)]
  Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def run(args):
  from talkjax.errors import TalkjaxError
  from talkjax.eval import report
  from talkjax.eval.generated import ClipList, evaluate_generator
  from talkjax.pipelines.pipeline import Pipeline
  from talkjax.pipelines.writing import write_result
  from talkjax_datasets.synthtalk.clip import make_clip
  from talkjax_datasets.synthtalk.spec import BuildSpec

  if args.seconds < 0.04:
    raise TalkjaxError(f"--seconds must be at least one frame (0.04), got {args.seconds}")
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  t0 = time.perf_counter()
  if args.train:
    model = train_demo_model(out, args.family)
  else:
    model = pathlib.Path(args.model) if args.model else shipped_model(args.family)
  pipe = Pipeline.load(model, batch_size=1, crop="center")   # a SynthTalk frame is framed already
  r = pipe.sampler.resolution
  # A dyadic family is shown a conversation: the agent's and the partner's tracks.
  dyadic = "partner_audio" in pipe.sampler.accepts
  spec = BuildSpec(identities=4, clips=4, seconds=args.seconds, resolution=r,
                   seed=HELD_OUT_SEED + args.seed, dyadic=dyadic)
  clip = make_clip(spec, 0)
  made = {}

  def generate(image, audio, partner_audio=None):
    made["result"] = pipe(image, audio, partner_audio=partner_audio, seed=args.seed)
    return made["result"].frames

  # The same judge as `talkjax eval model`: the probe reads the generated video and the
  # clip's ground truth, and every pass mark is a comparison with ground truth.
  evaluation = evaluate_generator(generate, ClipList([clip], spec), progress=False,
                                  give_partner=dyadic)
  result = made["result"]
  if dyadic:   # the video's sound is the conversation: both voices
    import dataclasses
    import numpy as np
    both = result.audio + clip["partner_audio"][:len(result.audio)]
    result = dataclasses.replace(result, audio=(both / max(1.0, np.abs(both).max())).astype(np.float32),
                                 track=None)
  files = write_result(result, out / "demo.mp4", view_size=256)
  side_by_side(clip["frames"], result.frames, out / "side_by_side.png")
  comparison = evaluation["comparison"]
  missed = [row["name"] for row in comparison["metrics"].values() if not row["pass"]]
  table = report.markdown(evaluation)
  (out / "table.md").write_text(table)
  report_json = {"model": str(model), "seconds": len(result.frames) / result.fps,
                 "held_out_seed": spec.seed, "meets_marks": comparison["passes"],
                 "missed": missed, **report.to_json(evaluation)}
  (out / "metrics.json").write_text(json.dumps(report_json, indent=2) + "\n")
  print(table)
  sound = "both voices of the conversation" if dyadic else "with sound"
  print(f"video:        {files[0]}  ({len(result.frames)} frames, {r} px shown at 256 px, {sound})")
  print(f"side by side: {out / 'side_by_side.png'}  (ground truth above, generated below)")
  verdict = "meets every mark" if not missed else "misses: " + "; ".join(missed)
  print(f"metrics:      {out / 'metrics.json'}, {out / 'table.md'}  -> {verdict}")
  print(f"done in {time.perf_counter() - t0:.0f} s")
  return 0

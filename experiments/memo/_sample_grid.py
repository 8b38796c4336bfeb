"""Looks at what a MEMO checkpoint draws: held-out clips sampled as `talkjax eval model`
samples them (the clip's first frame as the portrait, its speech, its emotion given), written
as a PNG of ground truth's row above the generated row, every `--every` frames, with the
probe's emotion reading of each video printed.

    python experiments/memo/_sample_grid.py runs/memo_c/j1400 data/heldout_memo4s grid.png \
        --clips 0,1,2 --set guidance=1.0 steps=5

(A script, not a config: the leading underscore keeps it out of `talkjax train --config`.)
"""

import argparse
import json

import numpy as np
from PIL import Image

from talkjax.data.prepare import open_clips
from talkjax.eval import probe as probe_lib
from talkjax.eval.generated import generator_from_checkpoint
from talkjax_experiments.memo._sampling_arms import apply_arm
from talkjax_datasets.synthtalk.spec import EMOTIONS


def emotions_read(params, frames) -> dict:
  labels = np.asarray(probe_lib.read_frames(params, frames)["emotion"])
  return {EMOTIONS[k]: int(n) for k, n in enumerate(np.bincount(labels, minlength=8)) if n}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("checkpoint", help="a MEMO training folder or model file")
  parser.add_argument("data", help="a built SynthTalk set the model was not trained on")
  parser.add_argument("out", help="the PNG to write")
  parser.add_argument("--clips", default="0", help="comma-separated clip indices")
  parser.add_argument("--split", default="train")
  parser.add_argument("--every", type=int, default=8, help="one column every N frames")
  parser.add_argument("--arm", default="carried",
                      help="a sampling change from _sampling_arms.py (e.g. decoder=FOLDER)")
  parser.add_argument("--set", nargs="*", default=[], metavar="KNOB=VALUE",
                      help="sampling settings, e.g. guidance=1.0 steps=5")
  args = parser.parse_args(argv)
  apply_arm(args.arm)
  options = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)} or None
  source = open_clips(args.data, args.split)
  generate, _ = generator_from_checkpoint(args.checkpoint, options=options)
  params = probe_lib.load_params()
  rows = []
  for i in (int(c) for c in args.clips.split(",")):
    clip = source.clip(i)
    truth, emotion = clip["frames"], EMOTIONS[int(clip["emotion"][0])]
    generated = np.asarray(generate(truth[0], clip["audio"], emotion=emotion))
    n = min(len(generated), len(truth))
    print(f"clip {i} ({emotion}): the probe reads ground truth as {emotions_read(params, truth[:n])}, "
          f"the generated video as {emotions_read(params, generated[:n])}")
    columns = range(0, n, args.every)
    rows += [np.concatenate([video[j] for j in columns], axis=1) for video in (truth, generated)]
  grid = np.concatenate(rows, axis=0)
  Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(args.out)
  print(f"wrote {args.out}: rows of ground truth then generated, every {args.every} frames")


if __name__ == "__main__":
  main()

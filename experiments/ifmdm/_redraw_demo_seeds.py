"""Per demo seed: the marks of ground truth's own motion redrawn by the shipped renderer.

Each ground-truth frame's motion code (the shipped model's stage-1 encoder) is rendered from
the clip's first frame and judged as `talkjax demo --seed S --seconds 10` judges the generated
video (same clip, same probe, same comparison with ground truth), so the per-seed spread of
a motion source that is right by construction sits beside the generated one.

    python experiments/ifmdm/_redraw_demo_seeds.py 0 1 2 3 4 5 6 7

(A script, not a config: the leading underscore keeps it out of `talkjax train --config`.)
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.commands.demo import HELD_OUT_SEED
from talkjax.eval.generated import ClipList, evaluate_generator
from talkjax.models import shipped_demo_model
from talkjax.nn.motion_renderer import render_frames, to_model_image
from talkjax.pipelines.sampler import Sampler
from talkjax_datasets.synthtalk.clip import make_clip
from talkjax_datasets.synthtalk.spec import BuildSpec

PIECE = 50   # frames encoded and rendered per call


def main(seeds):
  sampler = Sampler.load(shipped_demo_model("ifmdm"))
  model, params = sampler.hook.renderer, jax.device_get(sampler.params["renderer"])
  apply = lambda method: jax.jit(lambda p, x: model.apply({"params": p}, to_model_image(x),
                                                          method=method))
  encode, appearance = apply(model.encode_motion), apply(model.encode_appearance)
  render = jax.jit(lambda p, a, m: render_frames(model, p, a, m))
  print("seed  lip-sync  mouth amplitude  head motion   (redrawn / ground truth)")
  for seed in seeds:
    spec = BuildSpec(identities=4, clips=4, seconds=10.0, resolution=sampler.resolution,
                     seed=HELD_OUT_SEED + seed)
    clip = make_clip(spec, 0)

    def redraw(image, audio, partner_audio=None):
      frames = clip["frames"]
      codes = np.concatenate([np.asarray(encode(params, frames[i:i + PIECE]))
                              for i in range(0, len(frames), PIECE)])
      portrait = appearance(params, frames[:1])
      return np.concatenate([np.asarray(render(params, portrait,
                                               jnp.asarray(codes[None, i:i + PIECE]))[0])
                             for i in range(0, len(codes), PIECE)])

    metrics = evaluate_generator(redraw, ClipList([clip], spec), progress=False)
    value = lambda k: metrics["comparison"]["metrics"][k]["value"]
    print(f"{seed:4d}  {value('lipsync_corr0'):8.3f}  {value('mouth_std'):15.3f}  "
          f"{value('head_std'):11.3f}", flush=True)


if __name__ == "__main__":
  main([int(s) for s in sys.argv[1:]] or list(range(8)))

"""Sampling-side A/B for a MEMO checkpoint: `talkjax eval model` with one change to how clips
are chained, to tell where the identity loss of long videos comes from.

  python experiments/memo/_sampling_arms.py ARM -- eval model --checkpoint DIR --data SET ...

ARM:
- `carried`: the sampler as it is (the memory carries every earlier clip, decayed);
- `last_past`: the memory holds only the current clip's past frames, as every training
  example's does (training folds one window of P past frames into an empty state);
- `past_noise=S`: each clip's past latents get Gaussian noise of std S before the
  ReferenceNet and the memory read them (for models trained with model.clip.past_noise);
- `decoder=FOLDER`: frames decoded by that `vae` training folder's VAE (the encoder, which
  makes the past latents, stays the checkpoint's).

(A script, not a config: the leading underscore keeps it out of `talkjax train --config`.)
"""

import sys

import jax
import jax.numpy as jnp

from talkjax import cli
from talkjax.models.memo import generate


def chained(change):
  """MemoGeneration.chunk with `change(carry, keys) -> carry` applied before each clip."""
  chunk = generate.MemoGeneration.chunk

  def changed(self, params, context, carry, tracks, keys, *args, **kwargs):
    return chunk(self, params, context, change(carry, keys), tracks, keys, *args, **kwargs)
  return changed


def apply_arm(arm: str) -> None:
  """Patches the MEMO sampler for `arm` (the module docstring's list)."""
  if arm == "last_past":
    generate.MemoGeneration.chunk = chained(
        lambda carry, keys: dict(carry, memory=jax.tree.map(jnp.zeros_like, carry["memory"])))
  elif arm.startswith("past_noise="):
    std = float(arm.split("=", 1)[1])

    def noised(carry, keys):
      shape = carry["past"].shape[1:]
      noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 7), shape))(keys)
      return dict(carry, past=carry["past"] + std * noise)
    generate.MemoGeneration.chunk = chained(noised)
  elif arm.startswith("decoder="):
    from talkjax import stages
    from talkjax.nn.vae import AutoencoderKL
    vae = jax.tree.map(jnp.asarray,
                       stages.read_params(arm.split("=", 1)[1]).params["trainable"]["vae"])
    own = generate.MemoGeneration._vae

    def with_decoder(self, params, method, x):
      return own(self, dict(params, vae=vae) if method is AutoencoderKL.decode else params,
                 method, x)
    generate.MemoGeneration._vae = with_decoder
  elif arm != "carried":
    raise SystemExit(f"ARM: carried, last_past, past_noise=S or decoder=FOLDER, not {arm!r}")


def main():
  arm, rest = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
  apply_arm(arm)
  sys.argv = ["talkjax"] + rest
  return cli.main()


if __name__ == "__main__":
  sys.exit(main())

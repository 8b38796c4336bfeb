"""A VAE judged by what it lets a latent generator reach: `talkjax eval model` on a `vae`
training folder encodes and decodes every ground-truth frame and scores that video by the
generators' marks. (A renderer stage's redraw: tests/models/test_infp.py.)"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkjax.cli import main
from talkjax.eval.redrawn import ceiling, renderer_stage, vae_redrawer, vae_stage
from talkjax.models import make_task


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
  """The tiny MEMO's VAE config trained 3 steps by the real trainer on a small SynthTalk."""
  root = tmp_path_factory.mktemp("vae")
  code = main(["train", "--config", "memo/synthtalk_tiny_vae", "--workdir", str(root / "run"),
               "--set", f"data.path={root / 'synthtalk'}", "data.synthtalk.identities=3",
               "data.synthtalk.clips=3", "data.synthtalk.seconds=1.0", "data.batch_size=8",
               "train.steps=3", "train.log_every=1", "checkpoint.every=3"])
  assert code == 0
  return root / "run"


def test_a_vae_redraws_each_frame_through_its_latents(vae_dir, tmp_path, capsys):
  from talkjax_datasets.synthtalk.clip import make_clip
  from talkjax_datasets.synthtalk.spec import BuildSpec
  trained = vae_stage(vae_dir)
  assert trained is not None and renderer_stage(vae_dir) is None and vae_stage(tmp_path) is None
  assert ceiling(tmp_path) is None
  frames = make_clip(BuildSpec(identities=2, clips=2, seconds=1.4, resolution=64, seed=5), 0)[
      "frames"]                                                            # 35 frames
  got = vae_redrawer(trained, chunk=16)(frames[0], None, truth=frames)   # 16 + 16 + 3 padded
  vae = make_task(trained.config).vae
  decoded = jax.jit(lambda p, x: vae.apply({"params": p}, x)[0])(
      trained.params["trainable"]["vae"], frames.astype(np.float32) / 127.5 - 1.0)
  want = np.clip(np.round((np.asarray(decoded) + 1) * 127.5), 0, 255)
  assert got.shape == frames.shape and got.dtype == np.uint8
  assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
  with pytest.raises(ValueError, match="pass truth=frames"):
    vae_redrawer(trained)(frames[0], None)

  data = tmp_path / "heldout"
  assert main(["data", "build", "synthtalk", "--out", str(data), "--identities", "3",
               "--clips", "3", "--seconds", "2", "--seed", "7", "--resolution", "64"]) == 0
  capsys.readouterr()
  assert main(["eval", "model", "--checkpoint", str(vae_dir), "--data", str(data),
               "--split", "train", "--clips", "1", "--report", str(tmp_path / "report")]) == 0
  assert "encoded by the VAE (posterior mean) and decoded again" in capsys.readouterr().out
  # Three steps of training decode a smear: the identity and lip-sync marks reject it.
  report = json.loads((tmp_path / "report" / "metrics.json").read_text())
  marks = report["comparison"]["metrics"]
  assert marks["identity_sim"]["pass"] is False and marks["lipsync_corr0"]["pass"] is False
  assert main(["eval", "model", "--checkpoint", str(vae_dir), "--data", str(data),
               "--split", "train", "--give-emotion"]) == 2
  assert "a vae first stage takes no emotion" in capsys.readouterr().err


def test_the_decoder_fine_tune_leaves_the_latents_alone_and_decodes_noisy_ones(vae_dir,
                                                                                tmp_path):
  """`synthtalk_tiny_vae:decoder`: the encoder (what a latent model's latents are made of)
  is frozen bit for bit, the decoder trains on latents with noise of a diffusion model's
  size (models/vae/tasks.py)."""
  from talkjax import stages
  from talkjax.models.vae.tasks import latent_noise
  root = vae_dir.parent
  assert main(["train", "--config", "memo/synthtalk_tiny_vae:decoder", "--workdir",
               str(tmp_path / "decoder"), "--set", f"init_from.workdir={vae_dir}",
               f"data.path={root / 'synthtalk'}", "data.synthtalk.identities=3",
               "data.synthtalk.clips=3", "data.synthtalk.seconds=1.0", "data.batch_size=8",
               "train.steps=2", "train.log_every=1", "checkpoint.every=2"]) == 0
  before = stages.read_params(vae_dir).params["trainable"]["vae"]
  after = stages.read_params(tmp_path / "decoder").params["trainable"]["vae"]
  for part in ("encoder", "quant_conv"):
    for a, b in zip(jax.tree.leaves(before[part]), jax.tree.leaves(after[part])):
      np.testing.assert_array_equal(a, b)
  changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before["decoder"]),
                                                      jax.tree.leaves(after["decoder"]))]
  assert all(changed)

  # off (0, the plain VAE's config), the loss draws exactly the plain posterior sample
  from talkjax.nn.vae import AutoencoderKL
  trained = stages.read_params(vae_dir)
  task, rng = make_task(trained.config), jax.random.PRNGKey(3)
  assert float(trained.config.loss.latent_noise) == 0.0
  x = jax.random.uniform(jax.random.PRNGKey(4), (2, 64, 64, 3), minval=-1.0, maxval=1.0)
  params = {"params": trained.params["trainable"]["vae"]}
  mean, logvar = task.vae.apply(params, x, method=AutoencoderKL.encode)
  z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape)
  l1 = jnp.mean(jnp.abs(task.vae.apply(params, z, method=AutoencoderKL.decode) - x), axis=(1, 2, 3))
  _, metrics = task.loss(trained.params, {"image": x}, rng)
  np.testing.assert_allclose(float(metrics["l1"]), float(jnp.mean(l1)), rtol=1e-5)

  noise = np.asarray(latent_noise(jax.random.PRNGKey(0), (400, 8, 8, 4), 0.3, 0.5), np.float64)
  std = noise.reshape(400, -1).std(axis=1)   # per frame; raw units = scaled / 0.5
  assert std.max() <= 0.6 * 1.15 and std.min() < 0.06
  assert abs(std.mean() - 0.3) < 0.03       # uniform in [0, 0.6]

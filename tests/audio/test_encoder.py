"""The small trainable audio encoder: shapes, frame alignment, and that it trains."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from talkjax.audio.encoder import AudioEncoder, AudioEncoderConfig, encoder_from_config
from talkjax.audio.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model


def test_shapes_and_frame_count():
  config = AudioEncoderConfig.tiny()
  model = AudioEncoder(config)
  audio = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16000)) * 0.1, jnp.float32)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), audio)
  apply = jax.jit(model.apply, static_argnames="num_frames")
  out = apply(variables, audio)
  assert AudioEncoder.frame_rate(config) == 25.0
  assert out["last_hidden_state"].shape == (2, 26, 32)  # 101 mel frames / 4, rounded up
  assert len(out["hidden_states"]) == config.num_layers + 1
  per_frame = apply(variables, audio, num_frames=30)
  assert per_frame["last_hidden_state"].shape == (2, 30, 32)
  assert all(h.shape == (2, 30, 32) for h in per_frame["hidden_states"])
  # batch items are independent
  single = apply(variables, audio[1:])
  np.testing.assert_allclose(single["last_hidden_state"][0], out["last_hidden_state"][1],
                             atol=1e-5)


def test_learns_to_predict_pitch():
  """A regression of a tone's pitch from its features: the loss must fall by 10x."""
  config = AudioEncoderConfig.tiny()
  model = AudioEncoder(config)
  rng = np.random.default_rng(0)
  freqs = rng.uniform(200, 2000, size=16)
  t = np.arange(3200) / 16000
  audio = jnp.asarray(0.1 * np.sin(2 * np.pi * freqs[:, None] * t), jnp.float32)
  target = jnp.asarray((freqs - 1100) / 520, jnp.float32)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), audio[:1])["params"]
  head = jax.random.normal(jax.random.PRNGKey(1), (32,)) * 0.1
  opt = optax.adam(5e-3)
  state = opt.init((params, head))

  @jax.jit
  def step(p, state):
    def loss_fn(p):
      feats = model.apply({"params": p[0]}, audio)["last_hidden_state"].mean(1)
      return jnp.mean((feats @ p[1] - target) ** 2)
    loss, g = jax.value_and_grad(loss_fn)(p)
    updates, state = opt.update(g, state, p)
    return optax.apply_updates(p, updates), state, loss

  p = (params, head)
  losses = []
  for _ in range(80):
    p, state, loss = step(p, state)
    losses.append(float(loss))
  assert losses[-1] < 0.1 * losses[0]


def test_encoder_from_config():
  small, params = encoder_from_config("small", config=AudioEncoderConfig.tiny())
  assert isinstance(small, AudioEncoder) and params is None
  w2v, _ = encoder_from_config("wav2vec2", config=Wav2Vec2Config(
      hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
      conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=4,
      num_conv_pos_embedding_groups=2))
  assert isinstance(w2v, Wav2Vec2Model)
  variables = jax.jit(w2v.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1600)))
  out = jax.jit(w2v.apply, static_argnames="num_frames")(variables, jnp.zeros((1, 1600)),
                                                        num_frames=4)
  assert out["last_hidden_state"].shape == (1, 4, 16)

"""The test-bed family: a tiny regression transformer that exercises every sharded axis.

Not a talking-head model: it exists so the trainer, sharding and checkpointing can be
tested exactly and quickly. Its data is a deterministic synthetic source (a fixed random
"teacher" function of random inputs), so the loss must fall when training works. Inputs
are standardised by per-feature statistics of the training data: a frozen branch of the
parameters that the task derives from data once (`initial_values`) and that then travels
with every checkpoint.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from talkjax.nn.attention import SelfAttention
from talkjax.nn.layers import Dense


class Block(nn.Module):
  heads: int
  head_dim: int
  mlp: int
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x):
    embed = x.shape[-1]
    h = nn.LayerNorm(use_scale=False, use_bias=False, dtype=self.dtype)(x)
    x = x + SelfAttention(self.heads, self.head_dim, dtype=self.dtype, name="attn")(h)
    h = nn.LayerNorm(use_scale=False, use_bias=False, dtype=self.dtype)(x)
    h = Dense(self.mlp, axes=("embed", "mlp"), dtype=self.dtype, name="mlp_in")(h)
    h = nn.with_logical_constraint(nn.gelu(h), ("batch", "length", "mlp"))
    x = x + Dense(embed, axes=("mlp", "embed"), dtype=self.dtype, name="mlp_out")(h)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class TestbedModel(nn.Module):
  embed: int
  heads: int
  head_dim: int
  mlp: int
  layers: int
  out_features: int
  remat: bool = False
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x):
    h = Dense(self.embed, axes=("channels", "embed"), dtype=self.dtype, name="embed_in")(x)
    h = nn.with_logical_constraint(h, ("batch", "length", "embed"))
    block = nn.remat(Block) if self.remat else Block
    for i in range(self.layers):
      h = block(self.heads, self.head_dim, self.mlp, dtype=self.dtype, name=f"block_{i}")(h)
    return Dense(self.out_features, axes=("embed", "channels"), dtype=self.dtype, name="head")(h)


class SyntheticRegression:
  """Example i is x ~ N(0, 1) of shape (length, features) and y = teacher(x), from (seed, i)."""

  def __init__(self, num_examples: int, length: int, features: int, out_features: int, seed: int):
    self.num_examples, self.length, self.features, self.seed = num_examples, length, features, seed
    teacher = np.random.default_rng([seed, 2**31 - 1])
    self.w = teacher.standard_normal((features, out_features)).astype(np.float32) / np.sqrt(features)

  def __len__(self):
    return self.num_examples

  def __getitem__(self, index):
    rng = np.random.default_rng([self.seed, int(index)])
    x = rng.standard_normal((self.length, self.features)).astype(np.float32)
    # Depends on the previous position too, so attention is needed to fit it.
    y = np.tanh(x @ self.w) + 0.5 * np.roll(x @ self.w, 1, axis=0)
    return {"x": x, "y": y.astype(np.float32), "index": np.int64(index)}


class TestbedTask:
  def __init__(self, config):
    self.config = config
    m = config.model
    self.model = TestbedModel(embed=m.embed, heads=m.heads, head_dim=m.head_dim, mlp=m.mlp,
                              layers=m.layers, out_features=m.out_features,
                              remat=config.train.remat, dtype=jnp.dtype(config.compute_dtype))

  def example_batch(self, batch_size):
    m = self.config.model
    return {"x": np.zeros((batch_size, m.length, m.features), np.float32),
            "y": np.zeros((batch_size, m.length, m.out_features), np.float32),
            "index": np.zeros((batch_size,), np.int64)}

  def batch_axes(self):
    return {"x": ("batch", "length", None), "y": ("batch", "length", None), "index": ("batch",)}

  def init(self, rng, batch):
    features = batch["x"].shape[-1]
    stats = {"mean": jnp.zeros((features,), jnp.float32), "std": jnp.ones((features,), jnp.float32)}
    return {"trainable": self.model.init(rng, batch["x"])["params"],
            "frozen": {"input_stats": stats}}

  def initial_values(self):
    """Per-feature mean and std of the first training examples' inputs."""
    source = self.data_source("train")
    x = np.concatenate([source[i]["x"] for i in range(min(len(source), 64))])
    return {"frozen": {"input_stats": {"mean": x.mean(0), "std": x.std(0) + 1e-6}}}

  def loss(self, params, batch, rng):
    del rng  # deterministic model
    stats = params["frozen"]["input_stats"]
    x = (batch["x"] - stats["mean"]) / stats["std"]
    pred = self.model.apply({"params": params["trainable"]}, x).astype(jnp.float32)
    per_example = jnp.mean((pred - batch["y"]) ** 2, axis=(1, 2))
    return per_example, {"mse": jnp.mean(per_example)}

  def data_source(self, split):
    m, d = self.config.model, self.config.data
    seed = self.config.seed + (0 if split == "train" else 1_000_003)
    n = d.num_examples if split == "train" else d.eval_examples
    return SyntheticRegression(n, m.length, m.features, m.out_features, seed)

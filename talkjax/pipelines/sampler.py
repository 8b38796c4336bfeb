"""The generic sampling engine: a family's generation hook and its parameters on a mesh.

`Sampler` lays the parameters out on a (data, fsdp, tensor) mesh with the shardings that
`config.axis_rules` gives their logical axis names (the rules training uses, so an FSDP- or
tensor-sharded model samples sharded), pads each batch to the number of ways the batch is
split, and runs a whole video — `hook.start`, then `hook.chunk` under one `lax.scan` over
the chunks — as one jitted program per compiled setting (and, in jit's cache, per shape:
a bucket). Noise comes from per-request seeds (see talkjax/family.py), so a request gets
the same frames alone or in any batch. The mesh spans this process's devices: on several
hosts, each samples its own requests.
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from talkjax import parallel, trees
from talkjax.errors import TalkjaxError

SAMPLE_RATE = 16000


def parse_mesh(items: Sequence[str] | Mapping | None, base) -> ml_collections.ConfigDict:
  """`base` (a config's mesh) with overrides like ["fsdp=8", "data=1"]."""
  mesh = ml_collections.ConfigDict(dict(base))
  pairs = items.items() if isinstance(items, Mapping) else [
      tuple(i.split("=", 1)) if "=" in i else (i, None) for i in (items or ())]
  for name, value in pairs:
    if name not in parallel.MESH_AXES or value is None:
      raise TalkjaxError(f"--mesh expects AXIS=SIZE with AXIS in {parallel.MESH_AXES}, got "
                         f"{name}={value}", fix="e.g. --mesh data=1 fsdp=8")
    try:
      mesh[name] = int(value)
    except ValueError:
      raise TalkjaxError(f"--mesh {name}={value!r} is not a whole number",
                         fix="e.g. --mesh data=1 fsdp=-1 (-1: all remaining devices)") from None
  return mesh


class Sampler:
  def __init__(self, hook, params, *, mesh=None, devices=None):
    """`params`: numpy or jax arrays in the layout of `hook.init` (unboxed); `mesh`:
    overrides of the config's mesh sizes (a mapping or ["fsdp=8", ...])."""
    self.hook = hook
    self.rules = hook.config.axis_rules
    mesh_config = parse_mesh(mesh, hook.config.mesh)
    self.mesh = parallel.make_mesh(mesh_config, devices if devices is not None
                                   else jax.local_devices())
    abstract = jax.eval_shape(hook.init, jax.random.PRNGKey(0))
    # Plain nested dicts on both sides (no empty branches), whatever produced them.
    normal = lambda tree: trees.unflatten(trees.flatten(tree))
    self.param_shardings = normal(parallel.logical_to_sharding(
        parallel.logical_specs_of(abstract), self.mesh, self.rules))
    _check_layout(abstract, params)
    parallel.check_divisible(
        {k: v.shape for k, v in trees.flatten(nn.meta.unbox(abstract)).items()},
        trees.flatten(self.param_shardings))
    self.params = jax.device_put(normal(params), self.param_shardings)
    spec = parallel.logical_to_sharding(PartitionSpec("batch"), self.mesh, self.rules).spec
    axes = spec[0] if spec else None
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    self.batch_ways = int(np.prod([self.mesh.shape[a] for a in axes]))
    self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(axes or None))

  @classmethod
  def load(cls, checkpoint, **kwargs) -> "Sampler":
    from talkjax.models import load_generator
    hook, params = load_generator(checkpoint)
    return cls(hook, params, **kwargs)

  # what the pipelines need to know of the family
  fps = property(lambda self: int(self.hook.fps))
  window = property(lambda self: int(self.hook.window))
  resolution = property(lambda self: int(self.hook.resolution))
  accepts = property(lambda self: frozenset(self.hook.accepts))
  requires = property(lambda self: frozenset(getattr(self.hook, "requires", ())))
  chunk_samples = property(lambda self: self.window * SAMPLE_RATE // self.fps)

  def knobs(self, **overrides):
    return self.hook.knobs(**overrides)

  @property
  def tracks(self) -> tuple[str, ...]:
    return ("audio", "partner_audio") if "partner_audio" in self.accepts else ("audio",)

  # ---- whole videos ------------------------------------------------------------------------

  def generate(self, images, audio, *, partner_audio=None, inputs: Mapping | None = None,
               seed=0, knobs=None, chunks: int = 0) -> dict[str, np.ndarray]:
    """images (B, R, R, 3) uint8, audio (B, N) 16 kHz -> {"frames": (B, T, R, R, 3), ...},
    T = ceil(N / 640) frames at 25 fps. The audio is padded with silence to whole chunks (at
    least `chunks`); `partner_audio` (B, N') is padded or cut to N. `seed` is one int or one
    per example; `knobs` one setting or one per example (equal but for runtime fields);
    `inputs` holds the per-example arrays of `hook.request_inputs` (default: its defaults)."""
    knobs = knobs if knobs is not None else self.knobs()
    images, audio = np.asarray(images), np.asarray(audio, np.float32)
    b = len(audio)
    per_example = [knobs] * b if not isinstance(knobs, (list, tuple)) else list(knobs)
    compiled = {k.compiled_part() for k in per_example}
    if len(compiled) != 1 or len(per_example) != b:
      raise TalkjaxError("one batch needs one setting per example, equal but for the runtime "
                         f"options {list(type(per_example[0]).RUNTIME)}",
                         fix="sample requests with other settings in another batch")
    spf = SAMPLE_RATE // self.fps
    if audio.ndim != 2 or audio.shape[1] < spf:
      raise TalkjaxError(f"audio of shape {audio.shape} is shorter than one frame ({spf} "
                         f"samples at 16 kHz, {self.fps} fps)", fix="give at least 40 ms of audio")
    if len(images) != b:
      raise TalkjaxError(f"{len(images)} images but {b} audio tracks",
                         fix="give one image per audio track")
    r = self.resolution
    if images.shape[1:] != (r, r, 3):
      raise TalkjaxError(f"images of shape {images.shape[1:]}, the model takes ({r}, {r}, 3)",
                         fix="load them with talkjax.pipelines.inputs.load_image")
    frames = -(-audio.shape[1] // spf)
    chunks = max(chunks, -(-frames // self.window))
    length = chunks * self.chunk_samples
    ctx = int(self.hook.audio_context)
    fit = lambda x: np.pad(x, ((0, 0), (ctx, max(0, length - x.shape[1]))))[:, :ctx + length]
    tracks = {"audio": fit(audio)}
    if "partner_audio" in self.tracks:
      partner = np.zeros_like(audio) if partner_audio is None else np.asarray(partner_audio, np.float32)
      tracks["partner_audio"] = fit(partner)
    elif partner_audio is not None:
      raise TalkjaxError("this model takes no partner audio", fix="drop it")
    # The family's per-example inputs; those not given take the family's defaults.
    extras = {k: np.broadcast_to(np.asarray(v), (b,) + np.shape(v))
              for k, v in self.hook.request_inputs().items()}
    extras.update({k: np.asarray(v) for k, v in (inputs or {}).items()})
    batch = {"inputs": {"image": images, **extras},
             "tracks": tracks,
             "seeds": np.broadcast_to(np.asarray(seed, np.uint32), (b,)),
             "runtime": {name: np.asarray([k.runtime_values()[name] for k in per_example],
                                          np.float32)
                         for name in type(per_example[0]).RUNTIME}}
    pad = -b % self.batch_ways          # every device gets an equal share of the batch
    if pad:
      batch = jax.tree.map(lambda x: np.concatenate([x, np.repeat(x[-1:], pad, 0)]), batch)
    batch = jax.device_put(batch, self.batch_sharding)
    with parallel.use_mesh(self.mesh, self.rules):
      out = self._program(compiled.pop())(self.params, batch)
    return {k: np.asarray(v)[:b, :frames] for k, v in out.items()}

  @functools.lru_cache(maxsize=None)
  def _program(self, knobs):
    """One compiled program per compiled setting (and, inside jit's cache, per shape)."""
    hook, size = self.hook, self.chunk_samples
    ctx = int(hook.audio_context)

    def run(params, batch):
      context, carry = hook.start(params, batch["inputs"], knobs)
      seeds = jax.vmap(jax.random.PRNGKey)(batch["seeds"])
      chunks = (batch["tracks"]["audio"].shape[1] - ctx) // size

      def body(carry, index):
        keys = jax.vmap(lambda k: jax.random.fold_in(k, index))(seeds)
        tracks = {n: jax.lax.dynamic_slice_in_dim(t, index * size, ctx + size, axis=1)
                  for n, t in batch["tracks"].items()}
        return hook.chunk(params, context, carry, tracks, keys, knobs, batch["runtime"])

      _, outputs = jax.lax.scan(body, carry, jnp.arange(chunks))
      # (chunks, B, window, ...) -> (B, chunks * window, ...)
      join = lambda x: jnp.swapaxes(x, 0, 1).reshape((x.shape[1], -1) + x.shape[3:])
      return {k: join(v) for k, v in outputs.items()}

    return jax.jit(run, out_shardings=self.batch_sharding)

  # ---- streaming ---------------------------------------------------------------------------

  def stream(self, image, *, seed: int = 0, knobs=None, inputs: Mapping | None = None):
    """A live stream from one portrait; see talkjax/pipelines/streaming.py."""
    from talkjax.pipelines.streaming import Stream
    return Stream(self, image, seed=seed, knobs=knobs if knobs is not None else self.knobs(),
                  inputs=inputs)


def _check_layout(abstract, params) -> None:
  """The loaded parameters must have the hook's layout: a clear error naming what differs."""
  want = {k: tuple(v.shape) for k, v in trees.flatten(nn.meta.unbox(abstract)).items()}
  have = {k: tuple(np.shape(v)) for k, v in trees.flatten(params).items()}
  missing, unexpected = sorted(want.keys() - have.keys()), sorted(have.keys() - want.keys())
  wrong = sorted(k for k in want.keys() & have.keys() if want[k] != have[k])
  if missing or unexpected or wrong:
    detail = "; ".join(f"{what}: {names[:3]}{' ...' if len(names) > 3 else ''}"
                       for what, names in (("missing", missing), ("unexpected", unexpected),
                                           ("wrong shape", wrong)) if names)
    raise TalkjaxError(f"the parameters do not fit this model ({detail})",
                       fix="load them with the config they were trained with")

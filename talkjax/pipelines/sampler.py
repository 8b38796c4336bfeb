"""The generic sampling engine: a family's generation hook and its parameters on a mesh.

`Sampler` lays the parameters out on a (data, fsdp, tensor) mesh with the shardings that
`config.axis_rules` gives their logical axis names (the rules training uses, so an FSDP- or
tensor-sharded model samples sharded), pads each batch to the number of ways the batch is
split, and runs a whole video — `hook.start`, then `hook.chunk` in a loop over the chunks —
as jitted programs compiled once per setting and batch shape (a bucket), whatever the
audio's duration: a segment program always holds SEGMENT_FRAMES' worth of chunks and takes
the number of chunks to run as a runtime argument, so a short video runs only its chunks
and a long one reuses the same executable segment after segment. Noise comes from per-request seeds (see talkjax/family.py), so a request gets
the same frames alone or in any batch. The mesh spans this process's devices: on several
hosts, each samples its own requests.
"""

from __future__ import annotations

import functools
from typing import Iterator, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from talkjax import parallel, trees
from talkjax.parallel import parse_mesh  # noqa: F401  (sampler.parse_mesh, as before)
from talkjax.errors import TalkjaxError

SAMPLE_RATE = 16000
# Frames one compiled call makes at most; a longer video is made piece by piece, so device
# and host memory do not grow with its length.
SEGMENT_FRAMES = 256


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
    self._executables = {}
    self._stream_programs = None     # streaming.programs: made once, shared by every stream

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
  # Samples of audio after its own that each chunk sees (0 for a family that needs none).
  audio_lookahead = property(lambda self: int(getattr(self.hook, "audio_lookahead", 0)))

  def knobs(self, **overrides):
    return self.hook.knobs(**overrides)

  @property
  def tracks(self) -> tuple[str, ...]:
    return ("audio", "partner_audio") if "partner_audio" in self.accepts else ("audio",)

  # ---- whole videos ------------------------------------------------------------------------

  def segment_chunks(self) -> int:
    """Chunks one compiled call can make (SEGMENT_FRAMES' worth): the same for every
    duration, so one executable serves them all."""
    return max(1, SEGMENT_FRAMES // self.window)

  def generate(self, images, audio, **kwargs) -> dict[str, np.ndarray]:
    """images (B, R, R, 3) uint8, audio (B, N) 16 kHz -> {"frames": (B, T, R, R, 3), ...},
    T = ceil(N / 640) frames at 25 fps, held whole; see `segments` for the arguments."""
    parts = list(self.segments(images, audio, **kwargs))
    return {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}

  def segments(self, images, audio, *, partner_audio=None, inputs: Mapping | None = None,
               seed=0, knobs=None, chunks: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """The video in consecutive pieces {"frames": (B, t, R, R, 3), ...} as each is made, so
    memory stays bounded however long the audio is (pieces of SEGMENT_FRAMES frames, the
    carried state passed from one to the next; the frames equal one whole run's).

    The audio is padded with silence to whole chunks (at least `chunks`); `partner_audio`
    (B, N') is padded or cut to N. `seed` is one int or one per example; `knobs` one
    setting or one per example (equal but for runtime fields); `inputs` holds the
    per-example arrays of `hook.request_inputs` (default: its defaults)."""
    knobs = knobs if knobs is not None else self.knobs()
    images, audio = np.asarray(images), np.asarray(audio, np.float32)
    b = len(audio)
    per_example = [knobs] * b if not isinstance(knobs, (list, tuple)) else list(knobs)
    compiled = {k.compiled_part() for k in per_example}
    if len(compiled) != 1 or len(per_example) != b:
      raise TalkjaxError("one batch needs one setting per example, equal but for the runtime "
                         f"options {list(type(per_example[0]).RUNTIME)}",
                         fix="sample requests with other settings in another batch")
    knobs = compiled.pop()
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
    if "partner_audio" not in self.tracks and partner_audio is not None:
      raise TalkjaxError("this model takes no partner audio", fix="drop it")
    frames = -(-audio.shape[1] // spf)
    chunks = max(chunks, -(-frames // self.window))
    per_call = self.segment_chunks()
    # Audio for whole segments (silence after the end); only `chunks` chunks are run.
    length, size = -(-chunks // per_call) * per_call * self.chunk_samples, self.chunk_samples
    ctx, look = int(self.hook.audio_context), self.audio_lookahead
    fit = lambda x: np.pad(x, ((0, 0), (ctx, max(0, length + look - x.shape[1]))))[
        :, :ctx + length + look]
    tracks = {"audio": fit(audio)}
    if "partner_audio" in self.tracks:
      tracks["partner_audio"] = fit(np.zeros_like(audio) if partner_audio is None
                                    else np.asarray(partner_audio, np.float32))
    # The family's per-example inputs; those not given take the family's defaults.
    extras = {k: np.broadcast_to(np.asarray(v), (b,) + np.shape(v))
              for k, v in self.hook.request_inputs().items()}
    extras.update({k: np.asarray(v) for k, v in (inputs or {}).items()})
    batch = {"inputs": {"image": images, **extras},
             "seeds": np.broadcast_to(np.asarray(seed, np.uint32), (b,)),
             "runtime": {name: np.asarray([k.runtime_values()[name] for k in per_example],
                                          np.float32)
                         for name in type(knobs).RUNTIME}}
    pad = -b % self.batch_ways          # every device gets an equal share of the batch
    grow = (lambda x: np.concatenate([x, np.repeat(x[-1:], pad, 0)])) if pad else (lambda x: x)
    batch = jax.device_put(jax.tree.map(grow, batch), self.batch_sharding)
    tracks = {n: grow(t) for n, t in tracks.items()}
    start, segment = self._programs(knobs)   # start is jitted; segment is jitted below
    end = lambda first: ctx + (first + per_call) * size + look
    piece_of = lambda first: {n: jax.device_put(t[:, first * size:end(first)], self.batch_sharding)
                              for n, t in tracks.items()}
    with parallel.use_mesh(self.mesh, self.rules):
      start = self._compiled(("start", knobs), lambda: start, (self.params, batch["inputs"]),
                             b + pad, "encoding the portraits")
      # Both programs are compiled and their memory checked before any work runs (the
      # segment's from the start program's output shapes): a request too big for the device
      # fails before it has encoded a portrait.
      context, carry = start.out_info
      # The carry leaves each segment laid out as it came in, so one executable serves all.
      carry_layout = jax.tree.map(lambda x: x.sharding, carry)
      segment = self._compiled(
          ("segment", knobs),
          lambda: jax.jit(segment, out_shardings=(carry_layout, self.batch_sharding)),
          (self.params, context, carry, piece_of(0), batch["seeds"], batch["runtime"],
           np.int32(0), np.int32(per_call)), b + pad, f"{per_call * self.window} frames per call")
      context, carry = start(self.params, batch["inputs"])
      for first in range(0, chunks, per_call):
        carry, out = segment(self.params, context, carry, piece_of(first), batch["seeds"],
                             batch["runtime"], np.int32(first),
                             np.int32(min(per_call, chunks - first)))
        done = first * self.window
        keep = min(per_call * self.window, frames - done)
        if keep <= 0:
          break
        yield {k: np.asarray(v)[:b, :keep] for k, v in out.items()}

  def _compiled(self, name, make_jitted, args, rows: int, what: str):
    """The program `make_jitted()` compiled for these argument shapes (once; kept), after
    checking that it fits in memory."""
    leaves, tree = jax.tree.flatten(args)
    key = (name, tree, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves))
    if key not in self._executables:
      compiled = make_jitted().lower(*args).compile()
      check_memory(compiled, rows, what)
      self._executables[key] = compiled
    return self._executables[key]

  @functools.lru_cache(maxsize=None)
  def _programs(self, knobs):
    """The jitted start program and the segment function of one compiled setting; their
    executables are kept per shape (a bucket) by `_compiled`."""
    hook, size = self.hook, self.chunk_samples
    ctx, look = int(hook.audio_context), self.audio_lookahead

    def segment(params, context, carry, tracks, seeds, runtime, first, count):
      """Chunks first .. first + count - 1 (count <= the chunks `tracks` hold, a runtime
      value: one executable for a whole or a partial segment); the outputs of chunks not
      run stay zero."""
      keys = jax.vmap(jax.random.PRNGKey)(seeds)
      capacity = (tracks["audio"].shape[1] - ctx - look) // size

      def one(carry, index):   # `index` counts chunks from the start of the video
        chunk_keys = jax.vmap(lambda k: jax.random.fold_in(k, index))(keys)
        piece = {n: jax.lax.dynamic_slice_in_dim(t, (index - first) * size, ctx + size + look,
                                                 axis=1)
                 for n, t in tracks.items()}
        return hook.chunk(params, context, carry, piece, chunk_keys, knobs, runtime)

      shapes = jax.eval_shape(one, carry, first)[1]
      buffers = {k: jnp.zeros((capacity,) + v.shape, v.dtype) for k, v in shapes.items()}

      def body(i, state):
        carry, buffers = state
        carry, out = one(carry, first + i)
        return carry, {k: jax.lax.dynamic_update_index_in_dim(buffers[k], out[k], i, 0)
                       for k in buffers}

      carry, outputs = jax.lax.fori_loop(0, count, body, (carry, buffers))
      # (chunks, B, window, ...) -> (B, chunks * window, ...)
      join = lambda x: jnp.swapaxes(x, 0, 1).reshape((x.shape[1], -1) + x.shape[3:])
      return carry, {k: join(v) for k, v in outputs.items()}

    start = jax.jit(lambda params, inputs: hook.start(params, inputs, knobs))
    return start, segment

  # ---- streaming ---------------------------------------------------------------------------

  def stream(self, image, *, seed: int = 0, knobs=None, inputs: Mapping | None = None,
             style_video=None):
    """A live stream from one portrait (and a reference clip's motion style, for a family
    that takes one); see talkjax/pipelines/streaming.py."""
    from talkjax.pipelines.streaming import Stream
    return Stream(self, image, seed=seed, knobs=knobs if knobs is not None else self.knobs(),
                  inputs=inputs, style_video=style_video)


def free_bytes(device) -> int | None:
  """Memory one device can still allocate (an accelerator's own; on a CPU the host's,
  shared by its devices), or None when unknown."""
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
  try:
    import psutil
  except ImportError:
    return None
  share = sum(1 for d in jax.local_devices() if d.platform == device.platform)
  return int(psutil.virtual_memory().available // max(1, share))


def check_memory(compiled, rows: int, what: str) -> None:
  """Refuses, before running it, a compiled program that needs more memory per device than
  is free, saying how many rows per batch would fit (XLA's own size analysis)."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    return
  need = sum(int(getattr(analysis, f, 0) or 0) for f in (
      "temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
      "generated_code_size_in_bytes")) - int(getattr(analysis, "alias_size_in_bytes", 0) or 0)
  free = free_bytes(jax.local_devices()[0])
  if free is None or need <= free:
    return
  fits = max(0, int(rows * free / need))
  raise TalkjaxError(
      f"a batch of {rows} ({what}) needs about {need / 2**30:.2f} GiB per device and "
      f"{free / 2**30:.2f} GiB is free",
      fix=(f"use --batch-size {fits} or fewer" if fits else
           "use a smaller model or resolution, or more devices (--mesh with fsdp)"))


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

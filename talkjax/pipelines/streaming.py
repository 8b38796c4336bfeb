"""Live generation: audio arriving in pieces of any size -> frames, one chunk at a time.

```python
stream = Sampler.load("model.msgpack").stream(portrait, seed=0)
for piece in microphone:                 # any number of samples at 16 kHz
  show(stream.push(piece))               # the frames of every chunk these samples completed
show(stream.finish())                    # the rest, the last chunk padded with silence
```

A family with a style encoder takes a reference clip: `stream(portrait, style_video="ref.mp4")`
(a path or uint8 frames, cropped like the portrait). Dyadic families take the partner's
track too: `push(agent, partner_audio=partner)` (either
may be pushed alone; a chunk is made once both tracks hold it). Latency is at most one chunk
of audio, plus the family's lookahead (`audio_lookahead`: the audio after a chunk it waits
for). The stream runs the very function the offline sampler scans (the family's
`chunk`, with the same per-chunk keys and audio context), so its frames equal
`Sampler.generate`'s for the same seed, up to float reassociation inside XLA.
"""

from __future__ import annotations

from typing import Mapping

import jax
import numpy as np

from talkjax import parallel
from talkjax.errors import TalkjaxError
from talkjax.family import portrait_inputs


class Stream:
  def __init__(self, sampler, image, *, seed: int, knobs, inputs: Mapping | None = None,
               style_video=None):
    from talkjax.pipelines.inputs import load_image, style_request
    self.sampler, self.hook, self.knobs = sampler, sampler.hook, knobs.compiled_part()
    given, clip_notes = style_request(self.hook, style_video, sampler.resolution, "center",
                                      fps=sampler.fps)
    loaded = load_image(image, sampler.resolution, "center")
    image, self.warnings = loaded.image, list(loaded.warnings) + clip_notes   # + the family's
    self.empty = np.zeros((0,) + image.shape, np.uint8)
    self.size = sampler.chunk_samples
    self.need = self.size + sampler.audio_lookahead   # a chunk's samples and those after it
    self.context_samples = int(self.hook.audio_context)
    self.runtime = {k: np.asarray([v], np.float32) for k, v in knobs.runtime_values().items()}
    self.seed = jax.random.PRNGKey(np.uint32(seed))
    extras = {**self.hook.request_inputs(**given),
              **portrait_inputs(self.hook, image, self.warnings),
              **(inputs or {})}
    batch = {"image": image[None], **{k: np.asarray(v)[None] for k, v in extras.items()}}
    start, self._chunk = programs(sampler)
    with parallel.use_mesh(sampler.mesh, sampler.rules):
      self.context, self.carry = start(sampler.params, batch, self.knobs)
    self.pending = {name: np.zeros(0, np.float32) for name in sampler.tracks}
    self.history = {name: np.zeros(self.context_samples, np.float32) for name in sampler.tracks}
    self.received = 0
    self.index = 0

  def push(self, audio=None, *, partner_audio=None) -> np.ndarray:
    """Adds samples to either track; returns the frames of every chunk now complete."""
    for name, samples in (("audio", audio), ("partner_audio", partner_audio)):
      if samples is None:
        continue
      if name not in self.pending:
        raise TalkjaxError("this model takes no partner audio", fix="push the agent's audio only")
      samples = np.asarray(samples, np.float32).reshape(-1)
      if not np.all(np.isfinite(samples)):
        raise TalkjaxError(f"the pushed {name.replace('_', ' ')} contains NaN or infinite samples",
                           fix="clean the signal")
      self.pending[name] = np.concatenate([self.pending[name], samples])
      if name == "audio":
        self.received += len(samples)
    out = []
    while all(len(p) >= self.need for p in self.pending.values()):
      out.append(self._run({n: p[:self.need] for n, p in self.pending.items()}))
      self.pending = {n: p[self.size:] for n, p in self.pending.items()}
    return np.concatenate(out) if out else self.empty

  def _run(self, pieces: dict) -> np.ndarray:
    tracks = {n: np.concatenate([self.history[n], pieces[n]])[None] for n in pieces}
    with parallel.use_mesh(self.sampler.mesh, self.sampler.rules):
      self.carry, frames = self._chunk(self.sampler.params, self.context, self.carry, tracks,
                                       self.seed, np.int32(self.index), self.knobs, self.runtime)
    for n in pieces:   # the context of the next chunk: the samples just before it starts
      self.history[n] = tracks[n][0, self.size:self.size + self.context_samples]
    self.index += 1
    return np.asarray(frames)

  def finish(self) -> np.ndarray:
    """The frames still owed: the video is as long as the agent's audio (the partner's
    track is padded with silence or cut to it)."""
    total = -(-self.received // (self.size // self.sampler.window))
    done = self.index * self.sampler.window
    pad = lambda p: np.pad(p, (0, max(0, self.need - len(p))))[:self.need]
    out = []
    while self.index * self.sampler.window < total:
      out.append(self._run({n: pad(p) for n, p in self.pending.items()}))
      self.pending = {n: p[self.size:] for n, p in self.pending.items()}
    return np.concatenate(out)[:total - done] if out else self.empty


def programs(sampler):
  """The jitted start and one-chunk programs of a sampler's streams, made once per sampler
  (kept on it), so a new stream (a new caller of a service) compiles nothing new."""
  cached = sampler._stream_programs
  if cached is None:
    hook = sampler.hook

    def one_chunk(params, context, carry, tracks, seed, index, knobs, runtime):
      keys = jax.random.fold_in(seed, index)[None]
      carry, outputs = hook.chunk(params, context, carry, tracks, keys, knobs, runtime)
      return carry, outputs["frames"][0]

    cached = (jax.jit(hook.start, static_argnums=2), jax.jit(one_chunk, static_argnums=6))
    sampler._stream_programs = cached
  return cached

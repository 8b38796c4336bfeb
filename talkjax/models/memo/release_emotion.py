"""The release's audio emotion: emotion2vec features -> its classifier -> one of 9 classes.

As the release reads a window (memo/utils/audio_utils.py): the 16 kHz samples layer-normed
over the window, emotion2vec's features (extra tokens removed) averaged over time, the
classifier (Linear layers with ReLU between, 1024 -> 9), argmax. The generation layer
hands each clip a window centred on it (the streaming reading MEMO's tiny configs use,
talkjax/models/memo/generate.py: deviation, labelled there); the zeros it pads before and
after the audio are left out of the normalisation, of attention and of the mean (the
heard span runs from the first to the last non-zero sample, so silence inside speech
stays speech). Its parameters travel as params["emotion"] = {"encoder", "classifier"}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from talkjax.audio.emotion2vec import Emotion2vec, Emotion2vecConfig, layer_norm_audio, pooled

WINDOW_S = 3.0     # the release's windows inside the audio (2 s at its two ends)


def heard_span(audio):
  """(B, N) -> (B, N) bool: between the first and the last non-zero sample of each row."""
  nonzero = audio != 0
  after_first = jnp.cumsum(nonzero, axis=-1) > 0
  before_last = jnp.cumsum(nonzero[:, ::-1], axis=-1)[:, ::-1] > 0
  return after_first & before_last


def classify(params, features):
  """The release's AudioEmotionClassifierModel: (B, 1024) -> (B, 9) logits."""
  layers = params["layers"]
  if "kernel" in layers:                       # num_classifier_layers = 1
    return features @ layers["kernel"] + layers["bias"]
  x = features
  for i in range(1, len(layers) + 1):
    x = x @ layers[f"fc{i}"]["kernel"] + layers[f"fc{i}"]["bias"]
    if i < len(layers):
      x = jax.nn.relu(x)
  return x


class ReleaseEmotionReader:
  """(params, (B, window) 16 kHz audio) -> (B,) classes, as `EmotionReader` for the tiny
  classifier."""

  def __init__(self, config: Emotion2vecConfig, classifier_layers: int = 5,
               classifier_width: int = 2048):
    """`classifier_*`: the release classifier's config.json (num_classifier_layers,
    num_classifier_channels; these are its defaults)."""
    self.config = config
    self.classifier_layers, self.classifier_width = classifier_layers, classifier_width
    self.encoder = Emotion2vec(config)
    self.window = int(WINDOW_S * 16000)

  def init(self, rng):
    """Random parameters of the encoder's and the classifier's shapes."""
    e_rng, c_rng = jax.random.split(rng)
    layers = self.classifier_layers
    sizes = [self.config.embed_dim] + [self.classifier_width] * (layers - 1) + [9]
    keys = jax.random.split(c_rng, layers)
    dense = [{"kernel": jax.random.normal(keys[i], (sizes[i], sizes[i + 1])) / sizes[i] ** 0.5,
              "bias": jnp.zeros(sizes[i + 1])} for i in range(layers)]
    classifier = dense[0] if layers == 1 else {f"fc{i + 1}": d for i, d in enumerate(dense)}
    return {"encoder": self.encoder.init(e_rng, jnp.zeros((1, self.window)))["params"],
            "classifier": {"layers": classifier}}

  def logits(self, params, audio):
    mask = heard_span(audio)
    features, frames = self.encoder.apply({"params": params["encoder"]},
                                          layer_norm_audio(audio, mask), mask)
    return classify(params["classifier"], pooled(features, frames))

  def __call__(self, params, audio):
    return jnp.argmax(self.logits(params, audio), axis=-1).astype(jnp.int32)

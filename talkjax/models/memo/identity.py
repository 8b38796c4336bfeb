"""MEMO's identity input with the release's weights: the portrait's face embedding.

The release feeds `image_proj` the raw (not normalised) 512-d embedding that insightface's
recogniser (`glintr100.onnx`, shipped in the release's misc/face_analysis/models/) gives
the largest face of the portrait, and a zero vector, with a warning, when no face is
found. Here:
- the recogniser is the user's ONNX file run in JAX by talkjax's ONNX interpreter
  (talkjax/eval/nets/arcface.py, the one CSIM uses): a port rather than onnxruntime, so
  the embedding is computed on the accelerator that samples, with no extra runtime to
  install, and it is checked against onnxruntime in the tests;
- the five landmarks that align the 112 x 112 chip (insightface's `norm_crop` template)
  come from talkjax's MTCNN detector (talkjax/data/faces.py), not the release's SCRFD
  (`scrfd_10g_bnkps.onnx`; deviation, labelled: the two detectors' landmarks differ by
  a few pixels, so the embedding is close to the release's, not bit-equal);
- detection runs on the portrait as the model sees it (model resolution, after talkjax's
  face crop), not on the original file (deviation, labelled).
"""

from __future__ import annotations

import numpy as np

from talkjax.errors import TalkjaxError

NO_FACE = ("no face found in the portrait: MEMO gets a zero face embedding, as the release "
           "does (the identity then rests on the reference image alone)")


class FaceEmbedder:
  """`embedder(image)` -> (embedding (dim,) float32, note or None) for a uint8 portrait."""

  def __init__(self, path, dim: int):
    from talkjax.eval.nets import arcface
    self.net = arcface.load_params(path)
    self.path = path
    if self.net.embed_dim != dim:
      raise TalkjaxError(f"the face recogniser gives {self.net.embed_dim}-d embeddings, the "
                         f"model's image_proj takes {dim}", path=path,
                         fix="use the recogniser the model was trained with (the release: "
                             "misc/face_analysis/models/glintr100.onnx)")
    self.dim = dim
    self._embed = None

  def __call__(self, image) -> tuple[np.ndarray, str | None]:
    import jax
    from talkjax.data.faces import detect_faces
    from talkjax.eval.csim import arcface_chip
    from talkjax.eval.nets import arcface
    image = np.asarray(image)
    faces = detect_faces(image)
    if not faces:
      return np.zeros(self.dim, np.float32), NO_FACE
    chip = arcface_chip(image, faces[0].landmarks, self.net.input_size[0])   # largest face
    if self._embed is None:
      self._embed = jax.jit(arcface.embed)
    return np.asarray(self._embed(self.net, chip[None]), np.float32)[0], None

"""CSIM: identity similarity of face-recognition embeddings, reference image vs each frame.

CSIM = cos(e(reference), e(frame)) with `e` a real face-recognition network, reported per
frame and as the mean over the frames that show a face. Two networks:
- `net="dlib"` (default): dlib's face-recognition ResNet (`nets/dlib_resnet.py`, weights
  from the `face-recognition-models` package, so it works offline);
- ArcFace: an insightface recognition model in ONNX (`nets/arcface.py`); pass its path or
  the `OnnxNet` that `arcface.load_params` returns.

Faces are found by talkjax's MTCNN (`talkjax.data.faces.detect_faces`, the largest face of
each image) and aligned from its five landmarks (eye centres, nose tip, mouth corners) with a
least-squares similarity transform (rotation, uniform scale, translation; Umeyama 1991).

dlib chips (150x150, padding 0.25): dlib aligns its own 5 landmarks (eye corners and the
base of the nose, which MTCNN does not give) to a template in a normalised face box. MTCNN's
points are placed in the same box with dlib's own 68-point mean face, the template of
`get_face_chip_details` for 68 landmarks, in the same normalised box as its 5-point template
(dlib's 5- and 68-point chips of a face line up): the eyes
are the means of the eye contours (points 36-41, 42-47), the nose tip point 30, the mouth
corners points 48 and 54. As in dlib, the template is mapped to the chip by
(padding + p) / (1 + 2 padding) * 150, the transform is fitted from chip to image
(`find_similarity_transform`), and the chip samples the image the way `extract_image_chips`
does: the chip's centre pixel at the template centre, a pixel pitch of
(150 s - 1) / 149 image pixels (s: the fitted scale), bilinear interpolation truncated to
integers, and when the chip is much smaller than the face a half-size pyramid first (a level
is added while the face region would still be larger than the chip after halving; the 5-tap
[1 4 6 4 1] / 16 filter of dlib's `pyramid_down<2>`, integer results, and the half-pixel
shift dlib's level-to-level coordinate map introduces). On dlib's own 5 landmarks and
template this reproduces `dlib.get_face_chip` exactly when no pyramid level is needed and to
within ~1 grey level on average when one is (tested). From MTCNN's landmarks the descriptor
stays within ~0.1-0.2 (Euclidean) of dlib's own detector + 5-point + chip path: the same
spread as between dlib's own 5- and 68-point chips of a face (tested on photographs).

ArcFace chips (112x112): insightface's `norm_crop`: the standard 5-point ArcFace template,
the transform fitted from image to chip (as `skimage`'s `SimilarityTransform.estimate`) and
inverted, bilinear sampling (`cv2.warpAffine`, black outside the image), no pyramid.

Both samplers read pixels outside the image as 0 and return uint8 chips, as the reference
implementations do (dlib truncates, OpenCV rounds).

Note on the scale: dlib descriptors of different people are far from orthogonal (cosine
0.88 for the two unrelated photographs of the tests; dlib itself calls two faces the same
person below a Euclidean distance of 0.6), so dlib CSIM values live in a narrow band below
1; ArcFace embeddings of unrelated faces are typically close to orthogonal. Compare CSIM
numbers only when they come from the same network.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from talkjax.errors import TalkjaxError
from talkjax.eval import extract
from talkjax.eval.nets import arcface, dlib_resnet

DLIB_PADDING = 0.25
# MTCNN's five points (image-left eye, image-right eye, nose tip, mouth left, mouth right)
# in dlib's normalised face box, from dlib's 68-point mean face (see the module docstring).
_DLIB_MEAN_FACE = {  # 68-point index: (x, y)
    36: (0.121737, 0.216423), 37: (0.187122, 0.178758), 38: (0.265825, 0.179852),
    39: (0.334606, 0.231733), 40: (0.260918, 0.245099), 41: (0.182743, 0.244077),
    42: (0.645647, 0.231733), 43: (0.714428, 0.179852), 44: (0.793132, 0.178758),
    45: (0.858516, 0.216423), 46: (0.79751, 0.244077), 47: (0.719335, 0.245099),
    30: (0.490127, 0.515625), 48: (0.254149, 0.780233), 54: (0.726104, 0.780233)}
DLIB_TEMPLATE = np.array(
    [np.mean([_DLIB_MEAN_FACE[i] for i in range(36, 42)], 0),
     np.mean([_DLIB_MEAN_FACE[i] for i in range(42, 48)], 0),
     _DLIB_MEAN_FACE[30], _DLIB_MEAN_FACE[48], _DLIB_MEAN_FACE[54]])
# insightface's `arcface_dst` for 112x112 chips.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])


# ---- alignment -----------------------------------------------------------------------------

def similarity(src, dst) -> tuple[np.ndarray, np.ndarray]:
  """Least-squares similarity (A = s R, t) with dst ~ src @ A.T + t (Umeyama 1991)."""
  src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
  ms, md = src.mean(0), dst.mean(0)
  a, b = src - ms, dst - md
  cov = b.T @ a / len(a)
  u, sv, vt = np.linalg.svd(cov)
  d = np.ones(2)
  if np.linalg.det(cov) < 0:
    d[1] = -1
  rotation = u @ np.diag(d) @ vt
  scale = float((sv * d).sum() / (a ** 2).sum(1).mean())
  matrix = scale * rotation
  return matrix, md - matrix @ ms


def _bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
  """image (H, W, C) at points xy (..., 2) (pixel centres at integers), as float64;
  neighbours outside the image read 0."""
  h, w = image.shape[:2]
  x, y = xy[..., 0], xy[..., 1]
  x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]

  def at(yy, xx):
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    value = image[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)].astype(np.float64)
    return np.where(inside[..., None], value, 0.0)

  return ((at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx) * (1 - fy)
          + (at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx) * fy)


def _pyramid_down(image: np.ndarray) -> np.ndarray:
  """Blur with [1 4 6 4 1] / 16 (edges repeated) and keep every other pixel: pixel (i, j) of
  the result sits at (2i, 2j) of the input."""
  k = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
  f = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="edge")
  f = sum(k[i] * f[:, i:i + f.shape[1] - 4] for i in range(5))
  f = sum(k[i] * f[i:i + f.shape[0] - 4] for i in range(5))
  return f[::2, ::2]


def _grid(size: int) -> np.ndarray:
  ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
  return np.stack([xs, ys], -1)


def dlib_chip(image, landmarks, size: int = dlib_resnet.CHIP_SIZE,
              padding: float = DLIB_PADDING, template=DLIB_TEMPLATE) -> np.ndarray:
  """The (size, size, 3) uint8 chip dlib's face-recognition net expects, from MTCNN's five
  landmarks (5, 2) of a face in `image` (H, W, 3). `template`: where those landmarks go in
  dlib's normalised face box (another landmark set needs its own template)."""
  template = (padding + np.asarray(template, np.float64)) / (1 + 2 * padding) * size
  matrix, shift = similarity(template, landmarks)          # chip -> image
  scale = float(np.sqrt(abs(np.linalg.det(matrix))))
  centre = matrix @ np.full(2, size / 2) + shift
  pitch = (size * scale - 1) / (size - 1) / scale
  step = matrix * pitch                                    # image pixels per chip pixel
  offset = centre - step @ np.full(2, (size - 1) / 2)
  level, span = 0, size * scale - 1
  while span / 2 + 1 > size:
    span /= 2
    level += 1
  # dlib maps a point to the next level with p / 2 - (1.25, 0.75) while that level's pixel i
  # holds the filtered input around 2 i + 2: each level read moves the sample by
  # (-0.5, +0.5) pixels of the level below. Reproduced, so chips match dlib's.
  quirk = (2 ** level - 1) * np.array([-0.5, 0.5])
  points = _grid(size) @ step.T + offset + quirk           # in image pixels
  image = np.asarray(image)
  if level:   # the pyramid covers the chip's region only (its grid kept aligned)
    unit, margin = 2 ** level, 6 * 2 ** level + 2
    lo = np.maximum(np.floor((points.min((0, 1)) - margin) / unit) * unit, 0).astype(int)
    hi = np.minimum(np.ceil(points.max((0, 1)) + margin), image.shape[1::-1]).astype(int)
    hi = np.maximum(hi, lo + 1)
    image, points = image[lo[1]:hi[1], lo[0]:hi[0]], points - lo
  picture = image
  for _ in range(level):
    picture = np.floor(_pyramid_down(picture.astype(np.float64)))   # dlib's integer pyramid
  return np.clip(np.floor(_bilinear(picture, points / 2 ** level)), 0, 255).astype(np.uint8)


def arcface_chip(image, landmarks, size: int = arcface.CHIP_SIZE) -> np.ndarray:
  """insightface's `norm_crop`: the (size, size, 3) uint8 ArcFace chip (size a multiple of
  112) from the five landmarks (5, 2)."""
  if size % 112:
    raise TalkjaxError(f"ArcFace chips are a multiple of 112 pixels, the model wants {size}",
                       fix="use an insightface recognition model with 112x112 input")
  matrix, shift = similarity(landmarks, ARCFACE_TEMPLATE * (size / 112))   # image -> chip
  inverse = np.linalg.inv(matrix)
  points = (_grid(size) - shift) @ inverse.T
  return np.clip(np.rint(_bilinear(np.asarray(image), points)), 0, 255).astype(np.uint8)


# ---- CSIM ----------------------------------------------------------------------------------

def _landmarks(image):
  from talkjax.data.faces import detect_faces
  faces = detect_faces(image)
  return faces[0].landmarks if faces else None


def _check_image(image, what: str, ndim: int):
  image = np.asarray(image)
  shape = "(H, W, 3)" if ndim == 3 else "(T, H, W, 3)"
  if image.ndim != ndim or image.shape[-1] != 3:
    raise TalkjaxError(f"the {what} must be {shape} RGB, got shape {image.shape}",
                       fix=f"pass uint8 RGB pixels shaped {shape}")
  if image.dtype != np.uint8:
    raise TalkjaxError(f"the {what} must be uint8 pixels, got {image.dtype}",
                       fix="convert with np.clip(x, 0, 255).astype(np.uint8)")
  if min(image.shape[-3:-1]) < 12:
    raise TalkjaxError(f"the {what} is {image.shape[-2]}x{image.shape[-3]} pixels, too small "
                       "to find a face in", fix="pass images at least 48 pixels high and wide")
  if ndim == 4 and len(image) == 0:
    raise TalkjaxError("no frames given", fix="pass at least one frame")
  return image


def _network(net):
  """(forward function, its params, chip function) for `net`."""
  if isinstance(net, str) and net == "dlib":
    return dlib_resnet.embed, _dlib_params(), dlib_chip
  if isinstance(net, (str, os.PathLike)):
    if not os.fspath(net).endswith(".onnx"):
      raise TalkjaxError(f"unknown CSIM network {os.fspath(net)!r}",
                         fix='use net="dlib" or the path of an insightface .onnx model')
    net = arcface.load_params(net)
  if isinstance(net, arcface.OnnxNet):
    size = net.input_size[0]
    if net.input_size[0] != net.input_size[1]:
      raise TalkjaxError(f"the ArcFace model's input is {net.input_size}, not square",
                         fix="use an insightface recognition model with 112x112 input")
    return arcface.embed, net, lambda image, marks: arcface_chip(image, marks, size)
  if isinstance(net, dict) and "stem_conv" in net:
    return dlib_resnet.embed, net, dlib_chip
  raise TalkjaxError(f"unknown CSIM network of type {type(net).__name__}",
                     fix='use net="dlib", an .onnx path or arcface.load_params(path)')


@functools.lru_cache(maxsize=1)
def _dlib_params():
  return dlib_resnet.load_params()


def _unit(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _full_frame_chip(size: int):
  """The whole image as the chip: for frames that are face crops already (SynthTalk, datasets
  shipped as aligned crops), where a detector may find nothing to align."""
  from PIL import Image

  def chip(image, marks):
    del marks
    return np.asarray(Image.fromarray(np.asarray(image)).resize((size, size), Image.BILINEAR))
  return chip


def csim(reference, frames, net: str | os.PathLike | arcface.OnnxNet | dict = "dlib",
         batch_size: int = 32, progress: str | None = None, crop: str = "detect") -> dict:
  """Identity similarity of each frame to the reference image.

  reference: uint8 (H, W, 3) RGB; frames: uint8 (T, H', W', 3). `net`: "dlib", the path of
  an insightface .onnx model, an `arcface.OnnxNet`, or dlib params (`dlib_resnet.load_params`).
  Returns dict(mean: float over the frames with a face (nan if none has one),
  per_frame: float (T,) cosine, nan where no face was found, frames_without_face: int,
  net: "dlib" or "arcface"). crop="detect" (default) finds and aligns the face of every
  image; crop="full" takes each whole image as the face crop. On several hosts each process detects and embeds its share of
  the frames; every process gets the full result. A reference without a face raises
  TalkjaxError.
  """
  reference = _check_image(reference, "reference image", 3)
  frames = _check_image(frames, "frames", 4)
  fn, params, chip = _network(net)
  if crop not in ("detect", "full"):
    raise TalkjaxError(f"crop must be 'detect' or 'full', got {crop!r}")
  if crop == "full":
    size = dlib_resnet.CHIP_SIZE if fn is dlib_resnet.embed else params.input_size[0]
    chip, find = _full_frame_chip(size), (lambda image: np.zeros((5, 2)))
  else:
    find = _landmarks
  marks = find(reference)
  if marks is None:
    raise TalkjaxError("no face in the reference image",
                       fix="give a reference photo where one face is clearly visible")
  count = len(frames)
  share = extract.host_share(count)
  chips, found = [chip(reference, marks)], np.zeros(len(share), bool)
  for row, index in enumerate(share):
    marks = find(frames[index])
    if marks is not None:
      chips.append(chip(frames[index], marks))
      found[row] = True
  # The reference rides in the same batches as the frames: one compiled shape.
  out = extract.map_batches(fn, params, np.stack(chips), batch_size, progress)
  ref_embedding = out[0]
  rows = np.zeros((len(share), out.shape[-1]), np.float32)
  rows[found] = out[1:]
  embeddings = extract.gather_rows(rows, count)
  has_face = extract.gather_rows(found.astype(np.float32), count) > 0
  per_frame = np.where(has_face, _unit(embeddings) @ _unit(ref_embedding), np.nan)
  return {"mean": float(np.mean(per_frame[has_face])) if has_face.any() else float("nan"),
          "per_frame": per_frame,
          "frames_without_face": int(count - has_face.sum()),
          "net": "arcface" if fn is arcface.embed else "dlib"}

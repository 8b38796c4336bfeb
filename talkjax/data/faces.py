"""Face detection (MTCNN) and the face-centred square crop a model was trained on.

The detector is MTCNN (Zhang et al. 2016: a proposal net over an image pyramid, then a
refinement net and an output net with five landmarks), reimplemented here in NumPy. Its
weights are the ones the `mtcnn` package ships inside its wheel (no download; that
package's own code needs TensorFlow, ours does not: `mtcnn` is installed for its weight
files only, read with joblib + lz4). Why MTCNN: it is the standard face pre-processing of
talking-head datasets, it gives the eyes and mouth (framing by them is stable across
poses), and of the detectors whose weights ship in a registry package it is the one that
runs without TensorFlow, OpenCV or a tflite runtime on every Python talkjax supports.

`detect_faces(rgb)` -> faces, largest first; `face_box(face, framing)` -> the
square that puts the face where the training data has it, `cut_square(rgb, box)` cuts it out.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from talkjax.errors import MissingCapabilityError

# Detection runs on a copy at most this large (long side); boxes are mapped back.
DETECT_MAX_SIDE = 640


@dataclasses.dataclass
class Face:
  box: np.ndarray          # (x1, y1, x2, y2) in pixels of the image given
  score: float
  landmarks: np.ndarray    # (5, 2) x, y: left eye, right eye, nose, mouth left, mouth right


@dataclasses.dataclass(frozen=True)
class Framing:
  """Where a training set puts the face in its square frames: the crop's side is `scale` x
  the eyes-to-mouth distance, and the point halfway between the eyes and the mouth sits at
  (0.5, `center_y`) of the crop."""
  scale: float
  center_y: float


@functools.lru_cache(maxsize=1)
def _weights():
  # Located through the distribution's metadata: importing the `mtcnn` package would
  # import TensorFlow.
  import importlib.metadata
  try:
    import joblib
    dist = importlib.metadata.distribution("mtcnn")
    files = [dist.locate_file(f"mtcnn/assets/weights/{n}.lz4") for n in ("pnet", "rnet", "onet")]
    return tuple(tuple(np.asarray(w, np.float32) for w in joblib.load(str(f))) for f in files)
  except (ImportError, FileNotFoundError, importlib.metadata.PackageNotFoundError) as e:
    raise MissingCapabilityError(
        f"the face detector's weights are missing ({type(e).__name__}: {e})",
        fix="pip install 'mtcnn>=1.0' lz4 (talkjax's own dependencies; --crop center "
            "works without them)") from e


# ---- the three networks (NHWC, Keras HWIO kernels) ------------------------------------------

def _conv(x, w, b):
  """'valid' stride-1 convolution."""
  kh, kw = w.shape[:2]
  windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # N,H',W',C,kh,kw
  return np.einsum("nhwcij,ijco->nhwo", windows, w, optimize=True) + b


def _prelu(x, alpha):
  return np.where(x > 0, x, x * alpha.reshape((1,) * (x.ndim - 1) + (-1,)))


def _max_pool(x, size, stride, same):
  """TensorFlow's max pooling ('same' pads at the end first, with -inf)."""
  n, h, w, c = x.shape
  if same:
    out_h, out_w = -(-h // stride), -(-w // stride)
    ph, pw = max((out_h - 1) * stride + size - h, 0), max((out_w - 1) * stride + size - w, 0)
    x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
               constant_values=-np.inf)
  windows = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))
  return windows[:, ::stride, ::stride].max(axis=(-2, -1))


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def pnet(x, p):
  x = _prelu(_conv(x, p[0], p[1]), p[2])
  x = _max_pool(x, 2, 2, same=True)
  x = _prelu(_conv(x, p[3], p[4]), p[5])
  x = _prelu(_conv(x, p[6], p[7]), p[8])
  return _conv(x, p[9], p[10]), _softmax(_conv(x, p[11], p[12]))


def _flatten_wh(x):
  """Flatten in (width, height, channel) order, as the Caffe-trained dense layers expect."""
  return np.transpose(x, (0, 2, 1, 3)).reshape(x.shape[0], -1)


def rnet(x, p):
  x = _max_pool(_prelu(_conv(x, p[0], p[1]), p[2]), 3, 2, same=True)
  x = _max_pool(_prelu(_conv(x, p[3], p[4]), p[5]), 3, 2, same=False)
  x = _prelu(_conv(x, p[6], p[7]), p[8])
  x = _prelu(_flatten_wh(x) @ p[9] + p[10], p[11])
  return x @ p[12] + p[13], _softmax(x @ p[14] + p[15])


def onet(x, p):
  x = _max_pool(_prelu(_conv(x, p[0], p[1]), p[2]), 3, 2, same=True)
  x = _max_pool(_prelu(_conv(x, p[3], p[4]), p[5]), 3, 2, same=False)
  x = _max_pool(_prelu(_conv(x, p[6], p[7]), p[8]), 2, 2, same=True)
  x = _prelu(_conv(x, p[9], p[10]), p[11])
  x = _prelu(_flatten_wh(x) @ p[12] + p[13], p[14])
  return x @ p[15] + p[16], x @ p[17] + p[18], _softmax(x @ p[19] + p[20])


# ---- image operations ----------------------------------------------------------------------

def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
  """(n_out, n_in) weights of box-filter (area) resampling."""
  scale = n_in / n_out
  edges = np.arange(n_out + 1) * scale
  lo, hi = edges[:-1, None], edges[1:, None]
  cells = np.arange(n_in)[None, :]
  overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0, None)
  return (overlap / scale).astype(np.float32)


def resize_area(image, height: int, width: int):
  """(H, W, C) -> (height, width, C) by area averaging (TensorFlow's AREA method)."""
  rows, cols = _area_matrix(image.shape[0], height), _area_matrix(image.shape[1], width)
  return np.einsum("yh,hwc,xw->yxc", rows, image, cols, optimize=True)


def crop_and_resize(image, boxes, size: int):
  """Bilinear crops (TensorFlow's crop_and_resize): boxes (N, 4) = (y1, x1, y2, x2) in
  [0, 1] units of (H - 1, W - 1); samples outside the image read 0."""
  h, w = image.shape[:2]
  t = np.linspace(0.0, 1.0, size) if size > 1 else np.zeros(1)
  ys = (boxes[:, 0:1] + t[None] * (boxes[:, 2:3] - boxes[:, 0:1])) * (h - 1)   # (N, size)
  xs = (boxes[:, 1:2] + t[None] * (boxes[:, 3:4] - boxes[:, 1:2])) * (w - 1)
  y0, x0 = np.floor(ys), np.floor(xs)
  wy, wx = (ys - y0)[:, :, None, None], (xs - x0)[:, None, :, None]

  def at(yy, xx):
    inside = ((yy >= 0) & (yy < h))[:, :, None] & ((xx >= 0) & (xx < w))[:, None, :]
    v = image[np.clip(yy, 0, h - 1).astype(int)[:, :, None], np.clip(xx, 0, w - 1).astype(int)[:, None, :]]
    return np.where(inside[..., None], v, 0.0)

  top = at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx
  bottom = at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx
  out = top * (1 - wy) + bottom * wy
  outside = (ys < 0) | (ys > h - 1)
  out = np.where(outside[:, :, None, None], 0.0, out)
  outside = (xs < 0) | (xs > w - 1)
  return np.where(outside[:, None, :, None], 0.0, out).astype(np.float32)


# ---- boxes --------------------------------------------------------------------------------

def _nms(boxes, scores, threshold: float, method: str = "union") -> np.ndarray:
  """Indices kept, best first: a box goes when it overlaps a better one by > threshold."""
  order = np.argsort(-scores, kind="stable")
  b = boxes[order]
  area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  iw = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
  ih = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
  inter = iw * ih
  denom = (area[:, None] + area[None, :] - inter) if method == "union" else np.minimum(area[:, None], area[None, :])
  overlap = inter / np.maximum(denom, 1e-12)
  keep = ~np.any(np.triu(overlap > threshold, k=1), axis=0)
  return order[keep]


def _square(boxes):
  boxes = boxes.copy()
  w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  side = np.maximum(w, h)
  boxes[:, 0] += (w - side) / 2
  boxes[:, 1] += (h - side) / 2
  boxes[:, 2:4] = boxes[:, 0:2] + side[:, None]
  return boxes


def _refine(boxes, offsets):
  size = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1] * 2, axis=1)
  return boxes + offsets * size


def _patches(image, boxes, size):
  h, w = image.shape[:2]
  norm = boxes[:, [1, 0, 3, 2]] / np.asarray([h, w, h, w], np.float32)
  return crop_and_resize(image, norm, size)


def detect_faces(rgb, *, min_face_size: int = 20, scale_factor: float = 0.709,
                 thresholds=(0.6, 0.7, 0.8)) -> list[Face]:
  """Faces in a uint8 (H, W, 3) image, largest first."""
  rgb = np.asarray(rgb)
  h0, w0 = rgb.shape[:2]
  shrink = min(1.0, DETECT_MAX_SIDE / max(h0, w0))
  image = rgb.astype(np.float32)
  if shrink < 1.0:
    image = resize_area(image, max(1, round(h0 * shrink)), max(1, round(w0 * shrink)))
  image = (image - 127.5) / 128.0
  p_weights, r_weights, o_weights = _weights()
  h, w = image.shape[:2]

  # Stage 1: proposals over the pyramid (12 px cells, stride 2), NMS per scale then overall.
  count = round(-((np.log(min(h, w) / 12) / np.log(scale_factor)) + 1))
  proposals = []
  for scale in (12 / min_face_size) * scale_factor ** np.arange(max(count, 0)):
    sh, sw = int(h * scale), int(w * scale)
    if min(sh, sw) < 12:
      break
    reg, prob = pnet(resize_area(image, sh, sw)[None], p_weights)
    ys, xs = np.nonzero(prob[0, :, :, 1] > thresholds[0])
    if not len(ys):
      continue
    x1, y1 = xs * 2.0 + 1, ys * 2.0 + 1
    x2, y2 = xs * 2.0 + 12, ys * 2.0 + 12
    r = reg[0, ys, xs]
    cand = np.stack([x1 + r[:, 0] * 11, y1 + r[:, 1] * 11, x2 + r[:, 2] * 11,
                     y2 + r[:, 3] * 11], axis=1) / scale
    score = prob[0, ys, xs, 1]
    keep = _nms(cand, score, 0.5)
    proposals.append((cand[keep], score[keep]))
  if not proposals:
    return []
  boxes = np.concatenate([b for b, _ in proposals])
  scores = np.concatenate([s for _, s in proposals])
  keep = _nms(boxes, scores, 0.7)
  boxes = _square(boxes[keep])

  # Stage 2: refinement on 24 x 24 crops.
  reg, prob = rnet(_patches(image, boxes, 24), r_weights)
  boxes, scores = _refine(boxes, reg), prob[:, 1]
  good = scores > thresholds[1]
  boxes, scores = boxes[good], scores[good]
  if not len(boxes):
    return []
  keep = _nms(boxes, scores, 0.7)
  boxes = _square(boxes[keep])

  # Stage 3: output net on 48 x 48 crops: final boxes and five landmarks.
  reg, marks, prob = onet(_patches(image, boxes, 48), o_weights)
  size_w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
  size_h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
  lx = size_w * marks[:, 0:5] + boxes[:, 0:1] - 1
  ly = size_h * marks[:, 5:10] + boxes[:, 1:2] - 1
  boxes, scores = _refine(boxes, reg), prob[:, 1]
  good = scores > thresholds[2]
  boxes, scores, lx, ly = boxes[good], scores[good], lx[good], ly[good]
  keep = _nms(boxes, scores, 0.7, method="min")
  faces = [Face(np.clip(boxes[i] / shrink, 0, [w0, h0, w0, h0]), float(scores[i]),
                np.stack([lx[i], ly[i]], axis=1) / shrink) for i in keep]
  return sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def face_box(face: Face, framing: Framing) -> tuple[int, int, int]:
  """(left, top, side) of the square around `face` with the training data's framing (it may
  reach outside the image)."""
  eyes = face.landmarks[0:2].mean(0)
  mouth = face.landmarks[3:5].mean(0)
  middle = (eyes + mouth) / 2
  side = max(8, int(round(framing.scale * float(np.linalg.norm(mouth - eyes)))))
  return int(round(middle[0] - side / 2)), int(round(middle[1] - framing.center_y * side)), side


def cut_square(rgb, box) -> np.ndarray:
  """The square `box` = (left, top, side) of an image (uint8, any size), padded with the
  border pixels where it leaves the image."""
  left, top, side = box
  h, w = rgb.shape[:2]
  pad = max(0, -left, -top, left + side - w, top + side - h)
  padded = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else rgb
  return padded[top + pad:top + pad + side, left + pad:left + pad + side]

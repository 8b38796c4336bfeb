"""Vectorised anti-aliased face renderer: signed distances, composited back to front.

All frames of a clip render at once as (T, H, W) arrays. Coordinates span [-1, 1] across
the image, y pointing down. Whole-face layers use the full grid; small features (eyes,
brows, mouth) use the union of their per-frame bounding boxes only, which is where the speed
comes from. Coverage = clip(0.5 - distance / pixel, 0, 1) gives one-pixel anti-aliasing.
"""

from __future__ import annotations

import numpy as np

FACE_CY = 0.02        # face centre (image y) at rest
MOUTH_OPEN_MAX = 0.22  # full jaw opening, image-half units
MOUTH_INTERIOR = np.array([0.28, 0.05, 0.08], np.float32)
EYE_WHITE = np.array([0.97, 0.97, 0.95], np.float32)
ZOOM = 0.8            # the image shows [-ZOOM, ZOOM]^2 of face space
GAZE_SIDE = 0.5       # listeners look aside by this fraction of the eye size


def _cover(d, px):
  return np.clip(0.5 - d * (1.0 / px), 0.0, 1.0)


def _paint(img, alpha, color):
  """img (3, ...) <- img * (1 - alpha) + color * alpha, in place (channel-first is ~4x
  faster than broadcasting over a trailing axis of 3)."""
  for c in range(3):
    plane = img[c]
    plane += alpha * (np.float32(color[c]) - plane)


def _blob(x, y, rx, ry):
  """Cheap signed-distance estimate for an ellipse that is never thin (face, hair, iris)."""
  return (np.hypot(x * (1.0 / rx), y * (1.0 / ry)) - 1.0) * np.minimum(rx, ry)


def _ellipse(x, y, rx, ry):
  """Approximate signed distance to an ellipse: k0 (k0 - 1) / k1 stays accurate for thin
  ellipses (a closed mouth), where scaling by the short radius would smear a line sideways."""
  rx = np.maximum(rx, 1e-4)
  ry = np.maximum(ry, 1e-4)
  ux, uy = x / rx, y / ry
  k0 = np.sqrt(ux * ux + uy * uy)
  k1 = np.sqrt((ux / rx) ** 2 + (uy / ry) ** 2)
  d = k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)
  # Far from a very thin ellipse the estimate collapses toward 0; the distance to the
  # bounding box is a lower bound of the true distance there.
  return np.maximum(d, np.maximum(np.abs(x) - rx, np.abs(y) - ry))


def _segment(x, y, ax, ay, bx, by, half_width):
  """Signed distance to a thick line segment (a capsule) from (ax, ay) to (bx, by)."""
  px, py = x - ax, y - ay
  dx, dy = bx - ax, by - ay
  h = np.clip((px * dx + py * dy) / np.maximum(dx * dx + dy * dy, 1e-8), 0.0, 1.0)
  return np.sqrt((px - dx * h) ** 2 + (py - dy * h) ** 2) - half_width


def background(ident, res):
  axis = np.linspace(-ZOOM, ZOOM, res, dtype=np.float32)
  y, x = np.meshgrid(axis, axis, indexing="ij")
  c1, c2 = ident["bg"], ident["bg2"]
  style = ident["bg_style"]
  if style == 0:
    w = (y + 1) / 2
  elif style == 1:
    w = 0.5 + 0.5 * np.sin(x * 9.0 + y * 3.0)
  else:
    w = np.clip(0.5 + 0.5 * np.cos(np.hypot(x - 0.5, y + 0.6) * 12.0), 0, 1)
  return (c1 * (1 - w[..., None]) + c2 * w[..., None]).astype(np.float32)


def _window(cx, cy, rx, ry, res):
  """Pixel slices covering centres (T,) +- radii across all frames (image coordinates)."""
  to_px = lambda v: (v / ZOOM + 1) * res / 2
  r0 = int(np.clip(np.floor(to_px(np.min(cy) - ry)) - 1, 0, res))
  r1 = int(np.clip(np.ceil(to_px(np.max(cy) + ry)) + 2, 0, res))
  c0 = int(np.clip(np.floor(to_px(np.min(cx) - rx)) - 1, 0, res))
  c1 = int(np.clip(np.ceil(to_px(np.max(cx) + rx)) + 2, 0, res))
  return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


def render_frames(ident, state, res):
  """uint8 frames (T, res, res, 3) of one identity in per-frame `state` (see clip.py)."""
  t_len = len(state["mouth_open"])
  px = 2.0 * ZOOM / res
  axis = np.linspace(-ZOOM + px / 2, ZOOM - px / 2, res, dtype=np.float32)
  gy, gx = axis[None, :, None], axis[None, None, :]
  col = lambda v: np.asarray(v, np.float32)[:, None, None]
  yaw, pitch, roll, tx, ty = (state["pose"][:, i].astype(np.float32) for i in range(5))
  cx, cy = tx + 0.12 * yaw, FACE_CY + ty + 0.1 * pitch
  cos_r, sin_r = np.cos(roll), np.sin(roll)
  # Face-local coordinates (rotated by roll about the moving face centre).
  dx, dy = gx - col(cx), gy - col(cy)
  fx = col(cos_r) * dx + col(sin_r) * dy
  fy = col(cos_r) * dy - col(sin_r) * dx
  img = np.broadcast_to(background(ident, res).transpose(2, 0, 1)[:, None],
                        (3, t_len, res, res)).copy()
  fw, fh = ident["face_w"], ident["face_h"]
  skin, hair = ident["skin"], ident["hair"]

  # Shoulders and neck move with the translation only.
  low = slice(int(res * (0.5 + 0.2 / ZOOM)), res)  # rows below the chin
  _paint(img[:, :, low], _cover(_blob(gx - col(tx * 0.6), gy[:, low] - 1.25, 0.95, 0.5), px),
         ident["shirt"])
  neck = np.maximum(np.abs(gx - col(tx * 0.8)) - fw * 0.45, np.abs(gy[:, low] - 0.75) - 0.3)
  _paint(img[:, :, low], _cover(neck, px), skin * 0.82)
  rows, cols = _window(cx, cy, fw * 1.45, fh * 1.35, res)
  head, hx, hy = img[:, :, rows, cols], fx[:, rows, cols], fy[:, rows, cols]
  if ident["hair_style"] == 1:  # long hair behind the head
    _paint(head, _cover(_blob(hx, hy - 0.12 * fh, fw * 1.3, fh * 1.12), px), hair * 0.9)
  # Face: an ellipse whose lower half narrows toward the chin.
  taper = 1.0 - (ident["face_round"] - 2.0) * 0.3 * np.clip(hy / fh, 0, 1)
  _paint(head, _cover(_blob(hx, hy, fw * taper, fh), px), skin)
  _paint_hair(head, hx, hy, fw, fh, ident, px)

  # Features shift with yaw/pitch (a cheap 3/4 turn) in face coordinates.
  shift_x, shift_y = 0.35 * fw * yaw, 0.3 * fh * pitch
  emo = state["emotion_face"].astype(np.float32)  # (T, 7) brow raise, tilt, eye open, corners, asym, open, spread
  cx_img = lambda lx, ly: cx + cos_r * lx - sin_r * ly
  cy_img = lambda lx, ly: cy + sin_r * lx + cos_r * ly
  eye_y = -0.12 * fh + shift_y
  eye_w = ident["eye_size"] * 1.4
  eye_h = ident["eye_size"] * (0.85 + 0.45 * emo[:, 2]) * (1 - state["blink"])
  gaze = GAZE_SIDE * ident["eye_size"] * (1 - state["speaking"].astype(np.float32))
  for side in (-1.0, 1.0):
    ex = side * ident["eye_gap"] + shift_x
    rows, cols = _window(cx_img(ex, eye_y), cy_img(ex, eye_y), 0.25, 0.28, res)
    sub = img[:, :, rows, cols]
    lx, ly = fx[:, rows, cols] - col(ex), fy[:, rows, cols] - col(eye_y)
    white = _ellipse(lx, ly, eye_w, col(eye_h))
    _paint(sub, _cover(white, px), EYE_WHITE)
    iris = np.maximum(_blob(lx - col(gaze), ly, ident["eye_size"] * 0.75,
                               ident["eye_size"] * 0.75), white)
    _paint(sub, _cover(iris, px), ident["iris"])
    pupil = np.maximum(_blob(lx - col(gaze), ly, ident["eye_size"] * 0.35,
                                ident["eye_size"] * 0.35), white)
    _paint(sub, _cover(pupil, px), (0.02, 0.02, 0.02))
    # Brow: inner end rises with `tilt`, the whole brow with `raise`.
    by = eye_y - ident["eye_size"] * 1.9 - 0.12 * emo[:, 0]
    inner = side * (ident["eye_gap"] - eye_w * 0.9) + shift_x
    outer = side * (ident["eye_gap"] + eye_w * 1.05) + shift_x
    by = by - 0.09 * emo[:, 4] * (side > 0)  # contempt: the smirking side's brow goes up
    brow = _segment(fx[:, rows, cols], fy[:, rows, cols], col(inner), col(by - 0.1 * emo[:, 1]),
                    col(outer), col(by + 0.02), ident["brow_w"])
    _paint(sub, _cover(brow, px), hair * 0.7)

  # Nose: a soft shadow.
  nose_y = 0.12 * fh + shift_y
  _paint_small(img, fx, fy, cx_img(shift_x * 1.2, nose_y), cy_img(shift_x * 1.2, nose_y),
               lambda lx, ly: _blob(lx - col(shift_x * 1.2), ly - col(nose_y), 0.04, 0.065),
               skin * 0.8, px, res, 0.1, 0.1)
  _paint_mouth(img, fx, fy, state, ident, emo, shift_x, shift_y, cx_img, cy_img, px, res)
  return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 3, 0)


def _paint_hair(img, fx, fy, fw, fh, ident, px):
  style = ident["hair_style"]
  if style == 2:  # high top
    cap = _blob(fx, fy + 0.25 * fh, fw * 1.06, fh * 1.05)
    line = fy + 0.5 * fh
  elif style == 3:  # bald crown, hair on the sides only
    cap = np.maximum(_blob(fx, fy, fw * 1.07, fh * 1.04), 0.62 * fw - np.abs(fx))
    line = fy + 0.05 * fh
  else:
    cap = _blob(fx, fy + 0.03, fw * 1.07, fh * 1.05)
    line = fy + 0.42 * fh - 0.04 * np.cos(fx * 14.0)
  _paint(img, _cover(np.maximum(cap, line), px), ident["hair"])


def _paint_small(img, fx, fy, cxs, cys, sdf, color, px, res, rx, ry):
  rows, cols = _window(cxs, cys, rx, ry, res)
  _paint(img[:, :, rows, cols], _cover(sdf(fx[:, rows, cols], fy[:, rows, cols]), px), color)


def _paint_mouth(img, fx, fy, state, ident, emo, shift_x, shift_y, cx_img, cy_img, px, res):
  col = lambda v: np.asarray(v, np.float32)[:, None, None]
  my = 0.45 * ident["face_h"] + shift_y
  mx = shift_x * 1.1
  rows, cols = _window(cx_img(mx, my), cy_img(mx, my), 0.36, 0.24, res)
  sub = img[:, :, rows, cols]
  lx, ly = fx[:, rows, cols] - col(mx), fy[:, rows, cols] - col(my)
  half_w = ident["mouth_w"] * (0.75 + 0.5 * state["mouth_width"])
  open_h = MOUTH_OPEN_MAX * state["mouth_open"]
  u = lx / col(half_w)
  # Corners bend up (happy) or down (sad); contempt lifts one corner only.
  bend = -0.09 * col(emo[:, 3]) * u * u - 0.12 * col(emo[:, 4]) * np.clip(u, 0, None) ** 2
  ly = ly - bend
  lips = _blob(lx, ly, col(half_w * 1.08), col(open_h / 2 + ident["lip_h"]))
  _paint(sub, _cover(lips, px), ident["lip"])
  inner = _ellipse(lx, ly, col(half_w * 0.92), col(open_h / 2))
  _paint(sub, _cover(inner, px), MOUTH_INTERIOR)
  teeth = np.maximum(inner, ly + col(open_h * 0.2))
  _paint(sub, _cover(teeth, px), (0.95, 0.95, 0.9))
  # The line between the lips stays visible when the mouth is closed.
  seam = np.abs(ly) - 0.006
  seam = np.maximum(seam, np.abs(lx) - col(half_w * 0.95))
  _paint(sub, _cover(seam, px) * 0.7, ident["lip"] * 0.45)

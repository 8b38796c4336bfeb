"""Decoding a stored frame (the JPEG/PNG bytes every built dataset holds)."""

from __future__ import annotations

import io

import numpy as np

from talkjax.errors import TalkjaxError


def decode_frame(data: bytes, where) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(io.BytesIO(data)) as im:
      return np.asarray(im.convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    raise TalkjaxError(f"a stored frame cannot be decoded ({e})", path=where,
                       fix="the dataset is corrupt; rebuild it with talkjax data build") from e

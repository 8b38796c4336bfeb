"""Portrait and audio inputs as users bring them: a corpus the tests generate, real
photographs from scikit-image for the face detector, and every hostile file's outcome."""

import struct

import numpy as np
import pytest
import soundfile
from PIL import Image
from skimage import data as photos

from talkjax.audio.load import load_audio
from talkjax.data.faces import detect_faces
from talkjax.errors import TalkjaxError
from talkjax.pipelines.inputs import SYNTHTALK_FRAMING, load_image, load_request_audio

from corpus import png_claiming

# MTCNN as its reference implementation (the `mtcnn` package, TensorFlow 2.21, CPU) finds
# it in scikit-image's photographs: box (x1, y1, x2, y2), then landmarks x1..x5, y1..y5.
REFERENCE = {
    "astronaut": ([181.598, 63.726, 264.553, 171.079],
                  [203.541, 245.409, 224.224, 201.789, 244.389,
                   100.103, 102.238, 126.420, 138.587, 140.377]),
    "camera": ([197.393, 116.215, 255.756, 197.524],
               [233.855, 251.447, 250.419, 228.334, 243.049,
                146.897, 148.651, 166.630, 179.196, 180.075]),
}


def rgb(name):
  image = getattr(photos, name)()
  return np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_detector_matches_the_reference_implementation(name):
  faces = detect_faces(rgb(name))
  assert len(faces) == 1 and faces[0].score > 0.99
  box, marks = REFERENCE[name]
  np.testing.assert_allclose(faces[0].box, box, atol=0.01)
  np.testing.assert_allclose(faces[0].landmarks.T.reshape(-1), marks, atol=0.01)


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket", "coins", "brick", "gravel"])
def test_pictures_without_a_face_have_none(name):
  assert detect_faces(rgb(name)) == []


def test_auto_crop_frames_the_face_as_the_training_data_does(tmp_path):
  Image.fromarray(rgb("astronaut")).save(tmp_path / "a.jpg")
  image, how, notes = load_image(str(tmp_path / "a.jpg"), 64)
  assert how.startswith("face ") and notes == []
  again = detect_faces(np.asarray(Image.fromarray(image).resize((256, 256), Image.LANCZOS)))[0]
  eyes, mouth = again.landmarks[0:2].mean(0) / 256, again.landmarks[3:5].mean(0) / 256
  assert abs(1 / np.linalg.norm(mouth - eyes) - SYNTHTALK_FRAMING.scale) < 0.25
  assert abs((eyes + mouth)[1] / 2 - SYNTHTALK_FRAMING.center_y) < 0.02
  assert abs((eyes + mouth)[0] / 2 - 0.5) < 0.02


def test_the_largest_of_several_faces_is_used(tmp_path):
  face = rgb("astronaut")
  canvas = np.full((700, 1100, 3), 200, np.uint8)
  canvas[100:612, 50:562] = face
  canvas[400:656, 700:956] = np.asarray(Image.fromarray(face).resize((256, 256)))
  Image.fromarray(canvas).save(tmp_path / "two.png")
  _, how, _ = load_image(str(tmp_path / "two.png"), 64)
  assert "largest of 2 faces" in how
  left = int(how.split(" at (")[1].split(",")[0])
  assert left < 500                          # the big face on the left, not the small one


def test_no_face_warns_and_uses_the_whole_image(tmp_path):
  Image.fromarray(rgb("coffee")).save(tmp_path / "cup.jpg")
  image, how, notes = load_image(str(tmp_path / "cup.jpg"), 64)
  assert how == "whole image (no face found)" and image.shape == (64, 64, 3)
  assert notes == ["no face found in cup.jpg: the whole image is used, padded to a square"]
  with pytest.raises(TalkjaxError, match="cup.jpg: no face found"):
    load_image(str(tmp_path / "cup.jpg"), 64, "face")


def test_framing_constants_follow_the_synthtalk_renderer():
  from talkjax_datasets.synthtalk import render
  face_h = 0.58                                          # the middle of identity's range
  eye, mouth = -0.12 * face_h, 0.45 * face_h             # render.py's eye_y and mouth
  assert abs(2 * render.ZOOM / (mouth - eye) - SYNTHTALK_FRAMING.scale) < 0.01
  middle = render.FACE_CY + (eye + mouth) / 2
  assert abs((middle / render.ZOOM + 1) / 2 - SYNTHTALK_FRAMING.center_y) < 0.001


# ---- the image corpus -----------------------------------------------------------------------

def marker_image():
  """40 x 60 grey with a red block at the top left: orientation is visible."""
  image = np.full((40, 60, 3), 128, np.uint8)
  image[:10, :10] = (255, 0, 0)
  return image


def test_exif_rotation_is_applied(tmp_path):
  exif = Image.Exif()
  exif[0x0112] = 6                           # shown rotated 90 degrees clockwise
  Image.fromarray(marker_image()).save(tmp_path / "r.jpg", exif=exif, quality=95)
  image, _, _ = load_image(str(tmp_path / "r.jpg"), 60, "none")
  tall = np.asarray(Image.fromarray(image).resize((40, 60)))   # back to the shown 40 x 60
  assert tall[:10, -10:, 0].mean() > 200 and tall[:10, :10, 0].mean() < 180


def test_cmyk_jpeg_keeps_its_colours(tmp_path):
  Image.fromarray(marker_image()).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
  image, _, _ = load_image(str(tmp_path / "c.jpg"), 60, "none")
  red = np.asarray(Image.fromarray(image).resize((60, 40)))[2:8, 2:8].mean((0, 1))
  assert red[0] > 200 and red[1] < 60 and red[2] < 60


@pytest.mark.parametrize("suffix", ["gif", "webp"])
def test_animated_images_give_their_first_frame(tmp_path, suffix):
  frames = [Image.fromarray(np.full((48, 48, 3), v, np.uint8)) for v in (30, 200, 90)]
  frames[0].save(tmp_path / f"a.{suffix}", save_all=True, append_images=frames[1:], duration=40,
                 lossless=True)
  image, _, notes = load_image(str(tmp_path / f"a.{suffix}"), 48, "center")
  assert abs(int(image.mean()) - 30) <= 2
  assert notes == [f"a.{suffix} is animated (3 frames): the first frame is used"]


def test_16_bit_grey_and_palette_pngs_keep_their_values(tmp_path):
  ramp = np.linspace(0, 65535, 64).astype(np.uint16)[None].repeat(64, 0)
  Image.fromarray(ramp).save(tmp_path / "g16.png")
  image, _, _ = load_image(str(tmp_path / "g16.png"), 64, "none")
  np.testing.assert_allclose(image[5, :, 0], ramp[0] / 257, atol=1)
  assert np.all(np.diff(image[5, :, 0].astype(int)) >= 0)
  palette = Image.fromarray(marker_image()).quantize(4)
  palette.save(tmp_path / "p.png")
  image, _, _ = load_image(str(tmp_path / "p.png"), 60, "none")
  assert tuple(np.asarray(Image.fromarray(image).resize((60, 40)))[3, 3]) == (255, 0, 0)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
  (tmp_path / "bomb.png").write_bytes(png_claiming(30000, 30000))
  with pytest.raises(TalkjaxError, match="bomb.png: the image declares more pixels than the limit"):
    load_image(str(tmp_path / "bomb.png"), 64)


def test_size_rules_are_one_rule(tmp_path):
  for side in (1, 24):
    Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(tmp_path / f"s{side}.png")
    with pytest.raises(TalkjaxError, match="too small to show a face .the short side must be "
                                           "at least 32 px"):
      load_image(str(tmp_path / f"s{side}.png"), 64)
  Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "s40.png")
  _, _, notes = load_image(str(tmp_path / "s40.png"), 64, "center")
  assert notes == ["s40.png: the portrait is 40x40 px, upscaled to the model's 64x64: expect a "
                   "soft video"]


def test_a_folder_is_neither_image_nor_audio(tmp_path):
  with pytest.raises(TalkjaxError, match="is a folder, not an image"):
    load_image(str(tmp_path), 64)
  with pytest.raises(TalkjaxError, match="is a folder, not an audio file"):
    load_request_audio(str(tmp_path))


# ---- the audio corpus -----------------------------------------------------------------------

def test_a_wav_whose_header_lies_is_used_and_warned_about(tmp_path):
  speech = (np.random.default_rng(0).standard_normal(16000 * 7 + 8000) * 0.1).astype(np.float32)
  soundfile.write(tmp_path / "full.wav", speech, 16000, subtype="PCM_16")
  (tmp_path / "cut.wav").write_bytes((tmp_path / "full.wav").read_bytes()[:44 + 2 * 1280])
  notes = []
  audio = load_request_audio(str(tmp_path / "cut.wav"), notes=notes)
  assert len(audio) == 1280
  assert notes == ["cut.wav: the header promises 7.50 s but the file holds 0.08 s (cut off?): "
                   "only what is there is used"]
  notes = []
  load_request_audio(str(tmp_path / "full.wav"), notes=notes)
  assert notes == []


def test_zero_channel_and_nan_audio_are_clear_errors(tmp_path):
  # A WAV header with 0 channels.
  fmt = struct.pack("<HHIIHH", 1, 0, 16000, 0, 0, 16)
  body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 4) + b"\0" * 4
  (tmp_path / "zero.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
  with pytest.raises(TalkjaxError, match="zero.wav: cannot decode audio"):
    load_audio(tmp_path / "zero.wav")
  bad = np.zeros(16000, np.float32)
  bad[100] = np.nan
  soundfile.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
  with pytest.raises(TalkjaxError, match="nan.wav: audio contains NaN"):
    load_audio(tmp_path / "nan.wav")


def test_silence_is_valid_and_warned_about(tmp_path):
  soundfile.write(tmp_path / "quiet.wav", np.zeros(16000, np.float32), 16000)
  notes = []
  audio = load_request_audio(str(tmp_path / "quiet.wav"), notes=notes)
  assert len(audio) == 16000 and notes == ["the audio is silent: the face will barely move"]


def test_a_reference_clip_is_cropped_once_on_its_first_frame():
  """The crop box is the first frame's, kept for every frame: the face moving in the clip
  moves in the crop (a crop that followed it would hide the motion the clip shows)."""
  from talkjax.pipelines.inputs import load_reference_clip
  photo = photos.astronaut()
  first, moved = photo[:, :490], photo[:, 20:510]          # the face 20 px further left
  clip = load_reference_clip(np.stack([first, moved]), 64, "auto", frames=2)
  assert clip.image.shape == (2, 64, 64, 3) and clip.crop.startswith("face ")
  np.testing.assert_array_equal(clip.image[0], load_image(first, 64, "auto").image)
  followed = load_image(moved, 64, "auto").image            # re-detected: the face back in place
  step = lambda a, b: float(np.abs(a.astype(int) - b.astype(int)).mean())
  assert step(followed, clip.image[0]) < 0.5 * step(clip.image[1], clip.image[0])


def test_a_reference_clip_is_read_at_the_model_rate_and_repeated_when_short(tmp_path):
  from talkjax.data.video_io import write_mp4
  from talkjax.pipelines.inputs import load_reference_clip
  frames = np.zeros((12, 40, 64, 3), np.uint8)
  frames[:] = (np.arange(12) * 20)[:, None, None, None]
  write_mp4(tmp_path / "fast.mp4", frames, 50)              # 50 fps: every other frame at 25
  clip = load_reference_clip(tmp_path / "fast.mp4", 32, "center", frames=4)
  assert clip.image.shape == (4, 32, 32, 3) and clip.crop == "center square 40x40 at (12, 0)"
  np.testing.assert_allclose(clip.image.mean((1, 2, 3)), [0, 40, 80, 120], atol=3)
  assert clip.warnings == []
  short = load_reference_clip(tmp_path / "fast.mp4", 32, "center", frames=8)
  np.testing.assert_allclose(short.image.mean((1, 2, 3)), [0, 40, 80, 120, 160, 200, 0, 40],
                             atol=3)
  assert short.warnings == ["fast.mp4 holds 6 frames at 25 fps; the style is read from 8 "
                            "(0.3 s): its frames are repeated"]
  with pytest.raises(TalkjaxError, match=r"uint8 frames \(T, H, W, 3\)"):
    load_reference_clip(frames.astype(np.float32), 32, frames=4)
  with pytest.raises(TalkjaxError, match="video file not found"):
    load_reference_clip(tmp_path / "missing.mp4", 32, frames=4)
  (tmp_path / "text.mp4").write_text("not a video")
  with pytest.raises(TalkjaxError, match="text.mp4.*cannot be decoded"):
    load_reference_clip(tmp_path / "text.mp4", 32, frames=4)

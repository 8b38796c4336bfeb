"""The web page of `talkjax serve` in a real headless Chromium (Debian's, driven by
Playwright): upload a portrait and a sound file, follow the progress bar, play the video.

Needs Debian's Chromium (`apt-get install chromium`; .ci/run installs it) and fails, saying
so, without it. A screenshot of the finished page is kept in $TALKJAX_ARTEFACTS (default test-artefacts/).
"""

import os
import pathlib
import shutil

import numpy as np
import pytest
import soundfile
from PIL import Image

from talkjax.commands.demo import shipped_model
from talkjax.pipelines.pipeline import Pipeline
from talkjax.serve.jobs import Service
from talkjax.serve.server import running
from talkjax_datasets.synthtalk.clip import make_clip
from talkjax_datasets.synthtalk.spec import BuildSpec

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The closed network refuses Chromium's background connections; these keep it quiet.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # a microphone that plays a tone, allowed without asking: the record button's test
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
ARTEFACTS = pathlib.Path(os.environ.get("TALKJAX_ARTEFACTS", "test-artefacts"))


@pytest.fixture(scope="module")
def pipe():
  """The shipped model, loaded (and compiled) once for the page tests."""
  return Pipeline.load(shipped_model(), crop="center")


@pytest.fixture(scope="module")
def browser():
  if not os.path.exists(CHROMIUM):
    pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (the page needs a real browser)")
  from playwright.sync_api import sync_playwright
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    yield browser
    browser.close()


def test_the_page_turns_a_portrait_and_a_sound_file_into_a_playing_video(browser, pipe, tmp_path):
  seconds = 1.6
  clip = make_clip(BuildSpec(identities=2, clips=2, seconds=seconds, resolution=64, seed=5), 0)
  Image.fromarray(clip["frames"][0]).resize((120, 100)).save(tmp_path / "face.png")
  soundfile.write(tmp_path / "speech.wav", clip["audio"], 16000)
  (tmp_path / "notes.txt").write_text("not a picture")
  (tmp_path / "jobs").mkdir()
  service = Service(pipe, tmp_path / "jobs", max_batch=2, max_wait_ms=100)
  with running(service) as url:
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#option-steps")               # built from /info
    assert "ifmdm_stage2 model, 64 px, 25 fps" in page.inner_text("#model")
    assert page.is_hidden("#emotion-block") and page.is_hidden("#partner-block")

    # A file that is not an image: the page shows the server's one-line reason.
    page.set_input_files("#portrait", str(tmp_path / "notes.txt"))
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert "cannot be read" in page.inner_text("#error")

    page.set_input_files("#portrait", str(tmp_path / "face.png"))
    page.wait_for_function("document.getElementById('crop-preview').src.startsWith('data:image/png')")
    assert "center square 100x100" in page.inner_text("#crop-text")
    page.set_input_files("#audio", str(tmp_path / "speech.wav"))
    page.fill("#seed", "7")
    page.fill("#option-steps", "10")
    assert page.eval_on_selector("#option-mean", "e => [...e.options].map(o => o.value)") == \
        ["image", "previous", "none"]
    page.select_option("#option-std", "scale")
    page.fill("#option-std_scale", "1.5")
    page.click("#generate")
    # The progress bar moves, then the video arrives.
    page.wait_for_function("document.getElementById('progress').value > 0", timeout=120_000)
    page.wait_for_function("document.getElementById('result').readyState >= 1", timeout=120_000)
    duration = page.evaluate("document.getElementById('result').duration")
    assert abs(duration - seconds) < 0.1, duration        # the video is as long as the audio
    assert "done: 40 frames (1.6 s)" in page.inner_text("#status")
    assert page.get_attribute("#download", "href").endswith("/video")
    page.evaluate("(() => { const v = document.getElementById('result'); v.muted = true; "
                  "return v.play(); })()")
    page.wait_for_function("document.getElementById('result').currentTime > 0.3", timeout=30_000)
    decoded = page.evaluate("document.getElementById('result').webkitAudioDecodedByteCount")
    assert decoded > 0, "the video played without its sound track"
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "serve_page.png"), full_page=True)
    health = page.evaluate("fetch('/health').then((r) => r.json())")
  assert health["counters"]["done"] == 1 and health["counters"]["failed"] == 0
  # The page asked for 10 steps and std=scale: the job ran with them (its bucket's options say so).
  assert "steps=10" in health["compiled_buckets"][0]["options"]
  assert "std='scale'" in health["compiled_buckets"][0]["options"]
  assert (ARTEFACTS / "serve_page.png").stat().st_size > 10_000
  assert np.asarray(Image.open(ARTEFACTS / "serve_page.png")).std() > 5   # not a blank page


def test_a_microphone_recording_becomes_a_video(browser, pipe, tmp_path):
  """Record (the fake microphone's tone, as webm/opus from MediaRecorder), then generate."""
  clip = make_clip(BuildSpec(identities=2, clips=2, seconds=1.0, resolution=64, seed=6), 0)
  Image.fromarray(clip["frames"][0]).save(tmp_path / "face.png")
  (tmp_path / "jobs").mkdir()
  service = Service(pipe, tmp_path / "jobs", max_batch=1, max_wait_ms=0)
  with running(service) as url:
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#option-steps")
    page.set_input_files("#portrait", str(tmp_path / "face.png"))
    page.click("#record")
    page.wait_for_function("document.getElementById('record-state').textContent === 'recording...'")
    page.wait_for_timeout(1500)
    page.click("#record")
    page.wait_for_function("document.getElementById('record-state').textContent.startsWith('recorded')")
    page.click("#generate")
    page.wait_for_function("document.getElementById('result').readyState >= 1", timeout=120_000)
    duration = page.evaluate("document.getElementById('result').duration")
    status = page.inner_text("#status")
  assert 1.0 < duration < 3.0, duration             # about the 1.5 s recorded
  assert status.startswith("done:"), status


def test_a_family_with_emotion_and_partner_audio_shows_and_sends_them(browser, tmp_path):
  """The dyadic test-bed talker takes an emotion and the partner's track: the page offers
  both (the emotions from /info) and the job receives what was chosen."""
  from talkjax.cli import main
  assert main(["train", "--config", "testbed/talker", "--workdir", str(tmp_path / "talker"),
               "--set", "train.steps=2", "checkpoint.every=2", "checkpoint.async_save=False"]) == 0
  rng = np.random.default_rng(1)
  Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(tmp_path / "face.png")
  for name in ("me", "you"):
    soundfile.write(tmp_path / f"{name}.wav", (0.3 * rng.standard_normal(8000)).astype(np.float32),
                    16000)
  (tmp_path / "jobs").mkdir()
  service = Service(Pipeline.load(tmp_path / "talker", crop="center"), tmp_path / "jobs",
                    max_batch=1, max_wait_ms=0)
  with running(service) as url:
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#emotion-block:not(.hidden)")
    assert page.is_visible("#partner-audio")
    choices = page.eval_on_selector("#emotion", "e => [...e.options].map(o => o.value)")
    assert choices == ["", "neutral", "happy", "sad", "angry"]
    page.set_input_files("#portrait", str(tmp_path / "face.png"))
    page.set_input_files("#audio", str(tmp_path / "me.wav"))
    page.set_input_files("#partner-audio", str(tmp_path / "you.wav"))
    page.select_option("#emotion", "happy")
    page.click("#generate")
    page.wait_for_function("document.getElementById('result').readyState >= 1", timeout=120_000)
    job_id = page.get_attribute("#status", "data-job")
    job = page.evaluate(f"fetch('/jobs/{job_id}').then((r) => r.json())")
  assert job["status"] == "done" and job["emotion"] == "happy" and job["partner_audio"] is True

"""Audio front-end: loading, frame-aligned features, encoders, emotion.

Modules (imported on demand, so `import talkjax.audio` stays light):
  load      load_audio(path) -> mono float32 16 kHz, loudness normalised
  align     the pad/trim rule; per-frame, MEMO-window and IF-MDM 50 Hz feature layouts
  mel       log-mel / MFCC: librosa reference and a jit-able JAX path (SyncNet set + own)
  wav2vec2  Flax wav2vec2 (base / large) with Hugging Face weight import
  encoder   the small trainable audio encoder (default without wav2vec2 weights)
  emotion   MEMO's 9 emotions + null: classifier, 3 s / 1 s windows, per-clip mode
  bench     `talkjax bench audio`
See talkjax/audio/README.md.
"""

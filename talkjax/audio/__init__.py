"""Audio front-end: loading, frame-aligned features, encoders, emotion."""

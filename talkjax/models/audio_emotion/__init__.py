"""The `audio_emotion` family: MEMO's 9 emotions read from 3 s of speech (log-mel)."""

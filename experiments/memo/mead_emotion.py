"""MEMO's audio emotion classifier (family `audio_emotion`) trained on MEAD: 3 s of speech ->
one of MEMO's 9 emotions, windows at 0, 0.5 and 1 s of every front-view clip (MEAD's clips
last 2-6 s; windows that do not fit a clip are left out), labels from MEAD's folder names.
MEMO's sampling reads the emotion with it (model.emotion.classifier=runs/memo_mead_emotion).

  talkjax data build mead --raw ~/MEAD --out data/mead --resolution 512
  talkjax train --config experiments/memo/mead_emotion.py --workdir runs/memo_mead_emotion

Deviation, labelled: the release classifies emotion2vec features (talkjax convert memo
--emotion2vec imports them); this head learns log-mel prosody from MEAD's actors.
"""

from talkjax_experiments._real import real_data
from talkjax_experiments.memo._common import emotion_classifier_config


def get_config(arg=None):
  del arg
  c = emotion_classifier_config()
  c.data = real_data("mead", "data/mead", batch_size=64)
  c.data.offsets = (0.0, 0.5, 1.0)
  c.optimizer.lr = 1e-3
  c.optimizer.warmup_steps = 100
  c.train.steps = 20_000
  c.train.log_every = 100
  c.checkpoint.every = 2000
  return c

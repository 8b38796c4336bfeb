"""The tiny MEMO's audio emotion classifier (family `audio_emotion`): 3 s of SynthTalk
speech -> one of MEMO's 9 emotions. MEMO's sampling reads each clip's emotion with it
when a request names none (model.emotion.classifier in synthtalk_tiny_stage2.py):

  talkjax train --config experiments/memo/synthtalk_tiny_emotion.py --workdir runs/memo_tiny_emotion

Deviation, labelled: the release uses emotion2vec features; no such encoder exists for
SynthTalk's voices, so a small head learns log-mel prosody from scratch (a few minutes on
a CPU).
"""

from talkjax_experiments._synthtalk import tiny_synthtalk
from talkjax_experiments.memo._common import emotion_classifier_config


def get_config(arg=None):
  del arg
  c = emotion_classifier_config()
  c.data.update(tiny_synthtalk())
  c.data.offsets = (0.0, 0.25, 0.5, 0.75, 1.0)   # window starts (s) in each 4 s clip
  c.data.batch_size = 32
  c.data.num_examples = 0
  c.data.eval_examples = 0
  c.optimizer.lr = 1e-3
  c.optimizer.warmup_steps = 50
  c.train.steps = 1500
  c.train.log_every = 100
  c.checkpoint.every = 500
  return c

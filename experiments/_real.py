"""Real-dataset settings the families' experiments share (not an experiment itself).

A config reads one built dataset (`kind` + `path`) or a weighted mixture of several
(`mixture`: "PATH:WEIGHT" entries, any kinds built at one fps and resolution). Build them
first (datasets/<kind>/README.md):

  talkjax data build hdtf --raw ~/HDTF --out data/hdtf --resolution 512
  talkjax data build mead --raw ~/MEAD --out data/mead --resolution 512
"""

import ml_collections


def real_data(kind: str, path: str, *, mixture=(), batch_size: int = 32):
  d = ml_collections.ConfigDict()
  d.kind = kind              # mead | hdtf | dyconv | clips (what `path` holds)
  d.path = path
  d.mixture = tuple(mixture)  # () = `path` alone
  d.build_if_missing = False
  d.batch_size = batch_size
  d.num_examples = 0
  d.eval_examples = 0
  d.worker_count = 8         # Grain worker processes per host (decoding JPEGs is the cost)
  d.shuffle = True
  d.stride = 4
  return d

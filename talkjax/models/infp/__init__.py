"""INFP: dyadic talking and listening heads from two audio tracks (arXiv 2412.04037).

One portrait alternates between speaking and listening, driven only by the agent's own
track and the partner's track: no role label reaches the model anywhere.

- imitation.py  stage 1: motion-based head imitation (a motion encoder over the regionally
                masked face, an appearance encoder, the shared warping renderer)
- guider.py     stage 2: the Interactive Motion Guider (verbal and non-verbal memory banks)
- denoiser.py   stage 2: the denoising transformer [self -> motion -> temporal attention]
- builders.py   networks from configs; the trained stage 1 that stage 2 reads
- data.py       frame pairs (stage 1); cached motion codes of dyadic clips in windows (stage 2)
- tasks.py      what the trainer runs: Stage1Task, Stage2Task
- generate.py   the generation hook: portrait + two tracks -> motion -> frames, chunk by chunk

Registered in talkjax/models/__init__.py; configs in experiments/infp/.
"""

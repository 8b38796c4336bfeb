"""IF-MDM: implicit motion autoencoder + motion diffusion transformer (arXiv 2412.04000).

- autoencoder.py  stage 1's networks: a warping motion autoencoder and its critic
- motion.py       stage 2's network: the adaLN-Zero motion DiT
- builders.py     networks from configs; the trained stage 1 that stage 2 reads
- data.py         frame pairs (stage 1); cached motion codes cut into windows (stage 2)
- tasks.py        what the trainer runs: Stage1Task, Stage2Task
- generate.py     the generation hook: image + audio -> motion -> frames, chunk by chunk

Registered in talkjax/models/__init__.py; configs in experiments/ifmdm/.
"""

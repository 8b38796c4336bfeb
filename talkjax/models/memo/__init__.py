"""MEMO: memory-guided emotion-aware latent video diffusion (arXiv 2412.04448).

networks.py: the release's four networks (ReferenceNet, DiffusionNet with reference, audio
and memory modules, image_proj, audio_proj) on the shared SD UNet; model.py: a clip as
pure functions (condition, remember, denoise); tasks.py: rectified-flow training.
"""

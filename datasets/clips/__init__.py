"""Any folder of talking-face videos with sound (the user's own, VoxCeleb- or CelebV-style)."""

"""talkjax: audio-driven talking-head generation in JAX/Flax.

Three model families share one toolkit: `memo` (latent video diffusion with a
linear-attention memory), `ifmdm` (implicit motion autoencoder + motion diffusion
transformer) and `infp` (dyadic speaking/listening motion generation).
"""

__version__ = "0.1.0"

from talkjax.errors import TalkjaxError  # noqa: E402,F401

"""The `vae` family: trains an SD-layout image autoencoder (talkjax/nn/vae.py) from scratch,
for latent families (MEMO) at sizes with no pretrained VAE (the tiny SynthTalk configs)."""

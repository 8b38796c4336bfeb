"""Diffusion objectives, noise schedules, samplers under lax.scan, classifier-free guidance.

Model-agnostic: a sampler takes a function `model(x_t, t) -> prediction`; models/ decide
what the prediction is (noise, v, x0 or a flow velocity).
"""

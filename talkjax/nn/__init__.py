"""Shared Flax Linen blocks. Nothing here imports talkjax.models."""

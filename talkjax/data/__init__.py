"""Grain input pipelines shared by every model family."""

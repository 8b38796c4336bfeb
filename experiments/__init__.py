"""Experiment configs, one file per model x data x size; installed as talkjax_experiments."""

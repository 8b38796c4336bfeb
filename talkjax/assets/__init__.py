"""Trained weights that ship with talkjax (the demo model)."""

"""TFDS builders for talking-head datasets; installed as talkjax_datasets."""

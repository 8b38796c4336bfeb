"""SynthTalk: the built-in procedural talking-head dataset."""

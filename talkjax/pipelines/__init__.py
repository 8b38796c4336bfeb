"""Generation pipelines: from trained checkpoints (or random weights, for speed) to frames."""

"""MEMO (the memo family) experiments."""

"""MEAD: 60 actors speaking with 8 emotions at 3 intensities, filmed from 7 views."""

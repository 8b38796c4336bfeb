"""HDTF: high-resolution YouTube talking faces, cut into clips with annotated crops."""

"""Frames in: decoding, validating and preprocessing images for the backbone."""

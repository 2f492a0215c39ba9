"""Few-shot adapter training (Lightning + albumentations), feature cache, model registry."""

"""The text side: prompt ensembles (pure) and their cached embeddings."""

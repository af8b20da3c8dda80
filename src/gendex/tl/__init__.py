"""Tools: sample embeddings, differential expression (classical and generative), comparison, enrichment."""

from ._embedding import mds, pca

__all__ = ["mds", "pca"]

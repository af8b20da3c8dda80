"""Tools: differential expression (classical and generative), comparison, enrichment, evaluation."""

from ._compare import compare_de

__all__ = ["compare_de"]

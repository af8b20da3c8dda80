"""Tools: differential expression (classical and generative), comparison, enrichment, evaluation."""

from ._deseq2 import deseq2

__all__: list[str] = ["deseq2"]

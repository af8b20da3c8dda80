"""Tools: differential expression (classical and generative), comparison, enrichment, evaluation."""

__all__: list[str] = []

"""Tools: differential expression (classical and generative), comparison, enrichment, evaluation."""

from ._compare_enrichment import compare_enrichment
from ._enrich import enrich

__all__: list[str] = ["compare_enrichment", "enrich"]

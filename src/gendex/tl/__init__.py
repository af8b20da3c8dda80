"""Tools: differential expression (classical and generative), comparison, enrichment, evaluation."""

from ._compare import compare_de
from ._evaluate import evaluate_de
from ._limma import limma_voom
from ._ttest import ttest

__all__ = ["compare_de", "evaluate_de", "limma_voom", "ttest"]

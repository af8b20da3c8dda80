"""Tools: differential expression (classical and generative), comparison, enrichment, evaluation."""

from ._evaluate import evaluate_de
from ._limma import limma_voom
from ._ttest import ttest

__all__: list[str] = ["evaluate_de", "limma_voom", "ttest"]

"""Tools: sample embeddings, differential expression (classical and generative), comparison, enrichment."""

from ._compare import compare_de
from ._embedding import mds, pca
from ._evaluate import evaluate_de
from ._limma import limma_voom
from ._ttest import ttest

__all__ = ["compare_de", "evaluate_de", "limma_voom", "mds", "pca", "ttest"]

"""Tools: sample embeddings, differential expression (classical and generative), comparison, enrichment."""

from ._compare import compare_de
from ._compare_enrichment import compare_enrichment
from ._deseq2 import deseq2
from ._embedding import mds, pca
from ._enrich import enrich
from ._evaluate import evaluate_de
from ._generative_de import generative_de
from ._limma import limma_voom
from ._nbvae import latent_path, nbvae
from ._ttest import ttest

__all__ = [
    "compare_de",
    "compare_enrichment",
    "deseq2",
    "enrich",
    "evaluate_de",
    "generative_de",
    "latent_path",
    "limma_voom",
    "mds",
    "nbvae",
    "pca",
    "ttest",
]

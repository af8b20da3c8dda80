"""Tools: sample embeddings, differential expression (classical and generative), comparison, enrichment."""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ._pydeseq2_inference import BatchedInference


def __getattr__(name: str) -> Any:
    # lazy: BatchedInference subclasses pydeseq2's Inference, which `import gendex` should not pay for
    if name == "BatchedInference":
        from ._pydeseq2_inference import BatchedInference

        return BatchedInference
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BatchedInference",
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

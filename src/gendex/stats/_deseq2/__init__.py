"""Batched DESeq2 engine: R DESeq2's algorithms vectorised over genes in torch float64."""

from ._fit import DESeq2Fit, deseq2_fit
from ._inference import BatchedInference
from ._results import deseq2_lrt, deseq2_wald, independent_filtering, lowess

__all__ = [
    "BatchedInference",
    "DESeq2Fit",
    "deseq2_fit",
    "deseq2_lrt",
    "deseq2_wald",
    "independent_filtering",
    "lowess",
]

"""Batched DESeq2 engine: R DESeq2's algorithms vectorised over genes (numpy, or torch float64)."""

from ._fit import DESeq2Fit, deseq2_fit
from ._glm import glm_loglik
from ._results import NA_REASONS, RESULT_COLUMNS, deseq2_lrt, deseq2_wald, independent_filtering, na_reasons

__all__ = [
    "NA_REASONS",
    "RESULT_COLUMNS",
    "DESeq2Fit",
    "deseq2_fit",
    "deseq2_lrt",
    "deseq2_wald",
    "glm_loglik",
    "independent_filtering",
    "na_reasons",
]

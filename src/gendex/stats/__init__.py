"""Pure array kernels (no AnnData): size factors, multiple testing, embeddings, DESeq2, limma/voom, NB helpers."""

import warnings
from typing import Any

from ._ash import AshPosterior, ash, posterior_fdr
from ._compare import compare_calls
from ._deseq2 import DESeq2Fit, deseq2_fit, deseq2_lrt, deseq2_wald
from ._embedding import classical_mds, leading_logfc_distances, pca
from ._enrich import gsea_leading_edge, ora_test
from ._limma import (
    EBayesResult,
    LinearFit,
    VoomResult,
    contrasts_fit,
    ebayes,
    fit_f_dist,
    lm_fit,
    squeeze_var,
    tmixture,
    top_table,
    trigamma_inverse,
    voom,
)
from ._lowess import lowess
from ._metrics import auroc, average_precision, confusion_rates, fdr_curve, precision_recall_curve, roc_curve
from ._multitest import bh_adjust
from ._norm_factors import calc_norm_factors_tmm
from ._size_factors import size_factors_poscounts, size_factors_ratio
from ._ttest import TTestResult, ttest_ind


def __getattr__(name: str) -> Any:
    if name == "BatchedInference":
        # Deprecated alias (0.1): the PyDESeq2 adapter is not a kernel; it lives in ``gendex.tl``. The one import of
        # a higher layer from ``stats``, allowed by tests/test_layering.py until the alias is removed.
        warnings.warn(
            "`gendex.stats.BatchedInference` moved to `gendex.tl.BatchedInference`; the old name will be removed "
            "in gendex 0.2",
            FutureWarning,
            stacklevel=2,
        )
        from ..tl._pydeseq2_inference import BatchedInference

        return BatchedInference
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AshPosterior",
    "DESeq2Fit",
    "EBayesResult",
    "LinearFit",
    "TTestResult",
    "VoomResult",
    "ash",
    "auroc",
    "average_precision",
    "bh_adjust",
    "calc_norm_factors_tmm",
    "classical_mds",
    "compare_calls",
    "confusion_rates",
    "contrasts_fit",
    "deseq2_fit",
    "deseq2_lrt",
    "deseq2_wald",
    "ebayes",
    "fdr_curve",
    "fit_f_dist",
    "gsea_leading_edge",
    "leading_logfc_distances",
    "lm_fit",
    "lowess",
    "ora_test",
    "pca",
    "posterior_fdr",
    "precision_recall_curve",
    "roc_curve",
    "size_factors_poscounts",
    "size_factors_ratio",
    "squeeze_var",
    "tmixture",
    "top_table",
    "trigamma_inverse",
    "ttest_ind",
    "voom",
]

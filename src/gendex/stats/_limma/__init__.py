"""limma-voom as vectorised numpy/scipy kernels, one module per step: lmFit, eBayes, topTable, voom.

An independent BSD-licensed implementation of the published algorithms: voom (Law et al. 2014) and linear models
with empirical Bayes moderation (Smyth 2004). TMM normalisation lives in :mod:`gendex.stats._norm_factors` and R's
``lowess`` in :mod:`gendex.stats._lowess` (both re-exported here). Every kernel takes plain arrays; count and
expression matrices are **samples x genes**, as in AnnData. Per-gene results are arrays over genes.
"""

from .._lowess import lowess
from .._norm_factors import calc_norm_factors_tmm
from ._ebayes import EBayesResult, ebayes, fit_f_dist, squeeze_var, tmixture, trigamma_inverse
from ._lmfit import LinearFit, contrasts_fit, lm_fit
from ._toptable import top_table
from ._voom import VoomResult, voom

__all__ = [
    "EBayesResult",
    "LinearFit",
    "VoomResult",
    "calc_norm_factors_tmm",
    "contrasts_fit",
    "ebayes",
    "fit_f_dist",
    "lm_fit",
    "lowess",
    "squeeze_var",
    "tmixture",
    "top_table",
    "trigamma_inverse",
    "voom",
]

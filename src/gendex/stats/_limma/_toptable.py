"""limma's ``topTable`` for one coefficient of a moderated fit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._multitest import bh_adjust
from ._ebayes import EBayesResult
from ._lmfit import LinearFit


def top_table(
    fit: LinearFit, eb: EBayesResult, *, coef: int = 0, genes: Sequence[str] | None = None, sort: bool = False
) -> pd.DataFrame:
    """One contrast's results table (limma's ``topTable(n=Inf)``) with BH-adjusted p-values.

    Parameters
    ----------
    fit
        The fit passed to :func:`ebayes`.
    eb
        Its :func:`ebayes` result.
    coef
        Index of the coefficient or contrast.
    genes
        Gene names for the index.
    sort
        Sort by decreasing B statistic, as ``topTable`` does by default; otherwise keep gene order.

    Returns
    -------
    DataFrame with ``logFC, AveExpr, t, P.Value, adj.P.Val, B`` and the standard error ``SE``
    (``sqrt(s2_post) * stdev_unscaled``).
    """
    if not 0 <= coef < fit.coefficients.shape[1]:
        raise ValueError(f"`coef` must index one of the {fit.coefficients.shape[1]} coefficients, got {coef}")
    p = eb.p_value[:, coef]
    table = pd.DataFrame(
        {
            "logFC": fit.coefficients[:, coef],
            "AveExpr": fit.amean,
            "t": eb.t[:, coef],
            "P.Value": p,
            "adj.P.Val": bh_adjust(p),
            "B": eb.lods[:, coef],
            "SE": fit.stdev_unscaled[:, coef] * np.sqrt(eb.s2_post),
        },
        index=None if genes is None else pd.Index([str(g) for g in genes]),
    )
    if sort:
        table = table.iloc[np.argsort(-table["B"].to_numpy(), kind="stable")]
    return table

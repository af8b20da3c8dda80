"""``pp.vst`` and ``pp.rlog``: R DESeq2's transformations for PCA, clustering and heatmaps, into ``layers``."""

from __future__ import annotations

from typing import Literal

import numpy as np
from anndata import AnnData

from .._design import design_matrix
from .._lazy import is_dask
from .._validation import (
    check_backed_writes,
    check_in_memory,
    check_no_empty_samples,
    check_not_backed,
    check_positive_obs,
    get_counts,
    get_matrix,
    obs_table,
    scan_counts,
)
from ..stats._deseq2._transform import rlog as _rlog
from ..stats._deseq2._transform import vst as _vst
from ..stats._deseq2._transform import vst_lazy as _vst_lazy

_FIT_TYPES = ("parametric", "local", "mean")


def _prepare(adata, *, blind, fit_type, design, layer, size_factor_key, copy, lazy=False):
    """Checked inputs: counts (a checked dask array when ``lazy`` and the counts are dask), design, size factors."""
    if lazy:
        check_backed_writes(adata, copy=copy)
    else:
        check_not_backed(adata, "pp.rlog")
    if fit_type not in _FIT_TYPES:
        raise ValueError(f"`fit_type` must be one of {_FIT_TYPES}, got {fit_type!r}")
    if not isinstance(blind, bool):
        raise TypeError(f"`blind` must be True or False, got {blind!r}")
    if not blind and design is None:
        raise ValueError("blind=False estimates the dispersions with a design: pass `design=` (e.g. '~condition')")
    if blind and design is not None:
        raise ValueError(f"`design` ({design!r}) is only used with blind=False; blind=True uses '~1' as R does")
    matrix = get_matrix(adata, layer, lazy=True)
    x = None if blind else design_matrix(obs_table(adata), design).to_numpy()
    sf = None if size_factor_key is None else check_positive_obs(adata, size_factor_key)
    if is_dask(matrix):
        if not lazy:
            check_in_memory(matrix, "`adata.X`" if layer is None else f"`adata.layers[{layer!r}]`", "pp.rlog")
        return scan_counts(adata, layer).x, x, sf
    counts = get_counts(adata, layer, lazy=True)
    check_no_empty_samples(counts, adata.obs_names)
    return counts, x, sf


def vst(
    adata: AnnData,
    *,
    blind: bool = True,
    fit_type: Literal["parametric", "local", "mean"] = "parametric",
    design: str | None = None,
    layer: str | None = "counts",
    nsub: int | None = 1000,
    size_factor_key: str | None = None,
    key_added: str = "vst",
    copy: bool = False,
) -> AnnData | None:
    """DESeq2's variance-stabilising transformation (R's ``vst``; ``nsub=None``: ``varianceStabilizingTransformation``).

    Size factors (median of ratios), gene-wise dispersions and the dispersion trend as ``DESeq()`` computes them,
    with an intercept-only design when ``blind`` (R's default, for quality assessment); R's ``vst`` fits the
    trend on ``nsub`` genes of mean normalised count above 5, spread evenly over their means. The transformation
    is the closed form of the parametric trend ``a0 + a1 / mean`` (of a constant dispersion for
    ``fit_type="mean"``), on the log2 scale: about ``log2`` of the normalised counts for large counts, with the
    variance held roughly constant over the mean. The values equal R's (DESeq2 1.38) to 1e-10 on GSE60450.
    Use the layer for PCA (``tl.pca(adata, layer="vst")``), clustering and heatmaps, not for DE tests.

    Dask counts (out of core) are transformed in blocks: the checks and size factors in three passes, the
    genes' means in a fourth, the ``nsub`` trend genes read into memory (all genes in blocks for
    ``nsub=None``); the layer is a lazy dask array with the counts' chunks.

    Parameters
    ----------
    adata
        Samples x genes AnnData with raw counts.
    blind
        Estimate dispersions ignoring the samples' groups (intercept only). ``False`` uses ``design``.
    fit_type
        Dispersion trend: ``"parametric"`` (R's default; falls back to ``"local"`` when it cannot be fitted, as
        R does), ``"local"`` or ``"mean"``.
    design
        Formula for the dispersions when ``blind=False``.
    layer
        Layer with the raw counts; None means ``X``.
    nsub
        Genes the trend is fitted on (R's ``vst``); None fits it on all genes (R's
        ``varianceStabilizingTransformation``), needed when fewer than ``nsub`` genes have a mean above 5.
    size_factor_key
        ``obs`` column of size factors to use instead of the median-of-ratios estimate.
    key_added
        Layer to write.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Sets ``adata.layers[key_added]`` (samples x genes, float) and ``adata.uns[key_added]`` (method, trend type
    and coefficients, parameters).

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=300, random_state=0)
    >>> gdx.pp.vst(adata, nsub=None)
    >>> adata.layers["vst"].shape
    (6, 300)
    """
    counts, x, sf = _prepare(
        adata,
        blind=blind,
        fit_type=fit_type,
        design=design,
        layer=layer,
        size_factor_key=size_factor_key,
        copy=copy,
        lazy=True,
    )
    if is_dask(counts):
        values, info = _vst_lazy(counts, design=x, size_factors=sf, fit_type=fit_type, nsub=nsub)
    else:
        values, info = _vst(counts, design=x, size_factors=sf, fit_type=fit_type, nsub=nsub)
        values = np.asarray(values, dtype=np.float64)
    if copy:
        adata = adata.copy()
    adata.layers[key_added] = values
    adata.uns[key_added] = {
        "method": "vst" if nsub is not None else "varianceStabilizingTransformation",
        "blind": blind,
        "design": "~1" if blind else design,
        "fit_type": info["fit_type"],
        "coefficients": info["coefficients"],
        "nsub": -1 if nsub is None else int(nsub),
        "layer": "X" if layer is None else layer,
    }
    return adata if copy else None


def rlog(
    adata: AnnData,
    *,
    blind: bool = True,
    fit_type: Literal["parametric", "local", "mean"] = "parametric",
    design: str | None = None,
    layer: str | None = "counts",
    size_factor_key: str | None = None,
    key_added: str = "rlog",
    copy: bool = False,
) -> AnnData | None:
    """DESeq2's regularised log (R's ``rlog``) into ``layers``.

    Dispersions and trend as for :func:`vst`; then, per gene, an NB GLM with one coefficient per sample whose
    coefficients are shrunk towards the gene's mean by a normal prior, the prior variance matching the upper 5%
    of the weighted observed log fold changes (R's ``rlogData``). The fitted log2 means are the values: close to
    ``log2`` of the normalised counts for well-expressed genes, pulled together for noisy low counts. Equal to
    R's (DESeq2 1.38) to 1e-9 on GSE60450. Slower than :func:`vst` (one GLM per gene with ``n + 1``
    coefficients): prefer :func:`vst` beyond a few dozen samples, as DESeq2's vignette does. It needs the counts
    in memory (dask or backed counts are refused, saying how to load them); :func:`vst` works on them in blocks.

    Parameters
    ----------
    adata, blind, fit_type, design, layer, size_factor_key, key_added, copy
        As in :func:`vst`.

    Returns
    -------
    Sets ``adata.layers[key_added]`` (samples x genes, float; genes with all-zero counts get 0) and
    ``adata.uns[key_added]`` (``beta_prior_var``, trend, parameters).

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=200, random_state=0)
    >>> gdx.pp.rlog(adata)
    >>> adata.layers["rlog"].shape
    (6, 200)
    """
    counts, x, sf = _prepare(
        adata, blind=blind, fit_type=fit_type, design=design, layer=layer, size_factor_key=size_factor_key, copy=copy
    )
    values, info = _rlog(counts, design=x, size_factors=sf, fit_type=fit_type)
    if copy:
        adata = adata.copy()
    adata.layers[key_added] = np.asarray(values, dtype=np.float64)
    adata.uns[key_added] = {
        "method": "rlog",
        "blind": blind,
        "design": "~1" if blind else design,
        "fit_type": info["fit_type"],
        "coefficients": info["coefficients"],
        "beta_prior_var": float(info["beta_prior_var"]),
        "layer": "X" if layer is None else layer,
    }
    return adata if copy else None

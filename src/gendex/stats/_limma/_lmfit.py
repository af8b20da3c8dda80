"""limma's ``lmFit`` and ``contrasts.fit``: weighted per-gene least squares, genes along the first axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class LinearFit:
    """Per-gene linear-model fit (limma's ``MArrayLM``), genes along the first axis.

    Attributes
    ----------
    coefficients
        Genes x coefficients estimates.
    stdev_unscaled
        Genes x coefficients unscaled standard errors (``sqrt(diag((X'WX)^-1))``).
    cov_unscaled
        Genes x coefficients x coefficients unscaled covariance ``(X'WX)^-1``.
    sigma
        Residual standard deviation per gene.
    df_residual
        Residual degrees of freedom per gene.
    amean
        Average (unweighted) expression per gene (limma's ``Amean``).
    coef_names
        Names of the coefficients (or contrasts).
    """

    coefficients: NDArray[np.float64]
    stdev_unscaled: NDArray[np.float64]
    cov_unscaled: NDArray[np.float64]
    sigma: NDArray[np.float64]
    df_residual: NDArray[np.float64]
    amean: NDArray[np.float64]
    coef_names: tuple[str, ...]


def _check_design(design: ArrayLike, n_samples: int) -> NDArray[np.float64]:
    x = np.asarray(design, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != n_samples:
        raise ValueError(f"the design must be a samples x coefficients matrix with {n_samples} rows, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("the design matrix has non-finite entries")
    rank = np.linalg.matrix_rank(x)
    if rank < x.shape[1]:
        raise ValueError(f"the design matrix is rank deficient (rank {rank} < {x.shape[1]} columns)")
    if n_samples <= x.shape[1]:
        raise ValueError(f"the design has {x.shape[1]} coefficients for {n_samples} samples: no residual df")
    return x


def lm_fit(
    expr: ArrayLike,
    design: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    coef_names: Sequence[str] | None = None,
) -> LinearFit:
    """Gene-wise (weighted) least squares of ``expr`` on ``design`` (limma's ``lmFit``), vectorised over genes.

    Parameters
    ----------
    expr
        Samples x genes finite expression values (e.g. log-CPM).
    design
        Samples x coefficients design matrix of full column rank.
    weights
        Samples x genes positive precision weights (e.g. from :func:`voom`); None fits ordinary least squares.
    coef_names
        Names of the design columns.

    Returns
    -------
    A :class:`LinearFit` with coefficients, unscaled standard errors and covariances, residual sd and df,
    and the average expression.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import lm_fit
    >>> design = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    >>> fit = lm_fit(np.random.default_rng(0).normal(size=(6, 5)), design)
    >>> fit.coefficients.shape
    (5, 2)
    """
    y = np.asarray(expr, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"`expr` must be a 2-d samples x genes array, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("`expr` has non-finite values (NaN/inf); lm_fit needs complete data")
    n, n_genes = y.shape
    x = _check_design(design, n)
    p = x.shape[1]
    names = tuple(str(c) for c in coef_names) if coef_names is not None else tuple(f"x{j}" for j in range(p))
    if len(names) != p:
        raise ValueError(f"{len(names)} coefficient names for {p} design columns")
    df = np.full(n_genes, float(n - p))
    if weights is None:
        q, r = np.linalg.qr(x)
        r_inv = np.linalg.inv(r)
        coef = (r_inv @ (q.T @ y)).T
        cov1 = r_inv @ r_inv.T
        resid = y - x @ coef.T
        sigma = np.sqrt(np.einsum("ig,ig->g", resid, resid) / df)
        cov = np.broadcast_to(cov1, (n_genes, p, p)).copy()
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != y.shape:
            raise ValueError(f"`weights` must have the shape of `expr` {y.shape}, got {w.shape}")
        if not (np.isfinite(w).all() and (w > 0).all()):
            raise ValueError("`weights` must be positive and finite")
        xtwx = np.einsum("ig,ia,ib->gab", w, x, x, optimize=True)
        xtwy = np.einsum("ig,ia,ig->ga", w, x, y, optimize=True)
        cov = np.linalg.inv(xtwx)
        coef = np.einsum("gab,gb->ga", cov, xtwy)
        resid = y - x @ coef.T
        sigma = np.sqrt(np.einsum("ig,ig,ig->g", w, resid, resid) / df)
    stdev = np.sqrt(np.einsum("gaa->ga", cov))
    return LinearFit(
        coefficients=coef,
        stdev_unscaled=stdev,
        cov_unscaled=cov,
        sigma=sigma,
        df_residual=df,
        amean=y.mean(axis=0),
        coef_names=names,
    )


def contrasts_fit(fit: LinearFit, contrasts: ArrayLike, *, names: Sequence[str] | None = None) -> LinearFit:
    """Re-express a fit in terms of contrasts of its coefficients (limma's ``contrasts.fit``).

    Parameters
    ----------
    fit
        Result of :func:`lm_fit`.
    contrasts
        Coefficients x contrasts matrix, or one contrast vector over the coefficients.
    names
        Names of the contrasts.

    Returns
    -------
    A :class:`LinearFit` whose coefficients are the contrasts.

    Notes
    -----
    The standard errors use each gene's own covariance matrix, so they are exact for weighted fits of any
    design; limma approximates them from one covariance matrix when the design is not orthogonal, which
    gives the same values for orthogonal designs and for contrasts that select a single coefficient.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import contrasts_fit, lm_fit
    >>> design = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    >>> fit = lm_fit(np.random.default_rng(0).normal(size=(6, 5)), design)
    >>> contrasts_fit(fit, [0, 1]).coefficients.shape
    (5, 1)
    """
    c = np.asarray(contrasts, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    p = fit.coefficients.shape[1]
    if c.ndim != 2 or c.shape[0] != p:
        raise ValueError(f"`contrasts` must have {p} rows (one per coefficient), got shape {c.shape}")
    if not np.isfinite(c).all() or not np.any(c != 0, axis=0).all():
        raise ValueError("each contrast must be finite and not all zero")
    k = c.shape[1]
    out_names = tuple(str(n) for n in names) if names is not None else tuple(f"contrast{j}" for j in range(k))
    if len(out_names) != k:
        raise ValueError(f"{len(out_names)} names for {k} contrasts")
    cov = np.einsum("ak,gab,bl->gkl", c, fit.cov_unscaled, c, optimize=True)
    return replace(
        fit,
        coefficients=fit.coefficients @ c,
        stdev_unscaled=np.sqrt(np.einsum("gkk->gk", cov)),
        cov_unscaled=cov,
        coef_names=out_names,
    )

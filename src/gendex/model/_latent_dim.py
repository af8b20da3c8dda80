"""The latent dimension from the data: parallel analysis of the residuals of log-normalised counts after the design.

The latent codes of the NB-VAE absorb the variation that the design (the decoder's covariates) does not explain,
as RUV/SVA factors do for linear models. How many codes the data support is read from the residuals
``R = (I - H) log1p(x / s)`` of the samples' log-normalised counts after the least-squares fit of the covariate
features ``[1, c]``: the eigenvalues of ``R R^T`` are compared with those of residuals whose genes were permuted
across samples independently (Horn's parallel analysis in Buja and Eyuboglu's form; each permuted gene is
projected on the residual space again and rescaled to its own residual variance), which keeps every gene's
variance and destroys the structure shared by genes. A dimension counts when its eigenvalue exceeds the
``quantile`` of the permuted eigenvalues of the same rank, for every dimension before it. The count is capped
so that each gene's GLM on ``[1, z, c]`` keeps at least ``MIN_RESIDUAL_DF`` residual degrees of freedom.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Residual degrees of freedom every gene's GLM ``[1, z, c]`` keeps (dispersions need some).
MIN_RESIDUAL_DF = 2
#: Upper bound of the automatic choice (more codes than this are asked for explicitly).
MAX_AUTO = 10


def max_latent(n_samples: int, n_cov_features: int) -> int:
    """Most latent dimensions the samples allow: ``n - (1 + f) - MIN_RESIDUAL_DF``."""
    return n_samples - 1 - n_cov_features - MIN_RESIDUAL_DF


def check_n_latent(n_latent: int, n_samples: int, n_cov_features: int) -> None:
    """Raise a ``ValueError`` naming the limit when ``n_latent`` leaves the gene GLMs too few degrees of freedom."""
    cap = max_latent(n_samples, n_cov_features)
    if n_latent > cap:
        raise ValueError(
            f"`n_latent={n_latent}` is too many latent dimensions for {n_samples} samples and {n_cov_features} "
            f"design feature(s): each gene's GLM on [1, z, covariates] needs {MIN_RESIDUAL_DF} residual degrees "
            f"of freedom, so at most {max(cap, 0)} latent dimension(s) fit; lower `n_latent` (or use "
            "`n_latent='auto'`), or drop design terms"
        )


def _residualise(u: np.ndarray, x: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(x)
    return u - q @ (q.T @ u)


def choose_n_latent(
    counts: np.ndarray,
    size_factors: np.ndarray,
    cov_features: np.ndarray,
    *,
    n_permutations: int = 5,
    quantile: float = 0.95,
    max_samples: int = 300,
    max_genes: int = 5000,
    min_mean: float = 20.0,
    random_state: int = 0,
) -> tuple[int, dict[str, Any]]:
    """Number of latent dimensions supported by the residual structure, and a record of the choice.

    ``counts`` ``(n, G)``, ``size_factors`` ``(n,)``, ``cov_features`` ``(n, f)``. At most ``max_samples``
    evenly spaced samples and at most ``max_genes`` genes with mean normalised count ``>= min_mean`` (at least
    the 500 largest) enter (the structure is shared by many genes). The result is at most
    ``min(MAX_AUTO, max_latent(n, f))`` and at least 1 without covariates (an unsupervised model needs a
    latent space); with covariates it is 0 when the residuals show no shared structure (every gene keeps its
    residual degrees of freedom for its dispersion). Raises a ``ValueError``
    when not even one dimension would fit.
    """
    n, f = counts.shape[0], cov_features.shape[1]
    cap = max_latent(n, f)
    if cap < (0 if f else 1):
        raise ValueError(
            f"{n} samples are too few for a latent space beside {f} design feature(s): each gene's GLM on "
            f"[1, z, covariates] needs {MIN_RESIDUAL_DF} residual degrees of freedom; add samples or drop design terms"
        )
    rows = np.arange(n) if n <= max_samples else np.linspace(0, n - 1, max_samples).astype(int)
    norm = counts[rows] / size_factors[rows, None]
    mean = norm.mean(0)
    # well-expressed genes only: at low counts the Poisson noise of log1p(x / s) depends on each sample's depth,
    # a sample-specific variance that the permutations destroy and that would count as shared structure
    n_use = min(max_genes, max(int((mean >= min_mean).sum()), min(500, int((mean > 0).sum()))))
    genes = np.argsort(mean)[::-1][:n_use]
    u = np.log1p(norm[:, genes])
    x = np.column_stack([np.ones(len(rows)), cov_features[rows]])
    resid = _residualise(u, x)
    df = len(rows) - np.linalg.matrix_rank(x)
    n_eig = max(min(df, cap + 1), 1)
    evals = np.sort(np.linalg.eigvalsh(resid @ resid.T))[::-1][:n_eig]
    rng = np.random.default_rng(random_state)
    norms = np.linalg.norm(resid, axis=0)
    null = np.empty((n_permutations, n_eig))
    for b in range(n_permutations):
        perm = np.argsort(rng.random(resid.shape), axis=0)
        shuffled = _residualise(np.take_along_axis(resid, perm, axis=0), x)
        # projecting a permuted column on the residual space loses ~p/n of its variance: restore each gene's
        # own residual variance, or the null eigenvalues come out too small and noise counts as structure
        shuffled *= norms / np.maximum(np.linalg.norm(shuffled, axis=0), 1e-300)
        null[b] = np.sort(np.linalg.eigvalsh(shuffled @ shuffled.T))[::-1][:n_eig]
    threshold = np.quantile(null, quantile, axis=0)
    above = evals > threshold
    k_data = int(np.argmin(above)) if not above.all() else int(above.size)
    k = int(min(max(k_data, 0 if f else 1), cap, MAX_AUTO))
    total = float(np.sum(resid**2))
    info = {
        "method": "parallel analysis of log1p(x / s) residuals after the design",
        "n_latent": k,
        "n_supported": k_data,
        "cap": int(min(cap, MAX_AUTO)),
        "variance_explained": (evals[: max(k, 1)] / total).round(4).tolist() if total > 0 else [],
        "eigenvalues": evals.round(4).tolist(),
        "null_quantile": threshold.round(4).tolist(),
        "n_permutations": n_permutations,
        "quantile": quantile,
    }
    return k, info

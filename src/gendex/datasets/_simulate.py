"""Simulators with known truth: negative-binomial bulk counts (the classroom data is in ``_classroom.py``)."""

from __future__ import annotations

import string

import numpy as np
import pandas as pd
from anndata import AnnData


def _group_labels(n_samples: int, n_groups: int) -> tuple[np.ndarray, list[str]]:
    if n_groups < 1:
        raise ValueError(f"`n_groups` must be >= 1, got {n_groups}")
    if n_samples < n_groups:
        raise ValueError(f"`n_samples` ({n_samples}) must be at least `n_groups` ({n_groups})")
    levels = list(string.ascii_uppercase[:n_groups]) if n_groups <= 26 else [f"G{i}" for i in range(n_groups)]
    codes = np.repeat(np.arange(n_groups), int(np.ceil(n_samples / n_groups)))[:n_samples]
    return codes, levels


def simulate_counts(
    n_samples: int = 12,
    n_genes: int = 5000,
    n_groups: int = 2,
    frac_de: float = 0.1,
    *,
    mean_log: float = np.log(150.0),
    mean_sdlog: float = 1.8,
    disp_asymptote: float = 0.05,
    disp_extra_poisson: float = 1.5,
    disp_scatter: float = 0.4,
    lfc_min: float = 0.5,
    lfc_scale: float = 0.8,
    size_factor_sdlog: float = 0.25,
    seed: int | None = 0,
) -> AnnData:
    """Simulate bulk RNA-seq counts from a negative binomial with known differential expression.

    Gene base means are log-normal (long-tailed, like real bulk data); the dispersion of each gene follows a
    DESeq2-style trend ``alpha(mu) = disp_asymptote + disp_extra_poisson / mu`` with log-normal gene-wise
    scatter; size factors are log-normal with geometric mean 1. A fraction ``frac_de`` of genes is
    differentially expressed: in every non-reference group its mean is multiplied by ``2**lfc`` with
    ``|lfc| = lfc_min + Exponential(lfc_scale)`` and a random sign (one draw per gene and group).

    Parameters
    ----------
    n_samples
        Number of samples, split as evenly as possible into groups ``A``, ``B``, ... in order.
    n_genes
        Number of genes.
    n_groups
        Number of groups in ``obs["condition"]``; the first (``A``) is the reference.
    frac_de
        Fraction of genes that are differentially expressed.
    mean_log, mean_sdlog
        Mean and sd of the natural log of the gene base means.
    disp_asymptote, disp_extra_poisson, disp_scatter
        Parameters of the dispersion trend and the sd of the gene-wise log-scatter around it.
    lfc_min, lfc_scale
        Smallest absolute log2 fold change of a DE gene, and the scale of its exponential excess.
    size_factor_sdlog
        Sd of the log size factors.
    seed
        Seed of the random generator; the same seed gives the same data.

    Returns
    -------
    AnnData of ``n_samples x n_genes`` with integer counts in ``X`` and ``layers["counts"]``,
    ``obs["condition"]`` (categorical) and ``obs["true_size_factor"]``, and in ``var``:
    ``is_de`` (bool), ``true_log2fc`` (``B`` vs ``A``; for more groups also ``true_log2fc_<level>`` for each
    non-reference level), ``true_base_mean`` and ``true_dispersion``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=100, seed=1)
    >>> adata.shape
    (6, 100)
    """
    if not 0.0 <= frac_de <= 1.0:
        raise ValueError(f"`frac_de` must lie in [0, 1], got {frac_de}")
    if n_genes < 1:
        raise ValueError(f"`n_genes` must be >= 1, got {n_genes}")
    rng = np.random.default_rng(seed)
    codes, levels = _group_labels(n_samples, n_groups)

    base_mean = np.exp(rng.normal(mean_log, mean_sdlog, size=n_genes))
    trend = disp_asymptote + disp_extra_poisson / base_mean
    dispersion = trend * np.exp(rng.normal(0.0, disp_scatter, size=n_genes))

    n_de = int(round(frac_de * n_genes))
    is_de = np.zeros(n_genes, dtype=bool)
    is_de[rng.choice(n_genes, size=n_de, replace=False)] = True
    lfc = np.zeros((n_groups, n_genes))
    for k in range(1, n_groups):
        magnitude = lfc_min + rng.exponential(lfc_scale, size=n_genes)
        sign = rng.choice([-1.0, 1.0], size=n_genes)
        lfc[k] = np.where(is_de, sign * magnitude, 0.0)

    log_sf = rng.normal(0.0, size_factor_sdlog, size=n_samples)
    size_factor = np.exp(log_sf - log_sf.mean())

    mu = size_factor[:, None] * base_mean[None, :] * np.exp2(lfc[codes])
    # NB(mean mu, dispersion alpha) as a gamma-Poisson mixture
    shape = 1.0 / dispersion
    lam = rng.gamma(shape[None, :], mu / shape[None, :])
    counts = rng.poisson(lam).astype(np.int64)

    obs = pd.DataFrame(
        {
            "condition": pd.Categorical([levels[c] for c in codes], categories=levels),
            "true_size_factor": size_factor,
        },
        index=[f"sample_{i:02d}" for i in range(n_samples)],
    )
    var = pd.DataFrame(
        {
            "is_de": is_de,
            "true_log2fc": lfc[1] if n_groups > 1 else np.zeros(n_genes),
            "true_base_mean": base_mean,
            "true_dispersion": dispersion,
        },
        index=[f"gene_{j:05d}" for j in range(n_genes)],
    )
    for k in range(2, n_groups):
        var[f"true_log2fc_{levels[k]}"] = lfc[k]
    if n_groups > 2:
        var[f"true_log2fc_{levels[1]}"] = lfc[1]
    adata = AnnData(X=counts, obs=obs, var=var)
    adata.layers["counts"] = counts.copy()
    adata.uns["simulation"] = {
        "method": "simulate_counts",
        "params": {
            "n_samples": n_samples,
            "n_genes": n_genes,
            "n_groups": n_groups,
            "frac_de": frac_de,
            "seed": -1 if seed is None else int(seed),
        },
    }
    return adata

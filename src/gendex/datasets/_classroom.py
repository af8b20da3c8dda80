"""The classroom workflow's data: log-normal expression, Control vs Treatment, with shifted genes and missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData


def simulate_shift(
    n_samples: int = 60,
    n_genes: int = 100,
    n_shift: int = 10,
    shift_size: float = 3.0,
    noise_sd: float = 0.2,
    missing_p: float = 0.0,
    seed: int | None = None,
) -> AnnData:
    """Simulate the classroom log-normal expression data: Control vs Treatment with shifted genes.

    Each gene has a log-scale base level drawn from ``Normal(2, 1)``; each value is
    ``exp(base + Normal(0, noise_sd))``. In the Treatment half of the samples, the first ``n_shift`` genes
    are multiplied by ``exp(shift_size)``. Each value is then set to NaN with probability ``missing_p``.

    Parameters
    ----------
    n_samples
        Number of samples; the first half is ``Control``, the rest ``Treatment``.
    n_genes
        Number of genes.
    n_shift
        Number of shifted genes (the first ``n_shift``).
    shift_size
        Shift on the natural-log scale.
    noise_sd
        Sd of the log-normal noise.
    missing_p
        Probability that a value is missing (NaN).
    seed
        Seed of the random generator; ``None`` draws fresh entropy.

    Returns
    -------
    AnnData with positive floats (and NaN) in ``X``, ``obs["condition"]`` (``Control``/``Treatment``) and
    ``var["is_shifted"]`` (bool).

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_shift(n_samples=20, n_genes=50, seed=0)
    >>> int(adata.var["is_shifted"].sum())
    10
    """
    if not 0 <= n_shift <= n_genes:
        raise ValueError(f"`n_shift` must lie in [0, n_genes={n_genes}], got {n_shift}")
    if not 0.0 <= missing_p < 1.0:
        raise ValueError(f"`missing_p` must lie in [0, 1), got {missing_p}")
    if n_samples < 2:
        raise ValueError(f"`n_samples` must be >= 2, got {n_samples}")
    rng = np.random.default_rng(seed)
    n_control = n_samples // 2
    treated = np.arange(n_samples) >= n_control
    base = rng.normal(2.0, 1.0, size=n_genes)
    log_x = base[None, :] + rng.normal(0.0, noise_sd, size=(n_samples, n_genes))
    is_shifted = np.arange(n_genes) < n_shift
    log_x[np.ix_(treated, is_shifted)] += shift_size
    x = np.exp(log_x)
    if missing_p > 0:
        x[rng.random(x.shape) < missing_p] = np.nan
    obs = pd.DataFrame(
        {"condition": pd.Categorical(np.where(treated, "Treatment", "Control"), categories=["Control", "Treatment"])},
        index=[f"sample_{i:03d}" for i in range(n_samples)],
    )
    var = pd.DataFrame({"is_shifted": is_shifted}, index=[f"gene_{j:04d}" for j in range(n_genes)])
    return AnnData(X=x, obs=obs, var=var)

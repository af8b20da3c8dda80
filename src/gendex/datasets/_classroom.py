"""The classroom workflow's data: log-normal expression, Control vs Treatment, with shifted genes and missing values.

:func:`simulate_classroom` regenerates the homework's data exactly (its distribution, parameters and order of
random draws, from a legacy ``numpy.random.RandomState``), so an answer can be checked against the same numbers;
:func:`simulate_shift` is gendex's own generator of the same design (modern generator, shifted genes first).
"""

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
    """Simulate log-normal expression, Control vs Treatment, with the first ``n_shift`` genes shifted.

    gendex's own generator of the classroom design, with simple names and the shifted genes first; for the
    homework's exact data (same draws given its seed) use :func:`gendex.datasets.simulate_classroom`.
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


def simulate_classroom(
    n_samples: int = 60,
    n_genes: int = 100,
    n_shift: int = 10,
    shift_size: float = 3.0,
    noise_sd: float = 0.2,
    missing_p: float = 0.0,
    *,
    random_state: int | None = 0,
) -> AnnData:
    """The classroom homework's simulation, draw for draw: log-normal expression with shifted genes.

    With the homework's ``random_state`` (its ``seed``) this returns exactly its data: the random numbers come
    from a legacy ``numpy.random.RandomState`` in the homework's order:

    1. a log-scale baseline per gene, ``Normal(1.5, 0.6)`` (``n_genes`` draws);
    2. per-value noise, ``Normal(0, noise_sd)`` (``n_samples x n_genes``, row by row); each value is
       ``exp(baseline + noise)``;
    3. the shifted genes, ``n_shift`` drawn without replacement; their Treatment values are multiplied by
       ``exp(shift_size)`` (a shift on the natural-log scale, ``shift_size / ln 2`` on log2);
    4. only when ``missing_p > 0``: one uniform per value; values below ``missing_p`` become NaN.

    The first ``n_samples // 2`` samples are Control, the rest Treatment. The homework's call
    ``simulate_dataset(n_samples=100, n_genes=1000, n_shift=10, shift_size=4, noise_sd=0.2, missing_p=0.05,
    seed=44)`` is ``simulate_classroom(100, 1000, 10, 4, 0.2, 0.05, random_state=44)``.

    Parameters
    ----------
    n_samples
        Number of samples (``S01``, ``S02``, ...).
    n_genes
        Number of genes (``Gene00001``, ...).
    n_shift
        Number of shifted genes, drawn at random.
    shift_size
        Shift on the natural-log scale (0: no gene is truly shifted, a null simulation).
    noise_sd
        Sd of the per-value log-normal noise.
    missing_p
        Probability that a value is missing (NaN).
    random_state
        Seed of the private ``RandomState`` (the homework's ``seed``); None draws fresh entropy.

    Returns
    -------
    AnnData of samples x genes with positive floats (and NaN) in ``X``; ``obs["condition"]``
    (``Control``/``Treatment``); ``var["is_shifted"]`` (bool: shifted by a non-zero ``shift_size``) and
    ``var["shift_rank"]`` (the order in which the shifted genes were drawn, 1..n_shift, 0 for the others: the
    homework's ``true_genes`` order); ``uns["simulate_classroom"]`` holds the parameters.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_classroom(100, 1000, 10, 4, 0.2, 0.05, random_state=44)
    >>> round(float(adata.X[0, 0]), 6)
    2.703283
    """
    if n_samples < 2:
        raise ValueError(f"`n_samples` must be >= 2, got {n_samples}")
    if n_genes < 1:
        raise ValueError(f"`n_genes` must be >= 1, got {n_genes}")
    if not 0 <= n_shift <= n_genes:
        raise ValueError(f"`n_shift` must lie in [0, n_genes={n_genes}], got {n_shift}")
    if not 0.0 <= missing_p < 1.0:
        raise ValueError(f"`missing_p` must lie in [0, 1), got {missing_p}")
    if not noise_sd >= 0 or not np.isfinite(shift_size):
        raise ValueError(f"`noise_sd` must be >= 0 and `shift_size` finite, got {noise_sd} and {shift_size}")
    rng = np.random.RandomState(random_state)
    baseline = rng.normal(loc=1.5, scale=0.6, size=n_genes)
    noise = rng.normal(0.0, noise_sd, size=(n_samples, n_genes))
    x = np.exp(baseline + noise)
    shifted = rng.choice(n_genes, size=n_shift, replace=False)
    treated = np.arange(n_samples) >= n_samples // 2
    x[np.ix_(treated, shifted)] *= np.exp(shift_size)
    if missing_p > 0:
        x[rng.rand(n_samples, n_genes) < missing_p] = np.nan
    rank = np.zeros(n_genes, dtype=np.int64)
    rank[shifted] = np.arange(1, n_shift + 1)
    obs = pd.DataFrame(
        {"condition": pd.Categorical(np.where(treated, "Treatment", "Control"), categories=["Control", "Treatment"])},
        index=[f"S{i + 1:02d}" for i in range(n_samples)],
    )
    var = pd.DataFrame(
        {"is_shifted": (rank > 0) & (shift_size != 0), "shift_rank": rank},
        index=[f"Gene{g + 1:05d}" for g in range(n_genes)],
    )
    params = {
        "n_samples": n_samples,
        "n_genes": n_genes,
        "n_shift": n_shift,
        "shift_size": float(shift_size),
        "noise_sd": float(noise_sd),
        "missing_p": float(missing_p),
    }
    if random_state is not None:
        params["random_state"] = int(random_state)
    return AnnData(X=x, obs=obs, var=var, uns={"simulate_classroom": params})

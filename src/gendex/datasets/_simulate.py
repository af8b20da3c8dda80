"""Simulators with known truth: negative-binomial bulk counts (the classroom data is in ``_classroom.py``)."""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._contrast import deprecated_argument

_UNSET = object()


def _group_labels(n_samples: int, n_groups: int) -> tuple[np.ndarray, list[str]]:
    if n_groups < 1:
        raise ValueError(f"`n_groups` must be >= 1, got {n_groups}")
    if n_samples < n_groups:
        raise ValueError(f"`n_samples` ({n_samples}) must be at least `n_groups` ({n_groups})")
    levels = list(string.ascii_uppercase[:n_groups]) if n_groups <= 26 else [f"G{i}" for i in range(n_groups)]
    codes = np.repeat(np.arange(n_groups), int(np.ceil(n_samples / n_groups)))[:n_samples]
    return codes, levels


def _design(
    n_samples: int | None, n_groups: int | None, group_sizes: Sequence[int] | None, n_donors: int | None
) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Group codes (contiguous blocks, reference first), levels and, for a paired design, donor codes."""
    if group_sizes is not None:
        sizes = [int(s) for s in group_sizes]
        if len(sizes) < 1 or min(sizes) < 1:
            raise ValueError(f"`group_sizes` must be one or more positive sizes, got {list(group_sizes)}")
        if n_donors is not None:
            raise ValueError("give either `group_sizes` (unpaired groups) or `n_donors` (each donor in every group)")
        for name, given, implied in (("n_samples", n_samples, sum(sizes)), ("n_groups", n_groups, len(sizes))):
            if given is not None and given != implied:
                raise ValueError(
                    f"`{name}={given}` disagrees with `group_sizes={sizes}` (which implies {implied}); drop `{name}`"
                )
        _, levels = _group_labels(sum(sizes), len(sizes))
        return np.repeat(np.arange(len(sizes)), sizes), levels, None
    n_groups = 2 if n_groups is None else n_groups
    if n_donors is not None:
        if n_donors < 1:
            raise ValueError(f"`n_donors` must be >= 1, got {n_donors}")
        if n_samples is not None and n_samples != n_donors * n_groups:
            raise ValueError(
                f"`n_samples={n_samples}` disagrees with `n_donors={n_donors}` x `n_groups={n_groups}` "
                "(each donor is sampled once in every group); drop `n_samples`"
            )
        codes, levels = _group_labels(n_donors * n_groups, n_groups)
        return codes, levels, np.tile(np.arange(n_donors), n_groups)
    codes, levels = _group_labels(12 if n_samples is None else n_samples, n_groups)
    return codes, levels, None


def _check_nonneg(**values: float) -> None:
    for name, value in values.items():
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"`{name}` must be a finite number >= 0, got {value}")


def _hidden_scores(rng: np.random.Generator, codes: np.ndarray, n_factors: int) -> np.ndarray:
    """Standard-normal factor scores, centred within each group and scaled to unit sd.

    Centred scores are uncorrelated with the groups in the sample, so the group means differ by exactly the
    true log fold changes.
    """
    scores = rng.normal(size=(codes.size, n_factors))
    for k in np.unique(codes):
        scores[codes == k] -= scores[codes == k].mean(axis=0)
    sd = scores.std(axis=0)
    return scores / np.where(sd > 0, sd, 1.0)


def simulate_counts(
    n_samples: int | None = None,
    n_genes: int = 5000,
    n_groups: int | None = None,
    frac_de: float = 0.1,
    *,
    group_sizes: Sequence[int] | None = None,
    n_donors: int | None = None,
    donor_sd: float = 0.5,
    n_batches: int = 1,
    batch_sd: float = 0.3,
    n_hidden_factors: int = 0,
    hidden_factor_sd: float = 0.5,
    mean_log: float = np.log(150.0),
    mean_sdlog: float = 1.8,
    disp_asymptote: float = 0.05,
    disp_extra_poisson: float = 1.5,
    disp_scatter: float = 0.4,
    disp_outlier_frac: float = 0.0,
    disp_outlier_fold: tuple[float, float] = (5.0, 50.0),
    lfc_min: float = 0.5,
    lfc_scale: float = 0.8,
    size_factor_sdlog: float = 0.25,
    random_state: int | None = 0,
    seed: object = _UNSET,
) -> AnnData:
    """Simulate bulk RNA-seq counts from a negative binomial with known differential expression.

    Gene base means are log-normal (long-tailed, like real bulk data); the dispersion of each gene follows a
    DESeq2-style trend ``alpha(mu) = disp_asymptote + disp_extra_poisson / mu`` with log-normal gene-wise
    scatter; size factors are log-normal with geometric mean 1. A fraction ``frac_de`` of genes is
    differentially expressed: in every non-reference group its mean is multiplied by ``2**lfc`` with
    ``|lfc| = lfc_min + Exponential(lfc_scale)`` and a random sign (one draw per gene and group).

    Optional structure, all off by default (the defaults give exactly the data of earlier releases), adds to
    each sample's log2 mean:

    - **hidden factors** (``n_hidden_factors``): sample scores (standard normal, centred within each group so
      that they are uncorrelated with the groups, unit sd) times per-gene loadings ``Normal(0,
      hidden_factor_sd)``. Unknown to any method, like the sources of variation that SVA/RUV estimate; with
      a few factors and ``hidden_factor_sd`` around 0.5 they explain far more of the variance between samples
      than a 10%-DE contrast.
    - **donors** (``n_donors``): a paired (blocked) design in which each donor is sampled once in every group,
      with per-gene donor effects ``Normal(0, donor_sd)`` shared by all samples of a donor.
    - **batches** (``n_batches``): per-gene batch effects ``Normal(0, batch_sd)``; batches are balanced
      across the groups (sample ``j`` of each group, or donor ``j``, is in batch ``j % n_batches``).

    Heavy-tailed dispersions: DESeq2's gene-wise estimates on real cohorts scatter with an sd of about 0.5-1 in
    log around the trend, with a few percent of genes 5-50x above it. ``disp_scatter=0.7,
    disp_outlier_frac=0.04`` gives that: a share ``disp_outlier_frac`` of genes has its dispersion multiplied
    by a log-uniform factor in ``disp_outlier_fold``.

    Parameters
    ----------
    n_samples
        Number of samples (default 12), split as evenly as possible into groups ``A``, ``B``, ... in order.
        Implied by ``group_sizes`` or ``n_donors`` when those are given.
    n_genes
        Number of genes.
    n_groups
        Number of groups in ``obs["condition"]`` (default 2); the first (``A``) is the reference.
    frac_de
        Fraction of genes that are differentially expressed.
    group_sizes
        Sizes of the groups ``A``, ``B``, ... (e.g. ``(4, 8)``) for unequal groups.
    n_donors, donor_sd
        Number of donors for a paired design (``n_samples = n_donors * n_groups``; ``obs["donor"]``), and the
        sd of the per-gene donor effects in log2.
    n_batches, batch_sd
        Number of batches (``obs["batch"]`` when > 1) and the sd of the per-gene batch effects in log2.
    n_hidden_factors, hidden_factor_sd
        Number of hidden continuous factors and the sd of their per-gene loadings in log2 (their strength).
    mean_log, mean_sdlog
        Mean and sd of the natural log of the gene base means.
    disp_asymptote, disp_extra_poisson, disp_scatter
        Parameters of the dispersion trend and the sd of the gene-wise log-scatter around it.
    disp_outlier_frac, disp_outlier_fold
        Share of genes whose dispersion lies far above the trend, and the range of the factor (log-uniform).
    lfc_min, lfc_scale
        Smallest absolute log2 fold change of a DE gene, and the scale of its exponential excess.
    size_factor_sdlog
        Sd of the log size factors.
    random_state
        Seed of the random generator; the same seed gives the same data, ``None`` draws fresh entropy. The
        optional structure is drawn from a generator of its own, so switching it on keeps the genes' means, DE
        genes, fold changes and size factors of the same seed.
    seed
        Deprecated name of ``random_state``.

    Returns
    -------
    AnnData of ``n_samples x n_genes`` with integer counts in ``X`` and ``layers["counts"]``,
    ``obs["condition"]`` (categorical) and ``obs["true_size_factor"]``, and in ``var``:
    ``is_de`` (bool), ``true_log2fc`` (``B`` vs ``A``; for more groups also ``true_log2fc_<level>`` for each
    non-reference level), ``true_base_mean`` and ``true_dispersion``. With the optional structure also:
    ``var["dispersion_outlier"]`` (bool); ``obs["donor"]`` and ``varm["true_donor_effect"]`` (genes x
    donors, log2); ``obs["batch"]`` and ``varm["true_batch_effect"]`` (genes x batches, log2);
    ``obsm["true_hidden_factors"]`` (samples x factors) and ``varm["true_hidden_loadings"]`` (genes x factors,
    log2). ``uns["simulation"]`` records the parameters.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=100, random_state=1)
    >>> adata.shape
    (6, 100)
    >>> paired = gdx.datasets.simulate_counts(n_donors=4, n_genes=100, n_hidden_factors=2)
    >>> paired.obs["donor"].value_counts().tolist()
    [2, 2, 2, 2]
    """
    if seed is not _UNSET:
        deprecated_argument("seed", "random_state", "simulate_counts")
        random_state = seed  # type: ignore[assignment]
    if not 0.0 <= frac_de <= 1.0:
        raise ValueError(f"`frac_de` must lie in [0, 1], got {frac_de}")
    if n_genes < 1:
        raise ValueError(f"`n_genes` must be >= 1, got {n_genes}")
    if n_batches < 1:
        raise ValueError(f"`n_batches` must be >= 1, got {n_batches}")
    if n_hidden_factors < 0:
        raise ValueError(f"`n_hidden_factors` must be >= 0, got {n_hidden_factors}")
    if not 0.0 <= disp_outlier_frac <= 1.0:
        raise ValueError(f"`disp_outlier_frac` must lie in [0, 1], got {disp_outlier_frac}")
    lo, hi = (float(f) for f in disp_outlier_fold)
    if not 0 < lo <= hi:
        raise ValueError(f"`disp_outlier_fold` must be (low, high) with 0 < low <= high, got {disp_outlier_fold}")
    _check_nonneg(donor_sd=donor_sd, batch_sd=batch_sd, hidden_factor_sd=hidden_factor_sd)
    codes, levels, donor = _design(n_samples, n_groups, group_sizes, n_donors)
    n_samples, n_groups = codes.size, len(levels)
    seq = np.random.SeedSequence(random_state)
    rng = np.random.default_rng(seq)  # the same stream as default_rng(random_state): the defaults' data stay
    rng_structure = np.random.default_rng(seq.spawn(1)[0])

    base_mean = np.exp(rng.normal(mean_log, mean_sdlog, size=n_genes))
    trend = disp_asymptote + disp_extra_poisson / base_mean
    dispersion = trend * np.exp(rng.normal(0.0, disp_scatter, size=n_genes))
    outlier = np.zeros(n_genes, dtype=bool)
    if disp_outlier_frac > 0:
        outlier[rng_structure.choice(n_genes, size=int(round(disp_outlier_frac * n_genes)), replace=False)] = True
        fold = np.exp(rng_structure.uniform(np.log(lo), np.log(hi), size=int(outlier.sum())))
        dispersion[outlier] *= fold

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

    log2_effect = lfc[codes]
    varm: dict[str, np.ndarray] = {}
    obsm: dict[str, np.ndarray] = {}
    obs_extra: dict[str, pd.Categorical] = {}
    if n_hidden_factors > 0:
        scores = _hidden_scores(rng_structure, codes, n_hidden_factors)
        loadings = rng_structure.normal(0.0, hidden_factor_sd, size=(n_genes, n_hidden_factors))
        log2_effect = log2_effect + scores @ loadings.T
        obsm["true_hidden_factors"], varm["true_hidden_loadings"] = scores, loadings
    if donor is not None:
        effect = rng_structure.normal(0.0, donor_sd, size=(int(donor.max()) + 1, n_genes))
        log2_effect = log2_effect + effect[donor]
        names = [f"D{d + 1}" for d in range(effect.shape[0])]
        obs_extra["donor"] = pd.Categorical([names[d] for d in donor], categories=names)
        varm["true_donor_effect"] = effect.T
    if n_batches > 1:
        position = donor if donor is not None else np.concatenate([np.arange(c) for c in np.bincount(codes)])
        batch = position % n_batches
        effect = rng_structure.normal(0.0, batch_sd, size=(n_batches, n_genes))
        log2_effect = log2_effect + effect[batch]
        names = [f"batch{b + 1}" for b in range(n_batches)]
        obs_extra["batch"] = pd.Categorical([names[b] for b in batch], categories=names)
        varm["true_batch_effect"] = effect.T

    mu = size_factor[:, None] * base_mean[None, :] * np.exp2(log2_effect)
    # NB(mean mu, dispersion alpha) as a gamma-Poisson mixture
    shape = 1.0 / dispersion
    lam = rng.gamma(shape[None, :], mu / shape[None, :])
    counts = rng.poisson(lam).astype(np.int64)

    obs = pd.DataFrame(
        {
            "condition": pd.Categorical([levels[c] for c in codes], categories=levels),
            "true_size_factor": size_factor,
            **obs_extra,
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
    if disp_outlier_frac > 0:
        var["dispersion_outlier"] = outlier
    for k in range(2, n_groups):
        var[f"true_log2fc_{levels[k]}"] = lfc[k]
    if n_groups > 2:
        var[f"true_log2fc_{levels[1]}"] = lfc[1]
    adata = AnnData(X=counts, obs=obs, var=var, obsm=obsm, varm=varm)
    adata.layers["counts"] = counts.copy()
    adata.uns["simulation"] = {
        "method": "simulate_counts",
        "params": {
            "n_samples": n_samples,
            "n_genes": n_genes,
            "n_groups": n_groups,
            "frac_de": frac_de,
            "group_sizes": np.bincount(codes, minlength=n_groups).tolist(),
            "n_donors": 0 if donor is None else int(donor.max()) + 1,
            "donor_sd": donor_sd,
            "n_batches": n_batches,
            "batch_sd": batch_sd,
            "n_hidden_factors": n_hidden_factors,
            "hidden_factor_sd": hidden_factor_sd,
            "disp_scatter": disp_scatter,
            "disp_outlier_frac": disp_outlier_frac,
            "disp_outlier_fold": [lo, hi],
            "random_state": -1 if random_state is None else int(random_state),
        },
    }
    return adata

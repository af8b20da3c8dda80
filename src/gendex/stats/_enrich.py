"""Gene-set kernels on arrays: over-representation (hypergeometric) test and the GSEA leading edge."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse, stats


def ora_test(
    selected: ArrayLike,
    membership: ArrayLike | sparse.spmatrix,
    *,
    ha_corr: float = 0.5,
) -> dict[str, NDArray]:
    """One-sided over-representation test of a gene list in each gene set, within a fixed universe.

    The universe is the rows of ``membership``: every gene that could have been selected. For a set of ``K``
    genes in a universe of ``N`` genes, of which ``n`` were selected, the p-value of an overlap ``k`` is the
    hypergeometric upper tail ``P(X >= k)``, identical to Fisher's exact test with ``alternative="greater"``
    on the table ``[[k, K - k], [n - k, N - K - n + k]]``.

    Parameters
    ----------
    selected
        Boolean vector over the universe: the gene list (e.g. genes up-regulated at FDR 5%).
    membership
        Boolean (or 0/1) matrix, universe genes x sets, dense or sparse: ``membership[i, j]`` when gene ``i`` is
        in set ``j``.
    ha_corr
        Haldane-Anscombe correction added to each cell of the 2x2 table before the odds ratio (decoupler's
        default, so that empty cells give a finite value).

    Returns
    -------
    Dictionary of arrays with one entry per set: ``overlap`` (k), ``set_size`` (K), ``log_odds_ratio`` (natural
    log of the corrected odds ratio) and ``pvalue``; plus the scalars ``n_selected`` (n) and ``n_universe`` (N)
    as 0-d arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import ora_test
    >>> sel = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    >>> sets = np.array([[1, 0], [1, 0], [1, 1], [0, 1], [0, 1], [0, 0], [0, 0], [0, 0]], dtype=bool)
    >>> res = ora_test(sel, sets)
    >>> res["overlap"].tolist()
    [3, 1]
    """
    sel = np.asarray(selected)
    if sel.ndim != 1:
        raise ValueError(f"`selected` must be a vector, got shape {sel.shape}")
    if sel.dtype != bool:
        if not np.isin(sel, (0, 1)).all():
            raise ValueError("`selected` must be boolean (or 0/1)")
        sel = sel.astype(bool)
    mem = sparse.csc_matrix(membership, dtype=bool) if sparse.issparse(membership) else np.asarray(membership)
    if mem.ndim != 2 or mem.shape[0] != sel.shape[0]:
        raise ValueError(f"`membership` must be genes x sets with {sel.shape[0]} rows, got shape {mem.shape}")
    if ha_corr < 0:
        raise ValueError(f"`ha_corr` must be >= 0, got {ha_corr}")
    mem = mem.astype(bool)
    n_universe = sel.shape[0]
    n_selected = int(sel.sum())
    set_size = np.asarray(mem.sum(axis=0)).ravel().astype(np.int64)
    overlap = np.asarray(mem.T @ sel.astype(np.int64)).ravel().astype(np.int64)
    a = overlap + ha_corr
    b = set_size - overlap + ha_corr
    c = n_selected - overlap + ha_corr
    d = n_universe - set_size - n_selected + overlap + ha_corr
    with np.errstate(divide="ignore", invalid="ignore"):
        log_or = np.log(a) + np.log(d) - np.log(b) - np.log(c)
    # P(X >= k) for X ~ Hypergeom(N, K, n); sf is P(X > k - 1).
    pvalue = stats.hypergeom.sf(overlap - 1, n_universe, set_size, n_selected)
    pvalue = np.clip(np.asarray(pvalue, dtype=np.float64), 0.0, 1.0)
    return {
        "overlap": overlap,
        "set_size": set_size,
        "log_odds_ratio": log_or,
        "pvalue": pvalue,
        "n_selected": np.asarray(n_selected),
        "n_universe": np.asarray(n_universe),
    }


def gsea_leading_edge(values: ArrayLike, members: ArrayLike) -> tuple[float, NDArray[np.bool_]]:
    """Enrichment score and leading-edge genes of one set in a ranked list (GSEA, weight ``p = 1``).

    Genes are ranked by decreasing ``values``. Walking down the list, the running sum rises by
    ``|value| / sum(|values in the set|)`` at each member and falls by ``1 / (N - K)`` at each non-member. The
    enrichment score (ES) is the largest deviation from zero; the leading edge is the members ranked at or
    before the peak when ES > 0, and at or after it when ES < 0 (Subramanian et al. 2005; the running sum of
    ``decoupler.mt.gsea``).

    Parameters
    ----------
    values
        Finite ranking statistic of every gene (e.g. the DESeq2 Wald statistic).
    members
        Boolean vector: which genes are in the set.

    Returns
    -------
    ``(es, leading)``: the enrichment score and a boolean vector over the genes marking the leading edge (all
    False when the set is empty or every member has value 0).

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import gsea_leading_edge
    >>> es, le = gsea_leading_edge(np.array([3.0, 2.0, 1.0, -1.0, -2.0]), np.array([1, 1, 0, 0, 0], dtype=bool))
    >>> round(es, 3), le.tolist()
    (1.0, [True, True, False, False, False])
    """
    v = np.asarray(values, dtype=np.float64)
    m = np.asarray(members, dtype=bool)
    if v.ndim != 1 or m.shape != v.shape:
        raise ValueError(f"`values` and `members` must be vectors of the same length, got {v.shape} and {m.shape}")
    if not np.isfinite(v).all():
        raise ValueError("`values` must be finite")
    leading = np.zeros(v.shape, dtype=bool)
    n_in = int(m.sum())
    if n_in == 0 or n_in == v.size:
        return 0.0, leading
    order = np.argsort(-v, kind="stable")
    v_sorted, m_sorted = v[order], m[order]
    norm = np.abs(v_sorted[m_sorted]).sum()
    if norm == 0:
        return 0.0, leading
    steps = np.where(m_sorted, np.abs(v_sorted) / norm, -1.0 / (v.size - n_in))
    running = np.cumsum(steps)
    j_pos, j_neg = int(np.argmax(running)), int(np.argmin(running))
    mx_pos, mx_neg = max(running[j_pos], 0.0), min(running[j_neg], 0.0)
    if mx_pos > -mx_neg:
        es, in_edge = mx_pos, np.arange(v.size) <= j_pos
    else:
        es, in_edge = mx_neg, np.arange(v.size) >= j_neg
    leading[order[in_edge & m_sorted]] = True
    return float(es), leading

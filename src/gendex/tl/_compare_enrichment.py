"""``tl.compare_enrichment``: two enrichment results side by side, with agreement flags and a rank correlation."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from .._results import lookup_enrichment as get_enrichment
from .._results import set_labels
from .._utils import h5ad_safe

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)


def _rank(score: pd.Series) -> pd.Series:
    """1 = highest score (most enriched in the test group); ties get their average rank."""
    return score.rank(ascending=False, method="average")


def compare_enrichment(
    adata: AnnData,
    key1: str,
    key2: str,
    *,
    alpha: float = 0.05,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Put two enrichment results (from :func:`gendex.tl.enrich`) side by side and measure their agreement.

    Typical use: the same gene sets scored on the DESeq2 and on the generative model's statistic.

    Parameters
    ----------
    adata
        AnnData holding both results in ``uns``.
    key1, key2
        Keys of the two results in ``uns``.
    alpha
        A set is significant when its ``padj < alpha``.
    key_added
        Key of ``uns`` to write; ``f"compare_{key1}_vs_{key2}"`` when None.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Sets ``adata.uns[key_added]`` = ``{"params", "summary", "table"}``. ``table`` is a
    :class:`~pandas.DataFrame` indexed by set (ORA sets carry ``" (up)"``/``" (down)"``), sorted by the smaller
    adjusted p-value (ties: the larger ``|score|`` relative to each result's largest), with ``score1, score2,
    padj1, padj2, n_genes1, n_genes2, rank1, rank2`` (rank of the score within each result, 1 = highest; NaN
    where a result lacks the set), ``in1, in2, sig1, sig2``,
    ``same_sign`` (both present with scores of the same sign), ``category`` (``"both"``, ``"only1"``,
    ``"only2"``, ``"neither"`` by significance, or ``"untested"`` when a result lacks the set) and ``agree``
    (significant in both with the same sign). ``summary`` holds ``spearman`` (Spearman correlation of the
    scores over the shared sets; NaN with fewer than 3), ``spearman_pvalue``, ``pearson``, ``n_shared``,
    ``n_only_in1``, ``n_only_in2``, ``n_sig_both``, ``n_sig_only1``, ``n_sig_only2``, ``n_sig_neither``,
    ``n_agree`` and ``sign_agreement`` (fraction of shared sets whose scores have the same sign). Returns None,
    or the modified copy when ``copy=True``.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.tl.compare_enrichment(adata, "enrich_ulm_deseq2", "enrich_ulm_nbvae_de")  # doctest: +SKIP
    >>> adata.uns["compare_enrich_ulm_deseq2_vs_enrich_ulm_nbvae_de"]["summary"]["spearman"]  # doctest: +SKIP
    """
    res1, res2 = get_enrichment(adata, key1), get_enrichment(adata, key2)
    if not (isinstance(alpha, int | float) and 0 < alpha <= 1):
        raise ValueError(f"`alpha` must be in (0, 1], got {alpha!r}")
    if key_added is None:
        key_added = f"compare_{key1}_vs_{key2}"
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"`key_added` must be a non-empty string, got {key_added!r}")

    parts = []
    for i, res in ((1, res1), (2, res2)):
        labels = set_labels(res)
        if not labels.is_unique:
            raise ValueError(f"`adata.uns[{(key1, key2)[i - 1]!r}]['results']` has repeated sets: cannot align")
        n_genes = res["n_genes"] if "n_genes" in res.columns else pd.Series(np.nan, index=res.index)
        part = pd.DataFrame(
            {
                f"score{i}": res["score"].to_numpy(dtype=np.float64),
                f"padj{i}": res["padj"].to_numpy(dtype=np.float64),
                f"n_genes{i}": n_genes.to_numpy(dtype=np.float64),
                f"rank{i}": _rank(res["score"].astype(np.float64)).to_numpy(),
            },
            index=pd.Index(labels.to_numpy(dtype=str), dtype=object),
        )
        parts.append(part)
    table = parts[0].join(parts[1], how="outer")
    table["in1"] = table["score1"].notna().to_numpy()
    table["in2"] = table["score2"].notna().to_numpy()
    table["sig1"] = (table["padj1"] < alpha).to_numpy()
    table["sig2"] = (table["padj2"] < alpha).to_numpy()
    shared = (table["in1"] & table["in2"]).to_numpy()
    same = shared & (np.sign(table["score1"].to_numpy()) == np.sign(table["score2"].to_numpy()))
    table["same_sign"] = same
    category = np.select(
        [~shared, table["sig1"] & table["sig2"], table["sig1"], table["sig2"]],
        ["untested", "both", "only1", "only2"],
        default="neither",
    )
    table["category"] = category.astype(str)
    table["agree"] = (table["category"] == "both").to_numpy() & same
    best = np.fmin(table["padj1"].to_numpy(), table["padj2"].to_numpy())
    rel = [
        np.abs(table[c].to_numpy()) / max(np.nanmax(np.abs(table[c].to_numpy()), initial=0.0), 1e-300)
        for c in ("score1", "score2")
    ]
    strength = np.nan_to_num(np.fmax(rel[0], rel[1]))
    order = np.lexsort((table.index.to_numpy(dtype=str), -strength, best))
    table = table.iloc[order]
    table.index = pd.Index(table.index.astype(str), dtype=object)

    s1, s2 = table.loc[shared[order], "score1"], table.loc[shared[order], "score2"]
    n_shared = int(shared.sum())
    if n_shared >= 3 and s1.nunique() > 1 and s2.nunique() > 1:
        rho, rho_p = stats.spearmanr(s1, s2)
        pearson = float(np.corrcoef(s1, s2)[0, 1])
    else:
        rho, rho_p, pearson = np.nan, np.nan, np.nan
    cat = table["category"]
    summary: dict[str, Any] = {
        "spearman": float(rho),
        "spearman_pvalue": float(rho_p),
        "pearson": pearson,
        "n_shared": n_shared,
        "n_only_in1": int((table["in1"] & ~table["in2"]).sum()),
        "n_only_in2": int((table["in2"] & ~table["in1"]).sum()),
        "n_sig_both": int((cat == "both").sum()),
        "n_sig_only1": int((cat == "only1").sum()),
        "n_sig_only2": int((cat == "only2").sum()),
        "n_sig_neither": int((cat == "neither").sum()),
        "n_agree": int(table["agree"].sum()),
        "sign_agreement": float(same.sum() / n_shared) if n_shared else float("nan"),
    }
    logger.info("%s vs %s: %d shared sets, Spearman %.3f", key1, key2, n_shared, summary["spearman"])

    if copy:
        adata = adata.copy()
    record = h5ad_safe({"params": {"key1": key1, "key2": key2, "alpha": float(alpha)}, "summary": summary})
    record["table"] = table
    adata.uns[key_added] = record
    return adata if copy else None

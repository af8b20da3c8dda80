"""Over-representation analysis for ``tl.enrich``: up and down lists against the measured universe."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import sparse

from ..stats import bh_adjust, ora_test
from ._decoupler import GENE_SEP


def _run_ora(
    table: pd.DataFrame,
    net: pd.DataFrame,
    *,
    padj_col: str,
    alpha: float,
    lfc_threshold: float,
    tmin: int,
) -> tuple[pd.DataFrame, dict[str, int]]:
    universe = table.index
    padj, lfc = table[padj_col].to_numpy(), table["log2FoldChange"].to_numpy()
    sig = padj <= alpha
    lists = {
        "up": sig & (lfc > 0) & (lfc >= lfc_threshold),
        "down": sig & (lfc < 0) & (lfc <= -lfc_threshold),
    }
    pnet = net[net["target"].isin(set(universe))]
    sizes = pnet.groupby("source").size()
    keep = sizes.index[sizes >= tmin]
    pnet = pnet[pnet["source"].isin(set(keep))]
    sources = np.asarray(sorted(keep), dtype=object)
    src_idx = {s: j for j, s in enumerate(sources)}
    gene_idx = {g: i for i, g in enumerate(universe)}
    rows = pnet["target"].map(gene_idx).to_numpy(dtype=np.int64)
    cols = pnet["source"].map(src_idx).to_numpy(dtype=np.int64)
    membership = sparse.csc_matrix(
        (np.ones(rows.size, dtype=bool), (rows, cols)), shape=(len(universe), len(sources)), dtype=bool
    )
    names = np.asarray(universe, dtype=object)
    counts = {"n_universe": len(universe), "n_up": int(lists["up"].sum()), "n_down": int(lists["down"].sum())}
    parts = []
    for direction, selected in lists.items():
        if not selected.any():
            warnings.warn(
                f"ORA: no {direction}-regulated genes with {padj_col} <= {alpha} and |log2FoldChange| >= "
                f"{lfc_threshold}; the {direction} list is not tested",
                UserWarning,
                stacklevel=3,
            )
            continue
        res = ora_test(selected, membership)
        genes = []
        for j in range(len(sources)):
            idx = membership.indices[membership.indptr[j] : membership.indptr[j + 1]]
            idx = idx[selected[idx]]
            idx = idx[np.lexsort((-np.abs(lfc[idx]), padj[idx]))]  # most significant first
            genes.append(GENE_SEP.join(names[idx].tolist()))
        parts.append(
            pd.DataFrame(
                {
                    "source": sources.astype(str),
                    "score": res["log_odds_ratio"],
                    "pvalue": res["pvalue"],
                    "padj": bh_adjust(res["pvalue"]),
                    "n_genes": res["set_size"],
                    "direction": direction,
                    "overlap": res["overlap"],
                    "leading_genes": genes,
                }
            )
        )
    if parts:
        out = pd.concat(parts, ignore_index=True)
    else:
        out = pd.DataFrame({c: pd.Series(dtype=t) for c, t in _ORA_DTYPES.items()})
    return out, counts


_ORA_DTYPES = {
    "source": object,
    "score": np.float64,
    "pvalue": np.float64,
    "padj": np.float64,
    "n_genes": np.int64,
    "direction": object,
    "overlap": np.int64,
    "leading_genes": object,
}

"""The decoupler adapter of ``tl.enrich``: one decoupler 2.2 method on one vector of gene statistics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..stats import bh_adjust, gsea_leading_edge

#: Separator of the genes in ``leading_genes`` (a string column, so that the table survives h5ad).
GENE_SEP = ";"


def run_decoupler(
    values: pd.Series,
    net: pd.DataFrame,
    method: str,
    *,
    tmin: int,
    **kwargs: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run one decoupler 2.2 method on one vector of gene statistics; keep raw and adjusted p-values.

    Performs the steps of ``decoupler.mt.<method>(data, net, tmin=tmin)`` for a one-row DataFrame
    (``dc.pp.extract`` with its tie-breaking shuffle, ``dc.pp.prune``, ``dc.pp.adjmat``/``idxmat``, then the
    method's kernel ``dc.mt.<method>.func``), because the public call returns only BH-adjusted p-values. Scores
    and BH p-values equal those of ``decoupler.mt.<method>`` (tested).

    Returns
    -------
    ``(results, pruned_net)``: results with ``source, score, pvalue, padj, n_genes`` and the net restricted to
    the genes used (exact zeros are dropped by decoupler as empty features) and to sets of >= ``tmin`` genes.
    """
    import decoupler as dc

    data = pd.DataFrame([values.to_numpy(dtype=np.float64)], index=["stat"], columns=values.index.astype(str))
    mat, _obs, features = dc.pp.extract(data)
    pnet = dc.pp.prune(features=features, net=net, tmin=tmin)
    runner = getattr(dc.mt, method)
    if runner.adj:
        sources, _targets, adjm = dc.pp.adjmat(features=features, net=pnet)
        es, pv = runner.func(mat, adjm, **kwargs)
    else:
        sources, cnct, starts, offsets = dc.pp.idxmat(features=features, net=pnet)
        es, pv = runner.func(mat, cnct, starts, offsets, **kwargs)
    es, pv = np.asarray(es, dtype=np.float64)[0], np.asarray(pv, dtype=np.float64)[0]
    sizes = pnet.groupby("source").size()
    res = pd.DataFrame(
        {
            "source": np.asarray(sources, dtype=str),
            "score": es,
            "pvalue": pv,
            "padj": bh_adjust(pv),
            "n_genes": sizes.reindex(np.asarray(sources, dtype=str)).to_numpy(dtype=np.int64),
        }
    )
    return res, pnet


def _leading_edges(values: pd.Series, pnet: pd.DataFrame, sources: pd.Series) -> list[str]:
    """Leading-edge genes of each source, ordered from the most extreme statistic inwards."""
    v = values.to_numpy(dtype=np.float64)
    pos = {g: i for i, g in enumerate(values.index)}
    groups = pnet.groupby("source")["target"].agg(list)
    names = np.asarray(values.index, dtype=object)
    out = []
    for src in sources:
        members = np.zeros(v.size, dtype=bool)
        members[[pos[g] for g in groups[src]]] = True
        es, le = gsea_leading_edge(v, members)
        idx = np.flatnonzero(le)
        idx = idx[np.argsort(-v[idx] if es > 0 else v[idx], kind="stable")]
        out.append(GENE_SEP.join(names[idx].tolist()))
    return out

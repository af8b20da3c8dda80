"""``tl.enrich``: gene-set enrichment of any stored DE result with decoupler (ULM, GSEA, z-score) or ORA."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._results import lookup_de_table
from .._utils import h5ad_safe, package_versions
from .._validation import check_not_backed
from ..io import read_gmt
from ._decoupler import _leading_edges, run_decoupler
from ._ora import _run_ora

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

METHODS = ("ulm", "gsea", "zscore", "ora")
#: Columns of every enrichment result table, in order; ``direction``/``overlap``/``leading_genes`` follow.
RESULT_COLUMNS = ("source", "score", "pvalue", "padj", "n_genes", "direction")


# --------------------------------------------------------------------------------------------------- validation
def _numeric_column(table: pd.DataFrame, key: str, col: str, what: str) -> pd.Series:
    if col not in table.columns:
        raise KeyError(f"{what} column {col!r} not in `adata.varm[{key!r}]`; columns: {list(table.columns)}")
    if not pd.api.types.is_numeric_dtype(table[col]) or pd.api.types.is_bool_dtype(table[col]):
        raise TypeError(f"{what} column `adata.varm[{key!r}][{col!r}]` is not numeric (dtype {table[col].dtype})")
    return table[col].astype(np.float64)


def prepare_net(net: pd.DataFrame | str | PathLike) -> tuple[pd.DataFrame, str]:
    """Validate ``net`` (or read it from a GMT path) into ``source, target, weight`` (str, str, float), deduplicated.

    Returns the net and a description for the run record (the path, or ``"DataFrame"``).
    """
    if isinstance(net, str | PathLike):
        desc = str(net)
        net = read_gmt(net)
    elif isinstance(net, pd.DataFrame):
        desc = "DataFrame"
    else:
        raise TypeError(f"`net` must be a DataFrame with `source` and `target` or a GMT path, got {type(net).__name__}")
    missing = [c for c in ("source", "target") if c not in net.columns]
    if missing:
        raise KeyError(
            f"`net` lacks the column(s) {missing}; it needs `source` and `target` (columns: {list(net.columns)})"
        )
    cols = ["source", "target"] + [c for c in ("weight", "description") if c in net.columns]
    out = net[cols].dropna(subset=["source", "target"]).copy()
    out["source"] = out["source"].astype(str)
    out["target"] = out["target"].astype(str)
    if "weight" in out.columns:
        if not pd.api.types.is_numeric_dtype(out["weight"]) or not np.isfinite(out["weight"].astype(float)).all():
            raise ValueError("`net['weight']` must be finite numbers")
        out["weight"] = out["weight"].astype(np.float64)
    else:
        out["weight"] = 1.0
    n_before = len(out)
    out = out.drop_duplicates(subset=["source", "target"]).reset_index(drop=True)
    if n_before > len(out):
        logger.info("dropped %d repeated (source, target) pairs from `net`", n_before - len(out))
    if out.empty:
        raise ValueError("`net` has no (source, target) pairs")
    return out, desc


def feature_table(
    de: pd.DataFrame,
    adata: AnnData,
    columns: list[str],
    *,
    gene_symbols: str | None,
) -> tuple[pd.DataFrame, int]:
    """The DE columns needed, for genes where all are finite, indexed by the identifiers the net uses.

    With ``gene_symbols``, genes are re-indexed by ``var[gene_symbols]``; when several genes share a symbol,
    the one with the highest ``baseMean`` (else the largest ``|stat|``-like first column) represents it.
    Returns the table and the number of genes dropped as duplicated symbols.
    """
    table = de[columns].astype(np.float64)
    finite = np.isfinite(table.to_numpy()).all(axis=1)
    if "baseMean" in de.columns and pd.api.types.is_numeric_dtype(de["baseMean"]):
        priority = de["baseMean"].astype(np.float64).fillna(-np.inf)
    else:
        priority = table[columns[0]].abs()
    table = table.assign(_priority=priority.to_numpy())[finite]
    n_dup = 0
    if gene_symbols is not None:
        ids = adata.var[gene_symbols].astype(str).reindex(table.index)
        table.index = pd.Index(ids.to_numpy(), dtype=object)
        table = table[~table.index.isin(["", "nan", "None"])]
        table = table.sort_values("_priority", ascending=False, kind="stable")
        dup = table.index.duplicated(keep="first")
        n_dup = int(dup.sum())
        table = table[~dup]
        if n_dup:
            logger.info("%d genes share a symbol with a higher-baseMean gene and were left out", n_dup)
    else:
        table.index = pd.Index(table.index.astype(str), dtype=object)
    return table.drop(columns="_priority"), n_dup


def _check_overlap(features: pd.Index, net: pd.DataFrame, tmin: int, gene_symbols: str | None, n_var: int) -> None:
    """Raise a ValueError with a hint when no set keeps ``tmin`` measured genes."""
    in_data = net["target"].isin(set(features))
    sizes = net.loc[in_data].groupby("source").size()
    if (sizes >= tmin).any():
        return
    n_match = int(net.loc[in_data, "target"].nunique())
    hint = (
        " If the net uses gene symbols while `var_names` are IDs, pass `gene_symbols=` naming a `var` column of "
        "symbols (see `gdx.pp.add_gene_symbols`)."
        if gene_symbols is None
        else ""
    )
    raise ValueError(
        f"no gene set has at least tmin={tmin} measured genes: the net's targets match {n_match} of the "
        f"{len(features)} genes with finite statistics ({n_var} in `adata`).{hint}"
    )


def _direction(score: np.ndarray) -> np.ndarray:
    return np.where(score > 0, "up", np.where(score < 0, "down", "none"))


def sort_results(res: pd.DataFrame) -> pd.DataFrame:
    """Order by p-value, then by decreasing ``|score|``; string index ``"0".."n-1"`` (what h5ad reads back)."""
    order = np.lexsort((-np.abs(res["score"].to_numpy()), res["pvalue"].to_numpy()))
    out = res.iloc[order].reset_index(drop=True)
    out.index = pd.Index([str(i) for i in range(len(out))])
    return out


# ------------------------------------------------------------------------------------------------------- public
def enrich(
    adata: AnnData,
    key: str,
    *,
    net: pd.DataFrame | str | PathLike,
    method: Literal["ulm", "gsea", "zscore", "ora"] = "ulm",
    stat: str = "stat",
    gene_symbols: str | None = None,
    alpha: float = 0.05,
    lfc_threshold: float = 1.0,
    padj_col: str = "padj",
    tmin: int = 5,
    times: int = 1000,
    random_state: int | None = 0,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Gene-set enrichment of a stored DE result (DESeq2, limma, t-test or generative: the same call).

    ``ulm``, ``gsea`` and ``zscore`` score each set on the per-gene statistic ``varm[key][stat]`` with decoupler
    2.2 (the DataFrame ``varm[key][[stat]].dropna().T`` of one row). Genes with a non-finite statistic are
    dropped and the net is restricted to the measured genes. ``ora`` tests the up- and down-regulated gene lists
    separately for over-representation in each set (hypergeometric / one-sided Fisher test) against the
    universe of genes with a finite ``padj_col`` and ``log2FoldChange``.

    Parameters
    ----------
    adata
        AnnData holding a DE result in ``varm[key]`` (written by a ``gdx.tl`` DE function).
    key
        Key of the DE result in ``varm``.
    net
        Gene sets in long format (``source``, ``target`` and optionally ``weight``, used by ``ulm``/``zscore``),
        e.g. from :func:`gendex.io.read_gmt`, or the path of a GMT file.
    method
        ``"ulm"`` (univariate linear model: t-value of the set membership in a regression of the statistic;
        decoupler's recommendation), ``"gsea"`` (GSEA normalised enrichment score with ``times`` permutations of
        the gene labels), ``"zscore"`` (decoupler's z-score) or ``"ora"`` (over-representation of the up and
        down gene lists).
    stat
        Column of ``varm[key]`` with the per-gene statistic (signed: positive = higher in the test group), e.g.
        DESeq2's Wald ``stat``, limma's ``t`` or the generative posterior mean/sd ``stat``.
    gene_symbols
        Column of ``var`` with the identifiers the net uses (e.g. ``"symbol"`` from
        :func:`gendex.pp.add_gene_symbols`) when they differ from ``var_names``. Genes sharing a symbol are
        represented by the one with the highest ``baseMean``.
    alpha
        ORA: genes with ``padj_col <= alpha`` and ``|log2FoldChange| >= lfc_threshold`` are selected, into the
        up list (positive fold change) or the down list (negative).
    lfc_threshold
        ORA: the smallest absolute log2 fold change of a selected gene.
    padj_col
        ORA: column of adjusted p-values (``"padj"``; for generative results ``"qvalue"``, which equals their
        ``padj``, works too).
    tmin
        Sets with fewer measured genes (targets in the universe) are not tested.
    times
        GSEA: number of permutations (the p-values have a resolution of about ``1 / times`` and can be 0).
    random_state
        GSEA: seeds a private generator that draws decoupler's permutation seed (recorded as
        ``params["gsea_seed"]``); None draws fresh entropy. The global random generators are never touched.
    key_added
        Key of ``uns`` to write; ``f"enrich_{method}_{key}"`` when None.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Sets ``adata.uns[key_added]`` = ``{"results", "method", "de_key", "params", "versions", "n_universe",
    "n_sets_tested", "n_sets_net", ...}`` (plus ``contrast`` when the DE record has one and ``n_up``/``n_down``
    for ORA). ``results`` is a :class:`~pandas.DataFrame` sorted by p-value with columns ``source``, ``score``
    (ULM t-value, GSEA NES, z-score, or the ORA natural-log odds ratio with a 0.5 Haldane-Anscombe correction),
    ``pvalue``, ``padj`` (Benjamini-Hochberg over the sets, per direction for ORA), ``n_genes`` (measured genes
    of the set), ``direction`` (``"up"``/``"down"``: the sign of the score, or the tested list for ORA),
    ``description`` when ``net`` has one (:func:`gendex.io.read_gmt`'s second GMT field) and,
    for ``gsea`` and ``ora``, ``leading_genes`` (``";"``-joined GSEA leading edge, or the overlapping genes,
    most extreme statistic first) and for ORA ``overlap``. Returns None, or the modified copy when
    ``copy=True``.

    Notes
    -----
    decoupler's public ``dc.mt.<method>`` returns only BH-adjusted p-values, so gendex runs the same steps
    (``dc.pp.extract``, ``dc.pp.prune``, the method's kernel) to keep the raw ones as well; scores and adjusted
    p-values are identical. decoupler 2.2.0's ``dc.mt.ora`` selects the wrong genes (it keeps all but the
    bottom ``n_up``; scverse/decoupler#346) and its ``query_set`` defaults to a universe of 20,000 genes, so ORA
    uses :func:`gendex.stats.ora_test` with the measured universe instead (equal to ``dc.mt.query_set`` with
    ``n_bg`` = universe size on the pruned net; tested). Nothing here touches the network.

    Examples
    --------
    >>> import gendex as gdx
    >>> net = gdx.io.read_gmt("mh.all.v2022.1.Mm.entrez.derived.gmt")  # doctest: +SKIP
    >>> gdx.tl.enrich(adata, key="deseq2", net=net, method="ulm")  # doctest: +SKIP
    >>> adata.uns["enrich_ulm_deseq2"]["results"].head()  # doctest: +SKIP
    """
    # --- validate everything before computing or writing
    check_not_backed(adata)
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {list(METHODS)}, got {method!r}")
    de = lookup_de_table(adata, key)
    if not isinstance(tmin, int | np.integer) or isinstance(tmin, bool) or tmin < 1:
        raise ValueError(f"`tmin` must be an integer >= 1, got {tmin!r}")
    if gene_symbols is not None and gene_symbols not in adata.var.columns:
        raise KeyError(
            f"`gene_symbols={gene_symbols!r}` is not a column of `adata.var`; columns: {list(adata.var.columns)} "
            "(add one with `gdx.pp.add_gene_symbols`)"
        )
    if method == "ora":
        _numeric_column(de, key, padj_col, "adjusted p-value")
        _numeric_column(de, key, "log2FoldChange", "log2 fold change")
        if not (isinstance(alpha, int | float) and 0 < alpha <= 1):
            raise ValueError(f"`alpha` must be in (0, 1], got {alpha!r}")
        if not (isinstance(lfc_threshold, int | float) and lfc_threshold >= 0):
            raise ValueError(f"`lfc_threshold` must be >= 0, got {lfc_threshold!r}")
        columns = list(dict.fromkeys([padj_col, "log2FoldChange"]))
    else:
        _numeric_column(de, key, stat, "statistic")
        columns = [stat]
    if method == "gsea":
        if not isinstance(times, int | np.integer) or isinstance(times, bool) or times < 0:
            raise ValueError(f"`times` must be an integer >= 0, got {times!r}")
        if random_state is not None and (
            not isinstance(random_state, int | np.integer) or isinstance(random_state, bool) or random_state < 0
        ):
            raise ValueError(f"`random_state` must be None or an integer >= 0, got {random_state!r}")
        # decoupler skips the shuffling for seed 0, so its seed is drawn in [1, 2**31 - 1)
        gsea_seed = int(np.random.default_rng(random_state).integers(1, 2**31 - 1))
    if key_added is None:
        key_added = f"enrich_{method}_{key}"
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"`key_added` must be a non-empty string, got {key_added!r}")
    net_df, net_desc = prepare_net(net)
    net_desc_col = net_df.pop("description") if "description" in net_df.columns else None
    table, n_dup = feature_table(de, adata, columns, gene_symbols=gene_symbols)
    if table.empty:
        raise ValueError(f"`adata.varm[{key!r}]` has no gene with finite {columns}")
    # decoupler drops exact zeros as empty features: they are not measured for the scored methods
    measured = table.index if method == "ora" else table.index[table[stat].to_numpy() != 0]
    _check_overlap(measured, net_df, tmin, gene_symbols, adata.n_vars)

    # --- compute
    extra: dict[str, Any] = {}
    if method == "ora":
        res, counts = _run_ora(
            table, net_df, padj_col=padj_col, alpha=float(alpha), lfc_threshold=float(lfc_threshold), tmin=tmin
        )
        extra.update(counts)
        n_sets_tested = int(res["source"].nunique())
    else:
        values = table[stat]
        kwargs: dict[str, Any] = {"times": int(times), "seed": gsea_seed} if method == "gsea" else {}
        res, pnet = run_decoupler(values, net_df, method, tmin=tmin, **kwargs)
        res["direction"] = _direction(res["score"].to_numpy())
        if method == "gsea":  # on the genes decoupler used (it drops exact zeros as empty features)
            res["leading_genes"] = _leading_edges(values[values != 0], pnet, res["source"])
        extra["n_universe"] = int((values != 0).sum())
        n_sets_tested = len(res)
    res = sort_results(res)
    if net_desc_col is not None:  # a GMT's second field (the term's name in GO-style files)
        names = pd.Series(net_desc_col.astype(str).to_numpy(), index=net_df["source"]).groupby(level=0).first()
        res["description"] = res["source"].map(names).fillna("").to_numpy()

    params: dict[str, Any] = {
        "key": key,
        "method": method,
        "stat": stat if method != "ora" else "None",
        "gene_symbols": gene_symbols,
        "tmin": int(tmin),
        "net": net_desc,
    }
    if method == "ora":
        params.update({"alpha": float(alpha), "lfc_threshold": float(lfc_threshold), "padj_col": padj_col})
    if method == "gsea":
        params.update({"times": int(times), "random_state": random_state, "gsea_seed": gsea_seed})
    record: dict[str, Any] = {
        "method": method,
        "de_key": key,
        "params": params,
        "versions": package_versions("decoupler", "scipy"),
        "n_sets_net": int(net_df["source"].nunique()),
        "n_sets_tested": n_sets_tested,
        "n_duplicated_symbols": n_dup,
        **extra,
    }
    de_record = adata.uns.get(key)
    if isinstance(de_record, Mapping) and "contrast" in de_record:
        record["contrast"] = de_record["contrast"]
    logger.info("%s on %r: %d sets tested, %d with padj < 0.05", method, key, n_sets_tested, (res["padj"] < 0.05).sum())

    # --- write
    if copy:
        adata = adata.copy()
    stored = h5ad_safe(record)
    stored["results"] = res
    adata.uns[key_added] = stored
    return adata if copy else None

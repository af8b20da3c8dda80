"""``pl.enrichment`` and ``pl.enrichment_compare``: plots of stored enrichment results."""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._results import lookup_enrichment as get_enrichment
from .._results import set_labels
from ._data import METHOD_NAMES, contrast_label, method_name, result_title
from ._labels import place_labels
from ._utils import finish, get_ax, root_figure

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

_SIZE_RANGE = (20.0, 200.0)


def _neg_log10(p: pd.Series | np.ndarray) -> np.ndarray:
    """-log10 of p-values, with exact zeros (GSEA's empirical p-values) clipped at the smallest positive one."""
    p = np.asarray(p, dtype=np.float64)
    positive = p[np.isfinite(p) & (p > 0)]
    floor = positive.min() if positive.size else np.finfo(np.float64).tiny
    return -np.log10(np.clip(p, floor, 1.0))


def _check_n_sets(n_sets: int) -> None:
    if not isinstance(n_sets, int | np.integer) or isinstance(n_sets, bool) or n_sets < 1:
        raise ValueError(f"`n_sets` must be a positive integer, got {n_sets!r}")


def _enrichment_data(
    adata: AnnData,
    key: str,
    *,
    n_sets: int = 10,
    direction: Literal["all", "up", "down"] = "all",
) -> pd.DataFrame:
    """The ``n_sets`` most significant sets of ``uns[key]`` (by p-value, then ``|score|``), ordered by score.

    Columns: ``label`` (set name, with the direction for ORA), ``source``, ``score``, ``padj``,
    ``neg_log10_padj`` (zeros clipped at the smallest positive ``padj``), ``n_genes``, ``direction``.
    """
    _check_n_sets(n_sets)
    if direction not in ("all", "up", "down"):
        raise ValueError(f"`direction` must be 'all', 'up' or 'down', got {direction!r}")
    res = get_enrichment(adata, key)
    data = pd.DataFrame(
        {
            "label": set_labels(res).to_numpy(dtype=str),
            "source": res["source"].astype(str).to_numpy(),
            "score": res["score"].to_numpy(dtype=np.float64),
            "pvalue": res["pvalue"].to_numpy(dtype=np.float64),
            "padj": res["padj"].to_numpy(dtype=np.float64),
            "neg_log10_padj": _neg_log10(res["padj"]),
            "n_genes": (res["n_genes"] if "n_genes" in res.columns else pd.Series(np.nan, index=res.index)).to_numpy(
                dtype=np.float64
            ),
            "direction": (
                res["direction"].astype(str).to_numpy()
                if "direction" in res.columns
                else np.where(res["score"] > 0, "up", "down")
            ),
        }
    )
    if direction != "all":
        data = data[data["direction"] == direction]
    order = np.lexsort((-np.abs(data["score"].to_numpy()), data["pvalue"].to_numpy()))
    data = data.iloc[order[:n_sets]].drop(columns="pvalue")
    return data.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def _sizes(values: np.ndarray, vmax: float) -> np.ndarray:
    lo, hi = _SIZE_RANGE
    return lo + (hi - lo) * np.clip(np.nan_to_num(values) / vmax, 0, 1) if vmax > 0 else np.full(values.shape, lo)


def _size_handles(vmax: float, *, cap: float | None = None) -> tuple[list, list[str]]:
    """Legend handles for dot sizes up to ``vmax``: about three round values, the last ``"≥ cap"`` if capped."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    values = [v for v in MaxNLocator(nbins=4, integer=vmax >= 3).tick_values(0, vmax) if 0 < v <= vmax]
    if cap is not None:
        values = [v for v in values if v < cap] + [cap]
    labels = [f"{v:g}" for v in values]
    if cap is not None:
        labels[-1] = f"\u2265 {cap:g}"
    handles = [
        Line2D([], [], linestyle="", marker="o", markersize=float(np.sqrt(_sizes(np.array([v]), vmax)[0])),
               markerfacecolor="0.6", markeredgecolor="0.3", markeredgewidth=0.5)
        for v in values
    ]  # fmt: skip
    return handles, labels


def _side_legend(ax, handles: list, labels: list[str], title: str) -> None:
    """A legend to the right of the axes, where it covers no dot."""
    ax.legend(
        handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small",
        title_fontsize="small", frameon=False, alignment="left", labelspacing=1.0,
    )  # fmt: skip


def _direction_label(adata: AnnData, key: str) -> str:
    """``" (> 0: higher in luminal)"`` from the contrast stored with an enrichment or DE result, else ``""``."""
    for k in (key, _record(adata, key).get("de_key")):
        label = contrast_label(adata, str(k)) if k is not None else None
        if label:
            return f" (> 0: higher in {label.split(' vs ')[0]})"
    return ""


def _record(adata: AnnData, key: str) -> dict:
    record = adata.uns.get(key)
    return record if isinstance(record, dict) else {}


def _result_names(adata: AnnData, key1: str, key2: str) -> tuple[str, str]:
    """The two compared enrichment results named by the DE methods they scored, else by their keys."""
    names = []
    for k in (key1, key2):
        de_key = _record(adata, k).get("de_key")
        names.append(method_name(adata, str(de_key)) if de_key is not None and str(de_key) in adata.uns else k)
    return (names[0], names[1]) if names[0] != names[1] else (key1, key2)


def _enrichment_title(adata: AnnData, key: str) -> str:
    """``"ULM enrichment of DESeq2: luminal vs basal"`` from the enrichment record and its DE result."""
    record = _record(adata, key)
    method = str(record.get("method", ""))
    name = METHOD_NAMES.get(method.lower(), method) or key
    de_key = record.get(
        "de_key", record.get("params", {}).get("key") if isinstance(record.get("params"), dict) else None
    )
    if de_key is not None and str(de_key) in adata.uns:
        return f"{name} of {result_title(adata, str(de_key))}"
    label = contrast_label(adata, key)
    return f"{name}: {label}" if label else name


def _score_norm(scores: np.ndarray):
    from matplotlib.colors import Normalize

    vmax = float(np.nanmax(np.abs(scores))) if np.isfinite(scores).any() else 1.0
    vmax = vmax if vmax > 0 else 1.0
    return Normalize(vmin=-vmax, vmax=vmax)


def enrichment(
    adata: AnnData,
    key: str,
    *,
    n_sets: int = 10,
    kind: Literal["dot", "bar"] = "dot",
    direction: Literal["all", "up", "down"] = "all",
    alpha: float = 0.05,
    cmap: str = "RdBu_r",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **kwargs: Any,
) -> Axes:
    """Dot or bar plot of the top sets of an enrichment result stored by :func:`gendex.tl.enrich`.

    Parameters
    ----------
    adata
        AnnData holding the result in ``uns[key]``.
    key
        The result's ``key_added``.
    n_sets
        Number of sets shown: the most significant (smallest p-value, then largest ``|score|``).
    kind
        ``"dot"``: x = -log10 adjusted p-value, colour = score, size = number of measured genes in the set;
        ``"bar"``: bar length and colour = score.
    direction
        Show only sets scored ``"up"`` or ``"down"`` (for ORA: the tested list), or ``"all"``.
    alpha
        Dot plot: a dashed line marks ``padj = alpha``.
    cmap
        Diverging colour map for the score, centred at 0.
    ax
        Axes to draw into; a new figure when None.
    show
        Call ``plt.show()``; None leaves it to Jupyter.
    save
        Full path to save the figure to.
    **kwargs
        Passed to ``Axes.scatter`` (dot) or ``Axes.barh`` (bar).

    Returns
    -------
    The Axes; one y tick per set, the highest score at the top.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.pl.enrichment(adata, "enrich_ulm_deseq2", n_sets=15)  # doctest: +SKIP
    """
    if kind not in ("dot", "bar"):
        raise ValueError(f"`kind` must be 'dot' or 'bar', got {kind!r}")
    data = _enrichment_data(adata, key, n_sets=n_sets, direction=direction)
    direction_text = _direction_label(adata, key)
    import matplotlib as mpl

    height = max(2.5, 0.35 * len(data) + 1.0) + (1.0 if kind == "dot" else 0.0)  # dot: colour bar below
    ax = get_ax(ax, figsize=(6.0, height))
    y = np.arange(len(data))[::-1]
    norm = _score_norm(data["score"].to_numpy())
    colormap = mpl.colormaps[cmap]
    if kind == "dot":
        vmax = float(np.nanmax(data["n_genes"])) if len(data) and np.isfinite(data["n_genes"]).any() else 0.0
        sc = ax.scatter(
            data["neg_log10_padj"],
            y,
            c=data["score"],
            s=_sizes(data["n_genes"].to_numpy(), vmax),
            cmap=colormap,
            norm=norm,
            edgecolors="0.3",
            linewidths=0.5,
            **kwargs,
        )
        ax.axvline(-np.log10(alpha), color="0.6", linestyle="--", linewidth=0.8)
        ax.set_xlabel("-log10 adjusted p-value")
        if vmax > 0:  # outside the axes: the colour bar goes below to make room
            _side_legend(ax, *_size_handles(vmax), "genes in the set")
        fig_h = root_figure(ax).get_figheight()  # pad and thickness of about 0.8 and 0.15 inches
        ax.figure.colorbar(
            sc, ax=ax, label=f"score{direction_text}", shrink=0.6, location="bottom", pad=0.8 / fig_h,
            fraction=0.15 / fig_h,
        )  # fmt: skip
        ax.set_ylim(-0.7, len(data) - 0.3)  # room for the largest dots at the ends
    else:
        ax.barh(y, data["score"], color=colormap(norm(data["score"].to_numpy())), **kwargs)
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.set_xlabel("enrichment score")
        ax.figure.colorbar(
            mpl.cm.ScalarMappable(norm=norm, cmap=colormap), ax=ax, label=f"score{direction_text}", shrink=0.6
        )
    ax.set_yticks(np.arange(len(data)))
    ax.set_yticklabels(data["label"].to_numpy()[::-1])
    ax.set_title(_enrichment_title(adata, key))
    finish(ax, show=show, save=save)
    return ax


def _enrichment_compare_data(adata: AnnData, key: str, *, n_sets: int = 15) -> pd.DataFrame:
    """Long table for :func:`enrichment_compare`, two rows (``result`` = 1, 2) per set.

    The ``n_sets`` first sets of the comparison table (smallest adjusted p-value in either result), with columns
    ``label, result, score, rel_score`` (score divided by the largest ``|score|`` of that result over all compared
    sets, so that methods or models with different score scales share one colour scale), ``padj``,
    ``neg_log10_padj`` and ``sig``; sets are ordered by the first result's score (else the second's), highest first.
    """
    _check_n_sets(n_sets)
    table = _compare_table(adata, key)
    top = table.iloc[:n_sets]
    rows = []
    for i in (1, 2):
        scale = np.nanmax(np.abs(table[f"score{i}"].to_numpy(dtype=np.float64)), initial=0.0)
        score = top[f"score{i}"].to_numpy(dtype=np.float64)
        rows.append(
            pd.DataFrame(
                {
                    "label": top.index.to_numpy(dtype=str),
                    "result": i,
                    "score": score,
                    "rel_score": score / scale if scale > 0 else np.zeros_like(score),
                    "padj": top[f"padj{i}"].to_numpy(dtype=np.float64),
                    "neg_log10_padj": _neg_log10(top[f"padj{i}"]),
                    "sig": top[f"sig{i}"].to_numpy(dtype=bool),
                }
            )
        )
    order_key = top["score1"].fillna(top["score2"]).to_numpy()
    order = top.index[np.argsort(-order_key, kind="stable")].tolist()
    data = pd.concat(rows, ignore_index=True)
    data["order"] = data["label"].map({label: j for j, label in enumerate(order)})
    return data.sort_values(["order", "result"], kind="stable").reset_index(drop=True).drop(columns="order")


def _compare_table(adata: AnnData, key: str) -> pd.DataFrame:
    record = adata.uns.get(key)
    if not isinstance(record, dict) or not isinstance(record.get("table"), pd.DataFrame):
        found = [k for k, v in adata.uns.items() if isinstance(v, dict) and isinstance(v.get("table"), pd.DataFrame)]
        raise KeyError(
            f"no enrichment comparison `adata.uns[{key!r}]` (run `gdx.tl.compare_enrichment`); found: {found}"
        )
    table = record["table"]
    if "score1" not in table.columns or "score2" not in table.columns:
        raise ValueError(f"`adata.uns[{key!r}]['table']` is not an enrichment comparison (no score1/score2)")
    return table


def enrichment_compare(
    adata: AnnData,
    key: str,
    *,
    n_sets: int = 15,
    kind: Literal["dot", "scatter"] = "dot",
    cmap: str = "RdBu_r",
    max_log10: float = 10.0,
    labels: tuple[str, str] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **kwargs: Any,
) -> Axes:
    """Two enrichment results side by side, from :func:`gendex.tl.compare_enrichment`.

    Parameters
    ----------
    adata
        AnnData holding the comparison in ``uns[key]``.
    key
        The comparison's ``key_added``.
    n_sets
        Dot plot: number of sets shown (smallest adjusted p-value in either result); scatter: number labelled.
    kind
        ``"dot"``: one column per result, one row per set, colour = score relative to the largest ``|score|``
        of its result (so that results on different scales, e.g. DESeq2 and the generative model, share one
        colour scale), size = -log10 adjusted p-value (black edge when ``padj < alpha`` of the comparison);
        ``"scatter"``: score in result 1 vs result 2 for the shared sets, with the Spearman correlation in the
        title.
    cmap
        Diverging colour map for the score (dot plot).
    max_log10
        Dot plot: -log10 adjusted p-values are capped here for the dot size.
    labels
        Names of the two results; None names them by the DE methods they scored (``"DESeq2"``), else by
        their keys.
    ax
        Axes to draw into; a new figure when None.
    show
        Call ``plt.show()``; None leaves it to Jupyter.
    save
        Full path to save the figure to.
    **kwargs
        Passed to ``Axes.scatter``.

    Returns
    -------
    The Axes.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.pl.enrichment_compare(adata, "compare_enrich_ulm_deseq2_vs_enrich_ulm_nbvae_de")  # doctest: +SKIP
    """
    if kind not in ("dot", "scatter"):
        raise ValueError(f"`kind` must be 'dot' or 'scatter', got {kind!r}")
    record = adata.uns.get(key)
    table = _compare_table(adata, key)
    params = record.get("params", {})
    if labels is None:
        labels = _result_names(adata, str(params.get("key1", "result 1")), str(params.get("key2", "result 2")))
    import matplotlib as mpl

    key1, key2 = str(params.get("key1", "")), str(params.get("key2", ""))
    if kind == "dot":
        from matplotlib.lines import Line2D

        data = _enrichment_compare_data(adata, key, n_sets=n_sets)
        n = data["label"].nunique()
        fig_h = max(2.5, 0.35 * n + 1.6)
        ax = get_ax(ax, figsize=(4.5 + 0.1 * max(map(len, labels)), fig_h))
        y_of = {label: n - 1 - j for j, label in enumerate(pd.unique(data["label"]))}
        y = data["label"].map(y_of).to_numpy()
        capped = bool((data["neg_log10_padj"] > max_log10).any())
        size_value = np.minimum(data["neg_log10_padj"].to_numpy(), max_log10)
        vmax = float(np.nanmax(size_value)) if len(data) else 0.0
        alpha = float(params.get("alpha", 0.05))
        sc = ax.scatter(
            data["result"].to_numpy() - 1,
            y,
            c=data["rel_score"],
            s=_sizes(size_value, vmax),
            cmap=mpl.colormaps[cmap],
            norm=mpl.colors.Normalize(vmin=-1.0, vmax=1.0),
            edgecolors=np.where(data["sig"], "black", "0.75").tolist(),
            linewidths=np.where(data["sig"], 1.0, 0.5).tolist(),
            **kwargs,
        )
        handles, texts = _size_handles(vmax, cap=max_log10 if capped else None) if vmax > 0 else ([], [])
        edge: dict[str, Any] = {"linestyle": "", "marker": "o", "markersize": 8, "markerfacecolor": "white"}
        handles += [
            Line2D([], [], markeredgecolor="black", markeredgewidth=1.0, **edge),
            Line2D([], [], markeredgecolor="0.75", markeredgewidth=0.5, **edge),
        ]
        texts += [f"padj < {alpha:g} (black edge)", f"padj \u2265 {alpha:g} (grey edge)"]
        _side_legend(ax, handles, texts, "size: -log10 padj")
        ax.figure.colorbar(
            sc, ax=ax, label=f"score / max |score| of the result{_direction_label(adata, key1)}", shrink=0.6,
            location="bottom", pad=0.35 / fig_h, fraction=0.15 / fig_h,
        )  # fmt: skip
        ax.xaxis.tick_top()  # the result names head their columns: no band between the dots and the colour bar
        ax.set_xticks([0, 1])
        ax.set_xticklabels(labels, rotation=0 if max(map(len, labels)) <= 12 else 20, ha="center")
        ax.set_xlim(-0.6, 1.6)
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_yticks(sorted(y_of.values()))
        ax.set_yticklabels([label for label, _ in sorted(y_of.items(), key=lambda kv: kv[1])])
        methods = [
            METHOD_NAMES.get(str(_record(adata, k).get("method", "")).lower(), "enrichment") for k in (key1, key2)
        ]
        method = methods[0] if methods[0] == methods[1] else " vs ".join(methods)
        contrast = contrast_label(adata, key1)
        ax.set_title(f"{method}, side by side" + (f": {contrast}" if contrast else ""))
    else:
        ax = get_ax(ax, figsize=(5.0, 4.5))
        shared = table[table["in1"].astype(bool) & table["in2"].astype(bool)]
        ax.scatter(shared["score1"], shared["score2"], s=18, color="0.4", **kwargs)
        ax.axhline(0, color="0.7", linewidth=0.8)
        ax.axvline(0, color="0.7", linewidth=0.8)
        ax.set_xlabel(f"score ({labels[0]}){_direction_label(adata, key1)}")
        ax.set_ylabel(f"score ({labels[1]})")
        top = shared.iloc[:n_sets]
        ax.margins(0.1)
        points = shared[["score1", "score2"]].to_numpy()
        place_labels(ax, top["score1"], top["score2"], top.index.astype(str), avoid_points=points, marker_size=18.0)
        rho = record.get("summary", {}).get("spearman", float("nan"))
        ax.set_title(f"Spearman rho = {float(rho):.2f} ({len(shared)} sets)")
    finish(ax, show=show, save=save)
    return ax

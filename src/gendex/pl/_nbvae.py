"""NB-VAE plots: training curve and decoded expression along a latent path (the latent space: ``pl.latent``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._contrast import deprecated_argument
from ._data import gene_labels, uns_record
from ._utils import finish, get_ax

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes


# -------------------------------------------------------------------------------------------- training curve


#: reader's names of the logged terms (scvi-tools' metric names), the ELBO's terms in its order
_TERM_NAMES = {
    "elbo": "ELBO",
    "reconstruction_loss": "reconstruction",
    "kl_local": "KL (latent)",
    "kl_global": "KL (global prior) / n",
}


def _term_name(column: str) -> str:
    for suffix, mode in (("_train", ""), ("_validation", " (validation)")):
        if column.endswith(suffix) and column.removesuffix(suffix) in _TERM_NAMES:
            return _TERM_NAMES[column.removesuffix(suffix)] + mode
    return column


def _n_train(history: pd.DataFrame, n_obs: int) -> float:
    """The number of training samples scvi-tools divided the global KL by: ``elbo = rec + kl_local + kl_global / n``.

    Read back from the logged terms (median over epochs); ``n_obs`` when they do not tell.
    """
    cols = ("elbo_train", "reconstruction_loss_train", "kl_local_train", "kl_global_train")
    if not set(cols) <= set(history.columns):
        return float(n_obs)
    elbo, rec, kl_local, kl_global = (history[c].to_numpy(dtype=np.float64) for c in cols)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = kl_global / (elbo - rec - kl_local)
    n = n[np.isfinite(n) & (n > 0.5)]
    return float(np.round(np.median(n))) if n.size else float(n_obs)


def _training_curve_data(
    adata: AnnData,
    key: str = "X_nbvae",
    *,
    metrics: Sequence[str] | None = None,
    scale: Literal["relative", "absolute", "log"] = "relative",
) -> pd.DataFrame:
    """The training history ``uns[key]["history"]`` per sample, indexed by epoch, restricted to ``metrics``.

    None keeps every numeric column. ``kl_global_*`` (a total over the model's global parameters) is divided
    by the number of training samples, so that every column is per sample and the ELBO is the sum of its
    terms. With ``scale="relative"`` each column is its change from its value at the last epoch, in % of
    the final ELBO's magnitude (so the terms still add up). Rows where all kept metrics are NaN are dropped;
    ``data.attrs["final"]`` holds each column's last per-sample value, ``attrs["n_train"]`` the divisor.
    """
    if scale not in ("relative", "absolute", "log"):
        raise ValueError(f"`scale` must be 'relative', 'absolute' or 'log', got {scale!r}")
    history = uns_record(adata, key, "history", "gdx.tl.nbvae")
    if isinstance(history, Mapping):
        history = pd.DataFrame(dict(history))
    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"`adata.uns[{key!r}]['history']` must be a DataFrame, got {type(history).__name__}")
    numeric_cols = [str(c) for c in history.columns if pd.api.types.is_numeric_dtype(history[c])]
    if metrics is None:
        metrics = numeric_cols
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        missing = [m for m in metrics if m not in numeric_cols]
        if missing:
            raise KeyError(f"metrics {missing} not in `adata.uns[{key!r}]['history']`; available: {numeric_cols}")
    if not metrics:
        raise ValueError(f"`adata.uns[{key!r}]['history']` has no numeric column to draw")
    history = history.astype(dict.fromkeys(numeric_cols, float))
    n_train = _n_train(history, adata.n_obs)
    data = history[list(metrics)].copy()
    for col in data.columns:
        if col.startswith("kl_global"):
            data[col] = data[col] / n_train
    epoch = pd.to_numeric(pd.Series(history.index), errors="coerce")
    data.index = pd.Index(epoch if epoch.notna().all() else np.arange(len(history)), name="epoch")
    data = data.dropna(how="all")
    final = {c: float(data[c].dropna().iloc[-1]) if data[c].notna().any() else np.nan for c in data.columns}
    if scale == "relative":
        ref = next((abs(final[c]) for c in ("elbo_train", "elbo_validation") if c in final), np.nan)
        if not np.isfinite(ref) or ref == 0:
            ref = max((abs(v) for v in final.values() if np.isfinite(v)), default=1.0) or 1.0
        data = (data - pd.Series(final)) / ref * 100.0
    data.attrs.update(final=final, n_train=n_train)
    return data


def _model_title(adata: AnnData, key: str) -> str:
    record = adata.uns.get(key)
    record = record if isinstance(record, Mapping) else {}
    params = record.get("params", {}) if isinstance(record.get("params"), Mapping) else {}
    name = str(record.get("model", "NB-VAE"))
    bits = [f"{int(params['n_latent'])} latent dimensions"] if "n_latent" in params else []
    return f"{name} training" + (f" ({', '.join(bits)})" if bits else "")


def training_curve(
    adata: AnnData,
    key: str = "X_nbvae",
    *,
    metrics: Sequence[str] | None = None,
    scale: Literal["relative", "absolute", "log"] = "relative",
    logy: bool | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **plot_kwargs: Any,
) -> Axes:
    """Training curve of the NB-VAE: the negative ELBO per sample and its terms against epoch.

    Every term is per sample (the global prior's KL divided by the number of training samples, as in
    the ELBO the model optimises), so ELBO = reconstruction + KL (latent) + KL (global prior) / n. By
    default each curve is drawn as its change from the last epoch in % of the final ELBO: a converged
    fit ends flat at 0 whatever the ELBO's size, which a linear axis from 0 to 80,000 hides. The legend
    gives each term's final value.

    Parameters
    ----------
    adata
        AnnData on which :func:`gendex.tl.nbvae` ran.
    key
        Its ``key_added``; the history is read from ``adata.uns[key]["history"]``.
    metrics
        History columns to draw (scvi-tools' names: ``elbo_train``, ``reconstruction_loss_train``,
        ``kl_local_train``, ``kl_global_train``, ...); None draws every numeric column.
    scale
        ``"relative"``: change from the last epoch (% of the final ELBO); ``"absolute"``: the per-sample
        values; ``"log"``: the per-sample values on a log axis.
    logy
        Deprecated: use ``scale="log"``.
    title
        The title; None names the model ("NB-VAE training (2 latent dimensions)").
    ax
        Axes to draw into; a new figure is created when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter.
    save
        Full path to save the figure to.
    **plot_kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.pl.training_curve(adata, "X_nbvae")  # doctest: +SKIP
    >>> gdx.pl.training_curve(adata, "X_nbvae", metrics=["elbo_train"], scale="absolute")  # doctest: +SKIP
    """
    if logy is not None:
        deprecated_argument("logy", 'scale="log"', "gdx.pl.training_curve")
        scale = "log" if logy else scale
    data = _training_curve_data(adata, key, metrics=metrics, scale=scale)
    final = data.attrs["final"]
    ax = get_ax(ax, figsize=(5.5, 3.8))
    for col in data.columns:
        values = data[col].dropna()
        style = {"linestyle": "--"} if col.endswith("_validation") else {}
        label = f"{_term_name(col)} (final {final[col]:,.{0 if abs(final[col]) >= 100 else 2}f})"
        ax.plot(values.index, values.to_numpy(), label=label, **style | dict(plot_kwargs))
    if scale == "log":
        ax.set_yscale("log")
    if scale == "relative":
        ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
        ax.set_ylabel("change from the last epoch\n(% of the final ELBO)")
    else:
        ax.set_ylabel("loss per sample\n(negative ELBO and its terms)")
    ax.set_xlabel("epoch")
    ax.set_title(_model_title(adata, key) if title is None else title)
    ax.legend(
        title="per sample", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small",
        title_fontsize="small", alignment="left",
    )  # fmt: skip
    finish(ax, show=show, save=save)
    return ax


# ------------------------------------------------------------------------------------------ genes along a path


def _latent_genes_data(
    adata: AnnData,
    key: str = "latent_path",
    genes: Sequence[str] | None = None,
    *,
    gene_symbols: str | None = "symbol",
    relative: bool = False,
) -> pd.DataFrame:
    """Decoded expression along the path: index ``t``, one column per gene (by ``var_names``).

    ``genes`` are ``var_names`` or, when not found there, symbols in ``var[gene_symbols]``; None takes every
    gene stored. With ``relative`` the values are ``log2(expression / expression at the start)``.
    """
    expr = uns_record(adata, key, "expression", "gdx.tl.latent_path")
    t = np.asarray(uns_record(adata, key, "t", "gdx.tl.latent_path"), dtype=float).ravel()
    if not isinstance(expr, pd.DataFrame):
        raise TypeError(f"`adata.uns[{key!r}]['expression']` must be a DataFrame, got {type(expr).__name__}")
    if len(expr) != t.size:
        raise ValueError(f"`adata.uns[{key!r}]`: 't' has {t.size} points but 'expression' {len(expr)} rows")
    columns = [str(c) for c in expr.columns]
    if genes is None:
        chosen = columns
    else:
        genes = [genes] if isinstance(genes, str) else list(genes)
        labels = gene_labels(adata, gene_symbols)
        by_symbol = {lab: name for name, lab in labels.items() if name in columns}
        chosen, missing = [], []
        for g in genes:
            if g in columns:
                chosen.append(g)
            elif g in by_symbol:
                chosen.append(by_symbol[g])
            else:
                missing.append(g)
        if missing:
            raise KeyError(f"genes {missing} not decoded in `adata.uns[{key!r}]['expression']`; it has {columns[:20]}")
    data = expr.copy()
    data.columns = columns
    data = data[chosen].astype(float)
    if relative:
        with np.errstate(divide="ignore", invalid="ignore"):
            data = np.log2(data / data.iloc[0])
    data.index = pd.Index(t, name="t")
    return data


def latent_genes(
    adata: AnnData,
    key: str = "latent_path",
    genes: Sequence[str] | None = None,
    *,
    gene_symbols: str | None = "symbol",
    relative: bool = False,
    logy: bool = False,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **plot_kwargs: Any,
) -> Axes:
    """Decoded expression of genes along a straight path in latent space (from :func:`gendex.tl.latent_path`).

    Parameters
    ----------
    adata
        AnnData holding ``uns[key]`` with ``t``, ``expression`` and ``params``.
    key
        The path's ``key_added``.
    genes
        Genes to draw (``var_names`` or symbols); None draws every decoded gene.
    gene_symbols
        ``var`` column with gene symbols for the legend; ``var_names`` where absent.
    relative
        Draw ``log2(expression / expression at the start)`` instead of the expression.
    logy
        Log-scale y axis (ignored with ``relative``).
    ax
        Axes to draw into; a new figure is created when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter.
    save
        Full path to save the figure to.
    **plot_kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.pl.latent_genes(adata, "latent_path", genes=["Csn2", "Krt5"])  # doctest: +SKIP
    """
    data = _latent_genes_data(adata, key, genes, gene_symbols=gene_symbols, relative=relative)
    labels = gene_labels(adata, gene_symbols)
    ax = get_ax(ax, figsize=(5.0, 3.5))
    for gene in data.columns:
        ax.plot(data.index, data[gene].to_numpy(), label=labels.get(gene, gene), **plot_kwargs)
    if logy and not relative:
        ax.set_yscale("log")
    params = adata.uns[key].get("params", {})
    params = params if isinstance(params, Mapping) else {}
    start = str(params.get("start_label", "start"))
    end = str(params.get("end_label", "end"))
    ax.set_xticks([0.0, 1.0], labels=[start, end])
    ax.set_xlabel("position along the latent path")
    ax.set_ylabel("log2 change from the start" if relative else "decoded normalised expression")
    ax.set_title(f"NB-VAE decoded expression: {start} to {end}")
    if 0 < data.shape[1] <= 20:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    finish(ax, show=show, save=save)
    return ax

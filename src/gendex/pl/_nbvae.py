"""NB-VAE plots: latent space, training curve and decoded expression along a latent path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._data import gene_labels, uns_record
from ._utils import finish, get_ax

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes


# -------------------------------------------------------------------------------------------- training curve


def _training_curve_data(adata: AnnData, key: str = "X_nbvae", *, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """The training history ``uns[key]["history"]`` indexed by epoch, restricted to ``metrics``.

    None keeps every numeric column. Rows where all kept metrics are NaN are dropped.
    """
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
    data = history[list(metrics)].astype(float)
    epoch = pd.to_numeric(pd.Series(history.index), errors="coerce")
    data.index = pd.Index(epoch if epoch.notna().all() else np.arange(len(history)), name="epoch")
    return data.dropna(how="all")


def training_curve(
    adata: AnnData,
    key: str = "X_nbvae",
    *,
    metrics: Sequence[str] | None = None,
    logy: bool = False,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **plot_kwargs: Any,
) -> Axes:
    """Training curve of the NB-VAE: loss terms (``elbo_train`` etc.) against epoch.

    Parameters
    ----------
    adata
        AnnData on which :func:`gendex.tl.nbvae` ran.
    key
        Its ``key_added``; the history is read from ``adata.uns[key]["history"]``.
    metrics
        History columns to draw; None draws every numeric column (``elbo_train``,
        ``reconstruction_loss_train``, ``kl_local_train``, ... whatever was logged).
    logy
        Log-scale y axis (the ELBO and the KL terms differ by orders of magnitude).
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
    >>> gdx.pl.training_curve(adata, "X_nbvae", metrics=["elbo_train"])  # doctest: +SKIP
    """
    data = _training_curve_data(adata, key, metrics=metrics)
    ax = get_ax(ax, figsize=(5.0, 3.5))
    for col in data.columns:
        values = data[col].dropna()
        ax.plot(values.index, values.to_numpy(), label=col, **plot_kwargs)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (negative ELBO and its terms)")
    ax.set_title(key)
    ax.legend(frameon=False, fontsize="small")
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
    ax.set_title(f"{key}: {start} to {end}")
    if 0 < data.shape[1] <= 20:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    finish(ax, show=show, save=save)
    return ax

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


# ---------------------------------------------------------------------------------------------------- latent


def _resolve_basis(adata: AnnData, basis: str) -> str:
    if basis in adata.obsm:
        return basis
    if f"X_{basis}" in adata.obsm:
        return f"X_{basis}"
    raise KeyError(f"`adata.obsm[{basis!r}]` not found (run `gdx.tl.nbvae` first); available: {list(adata.obsm)}")


def _is_categorical(col: pd.Series) -> bool:
    return isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col) or col.dtype == bool


def _latent_data(
    adata: AnnData,
    *,
    basis: str = "X_nbvae",
    color: str | None = "celltype",
    components: tuple[int, int] = (0, 1),
) -> pd.DataFrame:
    """Sample coordinates ``x``, ``y`` (columns ``components`` of ``obsm[basis]``) and the ``color`` column.

    A categorical (or string/bool) ``color`` column is returned as a categorical, a numeric one as float.
    """
    basis = _resolve_basis(adata, basis)
    emb = np.asarray(adata.obsm[basis].to_numpy() if isinstance(adata.obsm[basis], pd.DataFrame) else adata.obsm[basis])
    if emb.ndim != 2 or emb.shape[1] < 2:
        raise ValueError(f"`adata.obsm[{basis!r}]` must have at least 2 columns to draw, got shape {emb.shape}")
    comps = [int(c) for c in components]
    if len(comps) != 2 or any(not 0 <= c < emb.shape[1] for c in comps) or comps[0] == comps[1]:
        raise ValueError(f"`components` must be two different column indices in [0, {emb.shape[1]}), got {components}")
    data = pd.DataFrame(
        {"x": emb[:, int(components[0])].astype(float), "y": emb[:, int(components[1])].astype(float)},
        index=adata.obs_names,
    )
    if color is not None:
        if color not in adata.obs.columns:
            raise KeyError(f"`adata.obs[{color!r}]` not found; available columns: {list(adata.obs.columns)}")
        col = adata.obs[color]
        if _is_categorical(col):
            data[color] = col.astype(str).astype("category") if not isinstance(col.dtype, pd.CategoricalDtype) else col
        else:
            data[color] = col.astype(float)
    return data


def _category_colors(adata: AnnData, color: str, levels: Sequence[str], palette: Any) -> dict[str, Any]:
    import matplotlib as mpl

    if isinstance(palette, Mapping):
        missing = [lv for lv in levels if lv not in palette]
        if missing:
            raise ValueError(f"`palette` has no colour for {missing}")
        return {lv: palette[lv] for lv in levels}
    if palette is None:
        stored = adata.uns.get(f"{color}_colors")  # scanpy's convention
        if stored is not None and len(stored) >= len(levels):
            return {lv: stored[i] for i, lv in enumerate(levels)}
        palette = "tab10" if len(levels) <= 10 else "tab20"
    if isinstance(palette, str):
        cmap = mpl.colormaps[palette]
        n = getattr(cmap, "N", 256)
        return {lv: cmap(i % n if n < 256 else i / max(len(levels) - 1, 1)) for i, lv in enumerate(levels)}
    palette = list(palette)
    if len(palette) < len(levels):
        raise ValueError(f"`palette` has {len(palette)} colours for {len(levels)} categories")
    return {lv: palette[i] for i, lv in enumerate(levels)}


def latent(
    adata: AnnData,
    *,
    basis: str = "X_nbvae",
    color: str | None = "celltype",
    components: tuple[int, int] = (0, 1),
    annotate: bool = False,
    palette: str | Sequence[Any] | Mapping[str, Any] | None = None,
    cmap: str = "viridis",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **scatter_kwargs: Any,
) -> Axes:
    """Scatter of the samples in a latent space (``obsm[basis]``), coloured by an ``obs`` column.

    Categorical columns get one colour per category and a legend (colours from ``uns[f"{color}_colors"]``
    when present, scanpy's convention); numeric columns a colour map and a colour bar.

    Parameters
    ----------
    adata
        AnnData with an embedding in ``obsm``.
    basis
        ``obsm`` key (``"nbvae"`` also finds ``"X_nbvae"``).
    color
        ``obs`` column to colour by; None draws every sample in one colour.
    components
        The two embedding columns (0-based) to draw.
    annotate
        Write each sample's name beside its point (handy for a dozen bulk samples).
    palette
        Colours of the categories: a colour-map name, a list, or a mapping category -> colour.
    cmap
        Colour map for a numeric ``color``.
    ax
        Axes to draw into; a new figure is created when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter.
    save
        Full path to save the figure to.
    **scatter_kwargs
        Passed to :meth:`~matplotlib.axes.Axes.scatter`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.pl.latent(adata, basis="X_nbvae", color="celltype")  # doctest: +SKIP
    """
    data = _latent_data(adata, basis=basis, color=color, components=components)
    basis = _resolve_basis(adata, basis)
    ax = get_ax(ax, figsize=(4.5, 4.0))
    style = {"s": 40, "edgecolors": "white", "linewidths": 0.5} | dict(scatter_kwargs)
    if color is None:
        ax.scatter(data["x"], data["y"], **style)
    elif isinstance(data[color].dtype, pd.CategoricalDtype):
        levels = [str(c) for c in data[color].cat.categories if (data[color] == c).any()]
        colors = _category_colors(adata, color, [str(c) for c in data[color].cat.categories], palette)
        for level in levels:
            sub = data[data[color].astype(str) == level]
            ax.scatter(sub["x"], sub["y"], color=colors[level], label=level, **style)
        ax.legend(title=color, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    else:
        points = ax.scatter(data["x"], data["y"], c=data[color], cmap=cmap, **style)
        ax.figure.colorbar(points, ax=ax, label=color)
    if annotate:
        for name, row in data.iterrows():
            ax.annotate(str(name), (row["x"], row["y"]), xytext=(3, 3), textcoords="offset points", fontsize="x-small")
    name = basis[2:] if basis.startswith("X_") else basis
    ax.set_xlabel(f"{name} latent dimension {int(components[0]) + 1}")
    ax.set_ylabel(f"{name} latent dimension {int(components[1]) + 1}")
    finish(ax, show=show, save=save)
    return ax


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

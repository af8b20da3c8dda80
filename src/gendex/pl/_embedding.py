"""Sample embeddings: one ``pl.embedding`` and its thin names ``pl.pca``, ``pl.mds`` and ``pl.latent``."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._contrast import deprecated_argument
from ._colors import sample_colors
from ._labels import place_labels, sample_labels
from ._utils import finish, get_ax

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: the function that writes each known basis, for the error when it is missing
_MAKERS = {"X_pca": "gdx.tl.pca", "X_mds": "gdx.tl.mds", "X_nbvae": "gdx.tl.nbvae"}


def _resolve_basis(adata: AnnData, basis: str) -> str:
    """``basis`` or ``f"X_{basis}"``, whichever ``obsm`` holds; a KeyError naming the writer otherwise."""
    if not isinstance(basis, str):
        raise TypeError(f"`basis` must be the str key of an embedding in `adata.obsm`, got {type(basis).__name__}")
    for cand in (basis, f"X_{basis}"):
        if cand in adata.obsm:
            return cand
    full = basis if basis.startswith("X_") else f"X_{basis}"
    maker = _MAKERS.get(full)
    hint = f" (run `{maker}(adata)` first)" if maker else ""
    raise KeyError(f"`adata.obsm[{basis!r}]` not found{hint}; available: {list(adata.obsm)}")


def _axis_format(adata: AnnData, basis: str) -> tuple[str, np.ndarray | None, str]:
    """The axis label pattern (``{d}`` = 1-based component), the stored variance ratios and the title."""
    name = basis.removeprefix("X_") or basis
    found: list[Mapping[str, Any]] = [r for r in (adata.uns.get(name), adata.uns.get(basis)) if isinstance(r, Mapping)]
    rec = found[0] if found else {}
    ratio = np.asarray(rec["variance_ratio"], dtype=np.float64) if "variance_ratio" in rec else None
    params: Mapping[str, Any] = rec["params"] if isinstance(rec.get("params"), Mapping) else {}
    kind = rec.get("method") if rec.get("method") in ("pca", "mds") else None
    kind = kind or ("pca" if "n_comps" in params or name == "pca" else "mds" if "axis_label" in rec else None)
    if "axis_label" in rec:
        fmt = f"{rec['axis_label']} {{d}}"
    elif kind == "pca":
        fmt = "PC{d}"
    elif "history" in rec:  # a trained model's latent space (tl.nbvae)
        fmt = f"{name} latent dimension {{d}}"
    else:
        fmt = f"{name} {{d}}"
    if "history" in rec or name == "nbvae":
        title = "NB-VAE latent space"
    elif kind is not None:
        title = kind.upper() + (f" of {params['layer']}" if params.get("layer") else "")
    else:
        title = name
    return fmt, ratio, title


def _check_components(components: Sequence[int], n_dims: int, basis: str) -> tuple[int, int]:
    comps = tuple(components) if isinstance(components, Sequence) and not isinstance(components, str) else ()
    ok = len(comps) == 2 and all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in comps)
    if not ok or not all(1 <= c <= n_dims for c in comps) or comps[0] == comps[1]:
        raise ValueError(
            f"`components` must be two different 1-based components in 1..{n_dims} "
            f"(the number stored in `adata.obsm[{basis!r}]`), got {components!r}"
        )
    return int(comps[0]), int(comps[1])


def _embedding_data(
    adata: AnnData,
    basis: str = "X_pca",
    *,
    components: Sequence[int] = (1, 2),
    color: str | None = None,
    labels: bool | str | None = False,
) -> tuple[pd.DataFrame, tuple[str, str]]:
    """Coordinates of two stored components (1-based) per sample and the axis labels (with % variance).

    Columns: ``x``, ``y``, the ``color`` column when given, ``label`` when ``labels`` is given (short sample
    names or an ``obs`` column, see :func:`gendex.pl._labels.sample_labels`).
    """
    basis = _resolve_basis(adata, basis)
    emb = adata.obsm[basis]
    coords = np.asarray(emb.to_numpy() if isinstance(emb, pd.DataFrame) else emb, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise ValueError(f"`adata.obsm[{basis!r}]` must have at least 2 columns to draw, got shape {coords.shape}")
    c1, c2 = _check_components(components, coords.shape[1], basis)
    for col in [c for c in (color, labels if isinstance(labels, str) else None) if c is not None]:
        if col not in adata.obs.columns:
            raise KeyError(f"`adata.obs[{col!r}]` not found; available columns: {list(adata.obs.columns)}")
    df = pd.DataFrame({"x": coords[:, c1 - 1], "y": coords[:, c2 - 1]}, index=adata.obs_names.copy())
    if color is not None:
        df[color] = adata.obs[color].to_numpy()
    names = sample_labels(adata, labels=labels)
    if names is not None:
        df["label"] = names.to_numpy()
    fmt, ratio, _title = _axis_format(adata, basis)

    def axis(d: int) -> str:
        text = fmt.format(d=d)
        return f"{text} ({round(100 * ratio[d - 1])}%)" if ratio is not None and d <= ratio.size else text

    return df, (axis(c1), axis(c2))


def embedding(
    adata: AnnData,
    basis: str = "X_pca",
    *,
    components: Sequence[int] = (1, 2),
    color: str | None = None,
    labels: bool | str | None = False,
    palette: str | Sequence[Any] | Mapping[str, Any] | None = None,
    cmap: str = "viridis",
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **scatter_kwargs: Any,
) -> Axes:
    """Scatter of the samples in a stored embedding (``obsm[basis]``), coloured by an ``obs`` column.

    Every sample embedding is drawn by this function (:func:`pca`, :func:`mds` and :func:`latent` are thin
    names over it). Nothing is recomputed: the coordinates are ``obsm[basis]`` and the axis labels carry
    each component's share of the variance when ``uns`` holds it (``tl.pca``, ``tl.mds``).

    Parameters
    ----------
    adata
        AnnData with an embedding in ``obsm``.
    basis
        ``obsm`` key (``"pca"`` also finds ``"X_pca"``).
    components
        The two components to draw, 1-based (as in ``sc.pl.embedding`` and limma's ``dim.plot``).
    color
        ``obs`` column to colour the samples by (categorical: a legend; numeric: a colour bar; missing
        values grey), or None for one colour.
    labels
        Label the points: True with short sample names (the shortest unique ``_``-separated start of each
        name, e.g. ``MCL1-DG`` for ``MCL1-DG_BC2CTUACXX_ACTTGA_L002_R1``), a string with that ``obs``
        column, False/None for none. Labels are placed inside the axes without overlapping each other.
    palette
        Colours of the categories: a colour-map name, a list, or a mapping category -> colour; None uses
        ``uns[f"{color}_colors"]`` when it has one colour per category (scanpy's convention), else ``tab10``.
    cmap
        Colour map for a numeric ``color``.
    title
        The title; None names the embedding ("PCA of log_cpm", "MDS of log_cpm", "NB-VAE latent space").
    ax
        Axes to draw into; a new figure when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter's inline backend.
    save
        Full path to save the figure to.
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter`.

    Returns
    -------
    The Axes; the axis labels read ``PC1 (45%)`` or ``Leading logFC dim 1 (45%)``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=300)
    >>> gdx.pp.log_cpm(adata)
    >>> gdx.tl.pca(adata)
    >>> ax = gdx.pl.embedding(adata, "X_pca", components=(1, 3), color="condition", labels=True)
    """
    df, axis_labels = _embedding_data(adata, basis, components=components, color=color, labels=labels)
    spec = sample_colors(adata, color, palette=palette, cmap=cmap)
    _fmt, _ratio, default_title = _axis_format(adata, _resolve_basis(adata, basis))
    ax = get_ax(ax, figsize=(5.5 if color is not None else 4.5, 4.5))
    kwargs = {"s": 50, "edgecolors": "white", "linewidths": 0.5, **scatter_kwargs}
    colors = np.array(spec.colors)
    if spec.categories:
        values = df[color].astype(str).where(df[color].notna(), None).to_numpy()
        for level, rgba in spec.categories.items():
            mask = values == level
            ax.scatter(df["x"][mask], df["y"][mask], color=[rgba], label=level, **kwargs)
        missing = pd.isna(df[color]).to_numpy()
        if missing.any():
            ax.scatter(df["x"][missing], df["y"][missing], color=colors[missing], label="NA", **kwargs)
    else:
        ax.scatter(df["x"], df["y"], color=colors, **kwargs)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(default_title if title is None else title)
    spec.add_legend(ax, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if "label" in df.columns:  # after the legend and colour bar, which move the axes
        ax.margins(0.12)
        place_labels(ax, df["x"], df["y"], df["label"], fontsize="small", marker_size=float(kwargs["s"]))
    finish(ax, show=show, save=save)
    return ax


def _old_arguments(
    func: str, basis: str, components: Sequence[int], key: str | None, dims: Sequence[int] | None
) -> tuple[str, Sequence[int]]:
    """Map the deprecated ``key=``/``dims=`` of ``pl.pca``/``pl.mds`` onto ``basis``/``components``."""
    if key is not None:
        deprecated_argument("key", "basis=", func, stacklevel=4)
        basis = key
    if dims is not None:
        deprecated_argument("dims", "components=", func, stacklevel=4)
        components = dims
    return basis, components


def pca(
    adata: AnnData,
    basis: str = "X_pca",
    *,
    components: Sequence[int] = (1, 2),
    key: str | None = None,
    dims: Sequence[int] | None = None,
    **kwargs: Any,
) -> Axes:
    """PCA plot of the samples from :func:`gendex.tl.pca`: :func:`~gendex.pl.embedding` with ``basis="X_pca"``.

    Parameters
    ----------
    adata
        AnnData with ``obsm[basis]`` and ``uns[basis without "X_"]`` written by :func:`gendex.tl.pca`.
    basis
        ``obsm`` key of the scores (``"X_" + key_added`` of :func:`gendex.tl.pca`).
    components
        The two components to plot, 1-based.
    key
        Deprecated: use ``basis``.
    dims
        Deprecated: use ``components``.
    **kwargs
        ``color``, ``labels``, ``ax``, ``show``, ``save`` and the other arguments of :func:`~gendex.pl.embedding`, or
        arguments of ``Axes.scatter``.

    Returns
    -------
    The Axes; the axis labels read ``PC1 (45%)``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=300)
    >>> gdx.pp.log_cpm(adata)
    >>> gdx.tl.pca(adata)
    >>> ax = gdx.pl.pca(adata, color="condition", components=(1, 3))
    """
    basis, components = _old_arguments("gdx.pl.pca", basis, components, key, dims)
    return embedding(adata, basis, components=components, **kwargs)


def mds(
    adata: AnnData,
    basis: str = "X_mds",
    *,
    components: Sequence[int] = (1, 2),
    key: str | None = None,
    dims: Sequence[int] | None = None,
    **kwargs: Any,
) -> Axes:
    """MDS plot of the samples (limma's ``plotMDS``) from :func:`gendex.tl.mds`: :func:`~gendex.pl.embedding` of X_mds.

    Distances on the plot approximate the typical (root-mean-square leading) log2 fold changes between
    samples; the axes show each dimension's share of the variance.

    Parameters
    ----------
    adata
        AnnData with ``obsm[basis]`` and ``uns[basis without "X_"]`` written by :func:`gendex.tl.mds`.
    basis
        ``obsm`` key of the coordinates (``"X_" + key_added`` of :func:`gendex.tl.mds`).
    components
        The two dimensions to plot, 1-based as in limma's ``dim.plot``.
    key
        Deprecated: use ``basis``.
    dims
        Deprecated: use ``components``.
    **kwargs
        ``color``, ``labels``, ``ax``, ``show``, ``save`` and the other arguments of :func:`~gendex.pl.embedding`, or
        arguments of ``Axes.scatter``.

    Returns
    -------
    The Axes; the axis labels read ``Leading logFC dim 1 (45%)``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=300)
    >>> gdx.pp.log_cpm(adata)
    >>> gdx.tl.mds(adata)
    >>> ax = gdx.pl.mds(adata, color="condition", labels=True)
    """
    basis, components = _old_arguments("gdx.pl.mds", basis, components, key, dims)
    return embedding(adata, basis, components=components, **kwargs)


def latent(
    adata: AnnData,
    basis: str = "X_nbvae",
    *,
    components: Sequence[int] = (1, 2),
    annotate: bool | None = None,
    **kwargs: Any,
) -> Axes:
    """The samples in a model's latent space (``obsm[basis]``, e.g. from :func:`gendex.tl.nbvae`).

    :func:`~gendex.pl.embedding` with ``basis="X_nbvae"``.

    Parameters
    ----------
    adata
        AnnData with an embedding in ``obsm``.
    basis
        ``obsm`` key (``"nbvae"`` also finds ``"X_nbvae"``).
    components
        The two latent dimensions to draw, 1-based (a 0 among them is read as the former 0-based form,
        with a deprecation warning).
    annotate
        Deprecated: use ``labels=True``.
    **kwargs
        ``color``, ``labels``, ``ax``, ``show``, ``save`` and the other arguments of :func:`~gendex.pl.embedding`, or
        arguments of ``Axes.scatter``.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.pl.latent(adata, color="celltype", labels=True)  # doctest: +SKIP
    """
    if annotate is not None:
        deprecated_argument("annotate", "labels=True", "gdx.pl.latent")
        kwargs["labels"] = kwargs.get("labels") or bool(annotate)
    comps = list(components) if isinstance(components, Sequence) and not isinstance(components, str) else []
    if 0 in comps and all(isinstance(c, int | np.integer) for c in comps):
        warnings.warn(
            "0-based `components` of `gdx.pl.latent` are deprecated and will be removed in the next release; "
            f"components are 1-based now: use `components={tuple(int(c) + 1 for c in comps)}`",
            FutureWarning,
            stacklevel=2,
        )
        components = tuple(int(c) + 1 for c in comps)
    return embedding(adata, basis, components=components, **kwargs)

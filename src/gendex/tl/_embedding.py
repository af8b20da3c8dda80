"""Sample embeddings: ``tl.mds`` (limma's plotMDS distances) and ``tl.pca``, stored for ``pl.mds``/``pl.pca``."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from anndata import AnnData
from numpy.typing import NDArray

from .._contrast import deprecated_argument
from .._lazy import is_dask
from .._utils import h5ad_safe
from .._validation import get_matrix, to_dense
from ..stats import classical_mds, leading_logfc_distances
from ..stats import pca as pca_kernel

logger = logging.getLogger(__name__)


def embedding_keys(key_added: str) -> str:
    """The name of an embedding: ``"mds"`` and ``"X_mds"`` -> ``"mds"`` (``obsm["X_mds"]``, ``uns["mds"]``)."""
    return key_added.removeprefix("X_") or key_added


#: A layer on disk (a dask array) larger than this as float64 is loaded with a warning (see :func:`_log_values`).
LOAD_WARN_BYTES = 2**30


def _log_values(adata: AnnData, layer: str | None, *, finite_genes: bool) -> tuple[NDArray, NDArray[np.bool_]]:
    """Dense float copy of the log-expression layer; genes with a non-finite value are dropped (as limma).

    A dask layer (out-of-core counts) is loaded whole: with a warning when it takes more than
    ``LOAD_WARN_BYTES`` as float64.
    """
    if layer is not None and layer not in adata.layers:
        hint = " (run `gdx.pp.log_cpm(adata)` first)" if layer == "log_cpm" else ""
        raise KeyError(f"`adata.layers[{layer!r}]` not found{hint}; available: {list(adata.layers)}")
    stored = get_matrix(adata, layer)
    need = int(np.prod(stored.shape)) * 8
    if is_dask(stored) and need > LOAD_WARN_BYTES:
        where = "`adata.X`" if layer is None else f"`adata.layers[{layer!r}]`"
        warnings.warn(
            f"tl.pca and tl.mds load {where} into memory ({stored.shape[0]:,} x {stored.shape[1]:,}, "
            f"{need / 2**30:.1f} GB as float64); run them on a gene subset, e.g. "
            "`gdx.tl.pca(adata[:, top_genes].copy())` with the most variable genes",
            UserWarning,
            stacklevel=3,
        )
    x = to_dense(stored, dtype=np.float64)
    finite = np.isfinite(x).all(axis=0)
    if not finite_genes and not finite.all():
        where = "`adata.X`" if layer is None else f"`adata.layers[{layer!r}]`"
        raise ValueError(f"{where} has non-finite values in {int((~finite).sum())} gene(s)")
    if not finite.any():
        raise ValueError("no gene has finite values in every sample")
    if not finite.all():
        logger.info("leaving out %d genes with non-finite values", int((~finite).sum()))
    return x[:, finite], finite


def mds(
    adata: AnnData,
    *,
    layer: str | None = "log_cpm",
    n_top_genes: int = 500,
    n_comps: int = 2,
    key_added: str = "mds",
    copy: bool = False,
    top: int | None = None,
    n_components: int | None = None,
) -> AnnData | None:
    """Multidimensional scaling of the samples on leading log-fold-changes (limma's ``plotMDS``).

    The distance between two samples is the root-mean-square of the ``n_top_genes`` largest absolute log-fold-changes
    between them (each pair chooses its own genes: limma's ``gene.selection="pairwise"``); the distance
    matrix is embedded by classical MDS (R's ``cmdscale``), and each dimension's share of the positive
    eigenvalues is its proportion of variance explained, as limma prints on the axes.

    Parameters
    ----------
    adata
        Samples x genes AnnData with log-expression values, e.g. from :func:`gendex.pp.log_cpm`.
    layer
        Layer with the log-expression values; None means ``X``. Genes with a non-finite value are left out.
        A dask layer (out-of-core counts) is read into memory whole, with a warning above 1 GB as float64:
        pass a gene subset of a large cohort.
    n_top_genes
        Number of leading genes per pair of samples (capped at the number of genes); limma's ``top``.
    n_comps
        Number of dimensions to keep; at most ``n_samples - 1``.
    key_added
        Name of the embedding: coordinates in ``obsm[f"X_{key_added}"]`` (scanpy's ``basis``), the record in
        ``uns[key_added]``; a leading ``X_`` is dropped (``"X_mds"`` means ``"mds"``).
    copy
        Work on a copy of ``adata`` and return it.
    top, n_components
        Deprecated names of ``n_top_genes`` and ``n_comps`` (they work in 0.1, with a :class:`FutureWarning`).

    Returns
    -------
    Sets ``adata.obsm["X_<key>"]`` (samples x ``n_comps`` coordinates),
    ``adata.obsp["<key>_distances"]`` (the leading log-fold-change distances) and ``adata.uns["<key>"]``:
    ``{"method": "mds", "params": {...}, "eigenvalues", "variance_ratio", "axis_label": "Leading logFC dim"}``, where
    ``<key>`` is ``key_added`` without ``X_``. Returns None, or the modified copy when ``copy=True``.

    Notes
    -----
    limma's current ``plotMDS`` :cite:p:`Ritchie2015` (``gene.selection="pairwise"``) computes, for samples
    ``i`` and ``j``, ``d_ij^2 = mean of the top largest (x_gi - x_gj)^2``, double-centres ``-d^2/2``, and
    takes the eigenvectors scaled by the square roots of the (non-negative) eigenvalues. The signs of the
    dimensions are arbitrary (here: the largest coordinate of each dimension is positive).

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=300)
    >>> gdx.pp.log_cpm(adata)
    >>> gdx.tl.mds(adata)
    >>> adata.obsm["X_mds"].shape
    (6, 2)
    """
    if top is not None:
        deprecated_argument("top", "n_top_genes=", "gendex.tl.mds")
        n_top_genes = top
    if n_components is not None:
        deprecated_argument("n_components", "n_comps=", "gendex.tl.mds")
        n_comps = n_components
    if not isinstance(n_top_genes, int | np.integer) or n_top_genes < 1:
        raise ValueError(f"`n_top_genes` must be a positive integer, got {n_top_genes!r}")
    if not isinstance(n_comps, int | np.integer) or not 1 <= n_comps <= adata.n_obs - 1:
        raise ValueError(
            f"`n_comps` must lie in [1, n_samples - 1 = {adata.n_obs - 1}], got {n_comps!r} "
            "(MDS of n samples has at most n - 1 dimensions)"
        )
    x, finite = _log_values(adata, layer, finite_genes=True)
    distances = leading_logfc_distances(x, top=n_top_genes)
    coords, eigenvalues = classical_mds(distances, n_components=n_comps)
    if eigenvalues.sum() <= 0:
        raise ValueError("all samples are identical over the leading genes: MDS is undefined")
    ratio = eigenvalues / eigenvalues.sum()
    key = embedding_keys(key_added)
    if copy:
        adata = adata.copy()
    adata.obsm[f"X_{key}"] = coords
    adata.obsp[f"{key}_distances"] = distances
    adata.uns[key] = h5ad_safe(
        {
            "method": "mds",
            "params": {
                "layer": "X" if layer is None else layer,
                "n_top_genes": int(min(n_top_genes, x.shape[1])),
                "n_comps": int(n_comps),
                "gene_selection": "pairwise",
                "n_genes": int(finite.sum()),
            },
            "eigenvalues": eigenvalues[:n_comps],
            "variance_ratio": ratio[:n_comps],
            "axis_label": "Leading logFC dim",
        }
    )
    return adata if copy else None


def pca(
    adata: AnnData,
    *,
    layer: str | None = "log_cpm",
    n_comps: int | None = None,
    n_top_genes: int | None = None,
    key_added: str = "pca",
    copy: bool = False,
) -> AnnData | None:
    """Principal component analysis of the samples (genes centred, not scaled).

    Parameters
    ----------
    adata
        Samples x genes AnnData with log-expression values, e.g. from :func:`gendex.pp.log_cpm`.
    layer
        Layer with the values; None means ``X``. Every value must be finite. A dask layer (out-of-core counts)
        is read into memory whole, with a warning above 1 GB as float64: pass a gene subset of a large cohort.
    n_comps
        Number of components; None means ``min(50, n_samples - 1, n_genes)``.
    n_top_genes
        Use only the genes of highest variance (DESeq2's ``plotPCA`` uses 500); None uses every gene.
    key_added
        Name of the embedding: scores in ``obsm[f"X_{key_added}"]``, the record in ``uns[key_added]``; ``"pca"``
        writes the loadings to ``varm["PCs"]`` (scanpy's names), another name to ``varm[f"PCs_{key_added}"]``.
        A leading ``X_`` is dropped (``"X_pca"`` means ``"pca"``).
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Sets ``adata.obsm["X_pca"]`` (samples x components scores), ``adata.varm["PCs"]`` (genes x components
    loadings; zero for genes left out by ``n_top_genes``) and ``adata.uns["pca"]``: ``{"params": {...},
    "variance", "variance_ratio"}`` (``variance_ratio`` = share of the total variance of the genes used).
    Returns None, or the modified copy when ``copy=True``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=300)
    >>> gdx.pp.log_cpm(adata)
    >>> gdx.tl.pca(adata, n_comps=3)
    >>> adata.uns["pca"]["variance_ratio"].shape
    (3,)
    """
    if n_top_genes is not None and (not isinstance(n_top_genes, int | np.integer) or n_top_genes < 2):
        raise ValueError(f"`n_top_genes` must be an integer >= 2 or None, got {n_top_genes!r}")
    if adata.n_obs < 2:
        raise ValueError(f"PCA needs at least 2 samples, got {adata.n_obs}")
    x, _ = _log_values(adata, layer, finite_genes=False)
    use = np.ones(x.shape[1], dtype=bool)
    if n_top_genes is not None and n_top_genes < x.shape[1]:
        var = x.var(axis=0, ddof=1)
        use[:] = False
        use[np.argsort(-var, kind="stable")[:n_top_genes]] = True
    n_max = min(adata.n_obs - 1, int(use.sum()))
    if n_comps is None:
        n_comps = min(50, n_max)
    if not isinstance(n_comps, int | np.integer) or not 1 <= n_comps <= n_max:
        raise ValueError(f"`n_comps` must lie in [1, {n_max}] (n_samples - 1 and genes used), got {n_comps!r}")
    scores, loadings, variance, total = pca_kernel(x[:, use], int(n_comps))
    if total <= 0:
        raise ValueError("the data have no variance: PCA is undefined")
    pcs = np.zeros((adata.n_vars, int(n_comps)))
    pcs[use] = loadings
    key = embedding_keys(key_added)
    varm_key = "PCs" if key == "pca" else f"PCs_{key}"
    if copy:
        adata = adata.copy()
    adata.obsm[f"X_{key}"] = scores
    adata.varm[varm_key] = pcs
    adata.uns[key] = h5ad_safe(
        {
            "method": "pca",
            "params": {
                "layer": "X" if layer is None else layer,
                "n_comps": int(n_comps),
                "n_top_genes": -1 if n_top_genes is None else int(n_top_genes),
                "varm_key": varm_key,
            },
            "variance": variance,
            "variance_ratio": variance / total,
        }
    )
    return adata if copy else None

"""Sample embeddings on a samples x genes matrix: limma's leading-log-fold-change MDS and PCA."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def leading_logfc_distances(x: NDArray, top: int = 500) -> NDArray[np.float64]:
    """Leading-log-fold-change distances of limma's ``plotMDS`` with ``gene.selection="pairwise"``.

    For each pair of samples, the distance is the root-mean-square of the ``top`` largest absolute
    differences between them (the leading log-fold-changes), each pair choosing its own genes.

    Parameters
    ----------
    x
        Samples x genes matrix of log-expression values (e.g. log-CPM), finite.
    top
        Number of genes per pair; capped at the number of genes, as in limma.

    Returns
    -------
    The symmetric samples x samples distance matrix (zeros on the diagonal).
    """
    x = np.asarray(x, dtype=np.float64)
    n, n_genes = x.shape
    if top < 1:
        raise ValueError(f"`top` must be >= 1, got {top}")
    top = min(top, n_genes)
    d2 = np.zeros((n, n))
    for i in range(1, n):
        sq = (x[i] - x[:i]) ** 2  # i x genes
        largest = np.partition(sq, n_genes - top, axis=1)[:, n_genes - top :]
        d2[i, :i] = largest.mean(axis=1)
    d2 = d2 + d2.T
    return np.sqrt(d2)


def _fix_signs(vectors: NDArray) -> NDArray:
    """Flip each column so that its entry of largest magnitude is positive (a deterministic orientation)."""
    idx = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs


def classical_mds(distances: NDArray, n_components: int = 2) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Classical (Torgerson) multidimensional scaling, as R's ``cmdscale`` and limma's ``plotMDS``.

    ``B = -1/2 J D^2 J`` (``J`` the centring matrix) is eigendecomposed; negative eigenvalues are set to
    zero and the coordinates are ``eigenvector * sqrt(eigenvalue)``.

    Parameters
    ----------
    distances
        Symmetric samples x samples distance matrix.
    n_components
        Number of dimensions to return.

    Returns
    -------
    ``(coordinates, eigenvalues)``: samples x ``n_components`` coordinates, and all ``n`` eigenvalues in
    decreasing order, clipped at zero; ``eigenvalues / eigenvalues.sum()`` is limma's ``var.explained``.
    """
    d = np.asarray(distances, dtype=np.float64)
    n = d.shape[0]
    if d.shape != (n, n) or not np.allclose(d, d.T):
        raise ValueError(f"`distances` must be a symmetric square matrix, got shape {d.shape}")
    if not 1 <= n_components <= n:
        raise ValueError(f"`n_components` must lie in [1, {n}], got {n_components}")
    d2 = d**2
    b = d2 - d2.mean(axis=0, keepdims=True) - d2.mean(axis=1, keepdims=True) + d2.mean()
    b = -0.5 * (b + b.T) / 2
    values, vectors = np.linalg.eigh(b)
    order = np.argsort(values)[::-1]
    values = np.clip(values[order], 0.0, None)
    vectors = _fix_signs(vectors[:, order[:n_components]])
    return vectors * np.sqrt(values[:n_components]), values


def pca(x: NDArray, n_comps: int) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float]:
    """Principal components of a samples x genes matrix, genes centred (not scaled), by SVD.

    Parameters
    ----------
    x
        Samples x genes matrix, finite.
    n_comps
        Number of components; at most ``min(n_samples, n_genes)``.

    Returns
    -------
    ``(scores, loadings, variance, total_variance)``: samples x ``n_comps`` scores, genes x ``n_comps``
    loadings (unit columns, largest entry positive), the variance of each component (``ddof=1``) and the
    total variance of the centred data (sum of gene variances, ``ddof=1``).
    """
    x = np.asarray(x, dtype=np.float64)
    n, p = x.shape
    if not 1 <= n_comps <= min(n, p):
        raise ValueError(f"`n_comps` must lie in [1, {min(n, p)}], got {n_comps}")
    if n < 2:
        raise ValueError("PCA needs at least 2 samples")
    centred = x - x.mean(axis=0, keepdims=True)
    _u, s, vt = np.linalg.svd(centred, full_matrices=False)
    loadings = _fix_signs(vt[:n_comps].T)
    scores = centred @ loadings
    variance = s[:n_comps] ** 2 / (n - 1)
    total = float((centred**2).sum() / (n - 1))
    return scores, loadings, variance, total

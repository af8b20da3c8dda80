import numpy as np
import pytest

import gendex as gdx
from gendex.stats import classical_mds, leading_logfc_distances, pca

# 3 samples x 5 genes built so that, with top=2, the leading-logFC distances are 3, 4 and 5:
# the (squared) differences per pair are s1-s2: 9, 0, 9, 0, 0.25; s1-s3: 4, 16, 4, 16, 0.04; s2-s3: 25, 16, 25, 16, 0.09
HAND = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [3.0, 0.0, 3.0, 0.0, 0.5],
        [-2.0, 4.0, -2.0, 4.0, 0.2],
    ]
)


def test_pairwise_leading_logfc_distances_by_hand():
    d = leading_logfc_distances(HAND, top=2)
    np.testing.assert_allclose(d, [[0, 3, 4], [3, 0, 5], [4, 5, 0]], atol=1e-12)
    # top = all genes: root-mean-square over the 5 genes
    d5 = leading_logfc_distances(HAND, top=5)
    np.testing.assert_allclose(d5[0, 1] ** 2, (9 + 9 + 0.25) / 5)
    np.testing.assert_allclose(d5[0, 2] ** 2, (4 + 16 + 4 + 16 + 0.04) / 5)
    np.testing.assert_allclose(d5[1, 2] ** 2, (25 + 16 + 25 + 16 + 0.09) / 5)
    # top is capped at the number of genes, as in limma
    np.testing.assert_allclose(leading_logfc_distances(HAND, top=500), d5)


def test_classical_mds_of_a_3_4_5_triangle_by_hand():
    d = leading_logfc_distances(HAND, top=2)
    coords, eig = classical_mds(d, n_components=2)
    # the triangle is Euclidean, so two dimensions reproduce the distances exactly
    diff = coords[:, None, :] - coords[None, :, :]
    np.testing.assert_allclose(np.sqrt((diff**2).sum(-1)), d, atol=1e-12)
    # centred points (-1,-4/3), (2,-4/3), (-1,8/3): scatter matrix [[6,-4],[-4,32/3]], trace 50/3, det 48,
    # so the eigenvalues are (50 +- sqrt(772)) / 6 and the first one's share is 1/2 + sqrt(772)/100
    np.testing.assert_allclose(eig[:2], [(50 + np.sqrt(772)) / 6, (50 - np.sqrt(772)) / 6])
    np.testing.assert_allclose(eig[2], 0, atol=1e-12)
    np.testing.assert_allclose(eig[0] / eig.sum(), 0.5 + np.sqrt(772) / 100)
    np.testing.assert_allclose(coords.mean(axis=0), 0, atol=1e-12)


def _golden_matrix():
    g = np.arange(1, 51)[None, :]
    s = np.arange(1, 7)[:, None]
    return np.sin(1.3 * g + 0.7 * s**2) * (1 + s / 3) + np.cos(g * s / 5)  # 6 samples x 50 genes


def test_matches_limma_plotmds():
    """Golden values from R 4.2.2 / limma 3.54.1:
    g <- 1:50; s <- 1:6; x <- outer(g, s, function(g, s) sin(1.3*g + 0.7*s^2) * (1 + s/3) + cos(g*s/5))
    m <- plotMDS(x, top=10, ndim=3, plot=FALSE); m$var.explained
    m$eigen.vectors[,1:3] %*% diag(sqrt(m$eigen.values[1:3]))
    """
    var_explained = [0.4613433474380, 0.3892747339064, 0.0651386907032, 0.0504833134647, 0.0337599144877, 0.0]
    r_coords = np.array(
        [
            [0.858592790367, -1.4530943589357, -0.635742355186],
            [-2.084863857334, -2.4035557578281, 0.427770937873],
            [1.444982793370, -0.0667529993668, -0.638090937236],
            [-1.389909946142, 1.5745383533459, 0.473845861001],
            [-1.302095213401, 1.9303915994704, -0.555630441666],
            [2.473293433139, 0.4184731633144, 0.927846935215],
        ]
    )
    coords, eig = classical_mds(leading_logfc_distances(_golden_matrix(), top=10), n_components=3)
    np.testing.assert_allclose(eig / eig.sum(), var_explained, atol=1e-12)
    signs = np.sign((coords * r_coords).sum(axis=0))  # a dimension's sign is arbitrary
    np.testing.assert_allclose(coords * signs, r_coords, atol=1e-10)


def test_mds_signs_are_deterministic():
    coords, _ = classical_mds(leading_logfc_distances(_golden_matrix(), top=10), n_components=3)
    top = np.abs(coords).argmax(axis=0)
    assert (coords[top, range(3)] > 0).all()


def test_classical_mds_rejects_bad_input():
    with pytest.raises(ValueError, match="symmetric"):
        classical_mds(np.array([[0, 1], [2, 0]]), 1)
    with pytest.raises(ValueError, match="n_components"):
        classical_mds(np.zeros((3, 3)), 4)
    with pytest.raises(ValueError, match="top"):
        leading_logfc_distances(HAND, top=0)


def test_pca_matches_a_direct_eigendecomposition():
    x = gdx.datasets.simulate_shift(n_samples=12, n_genes=30, seed=1).X
    x = np.log(x)
    scores, loadings, variance, total = pca(x, 4)
    cov = np.cov(x, rowvar=False)
    evals, evecs = np.linalg.eigh(cov)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    np.testing.assert_allclose(variance, evals[:4], rtol=1e-10)
    np.testing.assert_allclose(total, np.trace(cov))
    np.testing.assert_allclose(np.abs(loadings), np.abs(evecs[:, :4]), atol=1e-8)
    np.testing.assert_allclose(loadings.T @ loadings, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(scores, (x - x.mean(0)) @ loadings)
    np.testing.assert_allclose(scores.var(axis=0, ddof=1), variance)
    with pytest.raises(ValueError, match="n_comps"):
        pca(x, 13)

"""Firth-penalised design coefficients: finite where a design cell has no counts, unchanged elsewhere.

Training leaves a coefficient without a finite maximum-likelihood estimate wherever it stopped (a log2 fold
change of +-7 for one count of 10 in a paired design); ``gendex.model._posterior.firth_refit`` replaces the
intercepts and design coefficients by their Jeffreys-penalised MAPs given the codes.
"""

from __future__ import annotations

import numpy as np
import pytest

import gendex as gdx

torch = pytest.importorskip("torch")
pytest.importorskip("scvi")

from gendex.model import _init, _posterior  # noqa: E402

F64 = torch.float64
TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\).*:FutureWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def _paired_design(n_donors: int) -> np.ndarray:
    donor = np.tile(np.arange(n_donors), 2)
    treated = np.repeat([0.0, 1.0], n_donors)
    return np.column_stack([np.ones(2 * n_donors), np.eye(n_donors)[donor][:, 1:], treated])


def _penalised_loglik(b, y, x, sf, alpha, lam):
    """NB log likelihood (log link, offsets log sf) + log det(X^T W X + lam) / 2 - b^T lam b / 2."""
    from scipy.special import gammaln

    mu = sf * np.exp(x @ b)
    r = 1.0 / alpha
    ll = (gammaln(y + r) - gammaln(r) + r * np.log(r / (r + mu)) + y * np.log(mu / (r + mu))).sum()
    w = mu / (1.0 + alpha * mu)
    sign, logdet = np.linalg.slogdet(x.T @ (x * w[:, None]) + lam)
    return ll + 0.5 * logdet - 0.5 * b @ lam @ b


def test_firth_newton_reaches_the_jeffreys_penalised_maximum():
    """The Newton iterations with Firth's score stop at the maximum of the penalised likelihood (scipy's)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    x = _paired_design(5)
    n, p = x.shape
    sf = rng.uniform(0.7, 1.4, n)
    y = np.stack(
        [
            np.where(np.arange(n) == 5, 10.0, 0.0),  # one count of 10: separated, no finite MLE
            np.where(np.arange(n) < 5, rng.poisson(8, n), 0.0),  # every treated sample at 0
            rng.poisson(30 * np.exp(x @ np.r_[0, rng.normal(0, 0.3, p - 2), 1.0])),  # well measured, +1.4 log2
            rng.poisson(3, n).astype(float),  # low counts, no change
        ],
        axis=1,
    ).astype(float)
    alpha = np.array([0.5, 0.3, 0.05, 0.2])
    lam = np.diag([1e-8] + [1e-2] * (p - 1))

    start = np.zeros((y.shape[1], p))
    start[:, 0] = np.log(np.maximum(y.mean(0), 0.1))
    fit = _init.fit_nb_glm(
        torch.as_tensor(y, dtype=F64),
        torch.as_tensor(sf, dtype=F64),
        torch.as_tensor(x, dtype=F64),
        torch.as_tensor(np.log(alpha), dtype=F64),
        torch.as_tensor(start, dtype=F64),
        torch.as_tensor(lam, dtype=F64),
        100,
        firth=True,
        tol=1e-10,
        max_elements=10_000,
    ).numpy()
    for g in range(y.shape[1]):
        ref = minimize(
            lambda b, g=g: -_penalised_loglik(b, y[:, g], x, sf, alpha[g], lam),
            fit[g] + 0.3,
            method="BFGS",
            options={"gtol": 1e-9},
        )
        assert -ref.fun <= _penalised_loglik(fit[g], y[:, g], x, sf, alpha[g], lam) + 1e-7
        np.testing.assert_allclose(fit[g, -1], ref.x[-1], atol=1e-3)
    assert np.all(np.abs(fit[:2, -1]) < 6.0)  # finite, moderate (natural log)
    assert fit[0, -1] > 0 and fit[1, -1] < 0  # in the direction of the counts


def test_separated_gene_in_a_paired_design_gets_a_bounded_fold_change():
    adata = gdx.datasets.simulate_counts(n_genes=300, n_donors=4, donor_sd=0.5, random_state=2)
    x = adata.X.copy()
    treated = (adata.obs["condition"] == "B").to_numpy()
    x[:, 0] = 0
    x[np.flatnonzero(treated)[0], 0] = 10  # one count of 10, every other sample 0
    adata.X = x
    gdx.pp.size_factors(adata)
    model = gdx.tl.nbvae(adata, design="~donor + condition", n_latent=1, max_epochs=40, **TRAIN)
    gdx.tl.generative_de(adata, model, contrast=["condition", "B", "A"], random_state=0)
    res = adata.varm["nbvae_de"]
    gene = res.iloc[0]
    assert 0.0 < gene["log2FoldChange"] < 5.0
    assert gene["lfc_lower"] < 0.0 < gene["lfc_upper"]  # one count of 10 does not settle a direction
    assert not gene["is_de"]
    gdx.tl.deseq2(adata, design="~donor + condition", contrast=["condition", "B", "A"])
    tested = adata.varm["deseq2"]["padj"].notna().to_numpy()
    r = np.corrcoef(res["log2FoldChange"].to_numpy()[tested], adata.varm["deseq2"]["log2FoldChange"][tested])[0, 1]
    assert r > 0.97


def test_refit_keeps_the_loadings_and_is_a_fixed_point_for_measured_genes():
    adata = gdx.datasets.simulate_counts(n_samples=12, n_genes=200, random_state=4)
    gdx.pp.size_factors(adata)
    model = gdx.tl.nbvae(adata, design="~condition", n_latent=1, max_epochs=30, **TRAIN)
    state = _posterior.glm_state(model)
    refit = _posterior.firth_refit(model, state)
    k = model.module.n_latent
    np.testing.assert_array_equal(refit[:, 1 : 1 + k].numpy(), state.beta[:, 1 : 1 + k].numpy())  # loadings kept
    # the model's coefficients are their refit before the final dispersions and the confounding shift: at the
    # final dispersions well-measured genes move far less than their posterior sds (about 0.1-0.3 here)
    measured = (state.counts.mean(0) > 20).numpy()
    np.testing.assert_allclose(refit.numpy()[measured], state.beta.numpy()[measured], atol=0.01)
    assert not np.allclose(refit.numpy()[measured], state.beta.numpy()[measured], atol=1e-7)  # it did refit

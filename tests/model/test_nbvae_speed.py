"""The NB-VAE's fast paths compute what the general code computes, and its methods leave global RNGs alone."""

from __future__ import annotations

import numpy as np
import pytest

import gendex as gdx

torch = pytest.importorskip("torch")
scvi = pytest.importorskip("scvi")

from gendex.model import _posterior  # noqa: E402
from gendex.model._model import FusedAdam  # noqa: E402
from gendex.model._module import nb_log_likelihood  # noqa: E402

TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\).*:FutureWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture(scope="module")
def conditional():
    adata = gdx.datasets.simulate_counts(n_samples=10, n_genes=300, n_hidden_factors=1, random_state=3)
    adata.obs["batch"] = ["a", "b"] * 5
    gdx.pp.size_factors(adata)
    model = gdx.tl.nbvae(adata, design="~batch + condition", n_latent=1, max_epochs=15, **TRAIN)
    return adata, model


def test_nb_log_likelihood_matches_scvi():
    from scvi.distributions import NegativeBinomial

    gen = torch.Generator().manual_seed(0)
    log_mu = torch.randn(7, 50, generator=gen) * 3.0
    log_disp = torch.randn(50, generator=gen) * 2.0 - 2.0
    x = torch.poisson(torch.exp(log_mu), generator=gen)
    ours = nb_log_likelihood(x, log_mu, log_disp)
    theta = torch.exp(-log_disp).expand_as(log_mu)
    ref = NegativeBinomial(mu=torch.exp(log_mu), theta=theta).log_prob(x)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)  # float32 sums of terms of size ~100
    # and it is not trivially close: a wrong dispersion is far off
    assert (nb_log_likelihood(x, log_mu, log_disp + 1.0) - ref).abs().max() > 0.1


def test_fused_adam_is_adam():
    params = [torch.nn.Parameter(torch.linspace(-1, 1, 30).reshape(3, 10)) for _ in range(2)]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    fused = FusedAdam(1e-2, 1e-8, 0.0)(iter(params))
    plain = torch.optim.Adam(twins, lr=1e-2, eps=1e-8)
    for step in range(5):
        for p, q in zip(params, twins, strict=True):
            grad = torch.sin(p.detach() * (step + 1))
            p.grad, q.grad = grad.clone(), grad.clone()
        fused.step()
        plain.step()
    for p, q in zip(params, twins, strict=True):
        torch.testing.assert_close(p, q)
        assert not torch.equal(p, torch.linspace(-1, 1, 30).reshape(3, 10))


def test_counterfactual_draws_follow_the_general_path(conditional):
    """The counterfactual fast path (a contrast of drawn coefficients) has the draws' distribution of decoding
    every sample twice (the general path): the same per-gene means and sds within Monte Carlo error."""
    adata, model = conditional
    state = _posterior.glm_state(model, with_counts=False)
    f1, f2 = _posterior.counterfactual_features(model, "condition", "B", "A")
    idx = np.arange(adata.n_obs)
    kw = {"n_draws": 400, "include": ("z", "decoder", "dispersion", "samples"), "random_state": 5}
    fast = _posterior.lfc_draws(model, state, idx, idx, counterfactual=(f1, f2), **kw)
    # a sample-dependent shift of 1e-6 takes the general path (linear predictors, log-sum-exp over samples)
    ramp = 1e-6 * torch.arange(adata.n_obs, dtype=f1.dtype)[:, None]
    general = _posterior.lfc_draws(model, state, idx, idx, counterfactual=(f1 + ramp, f2), **kw)
    assert fast.shape == general.shape == (400, adata.n_vars) and np.all(np.isfinite(fast))
    sd = general.std(0)
    assert sd.min() > 0  # draws, not a point estimate
    # Monte Carlo error of a difference of two 400-draw means: 0.07 sd; of the ratio of two sds: about 5%
    assert np.max(np.abs(fast.mean(0) - general.mean(0)) / sd) < 0.4
    assert np.max(np.abs(np.log(fast.std(0) / sd))) < 0.25
    # the contrast is the condition coefficient's: the draws centre on it
    assert model.module.n_cov_features == 2  # batch[b], condition[B]
    coef = model.module.cov_coef.detach().numpy()
    point = (coef @ (f1[0] - f2[0]).numpy()) / np.log(2.0)
    assert np.corrcoef(fast.mean(0), point)[0, 1] > 0.99


def test_log_weighted_sum_exp_is_logsumexp():
    gen = torch.Generator().manual_seed(1)
    s, n, g, p = 30, 6, 40, 3
    x = torch.cat([torch.ones(s, n, 1), torch.randn(s, n, p - 1, generator=gen)], dim=2)
    beta = torch.randn(s, g, p, generator=gen) * 2.0 + torch.tensor([5.0, 0.0, 0.0])
    beta[7, 3, 0] += 120.0  # one draw far above the others (the shifted sum overflows: the exact fallback)
    beta[9, 5, 0] -= 120.0  # and one far below (underflows)
    expo = torch.rand(s, n, generator=gen) + 0.1
    log_w = (torch.log(expo) - torch.log(expo.sum(1, keepdim=True)))[:, :, None]
    ours = _posterior._log_weighted_sum_exp(x, beta, log_w)
    ref = torch.logsumexp(torch.einsum("snp,sgp->sng", x, beta) + log_w, 1)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-4)
    assert abs(float(ours[7, 3] - ours[8, 3])) > 50  # the extreme draws are kept, not clipped


def test_logdet_by_elimination_is_choleskys():
    from gendex.model._dispersion import _logdet_spd

    gen = torch.Generator().manual_seed(2)
    p, g = 5, 60
    x = torch.randn(g, 9, p, dtype=torch.float64, generator=gen)
    spd = x.transpose(1, 2) @ x + 1e-3 * torch.eye(p, dtype=torch.float64)
    spd[:5] *= torch.logspace(-6, 6, 5, dtype=torch.float64)[:, None, None]  # scales far from 1
    spd[5, 4, 4] = -1.0  # not positive definite in the last pivot
    spd[6] = spd[6] - 1e3 * torch.eye(p, dtype=torch.float64)  # indefinite from the first pivot on
    spd[7, 0, 0] = float("nan")
    chol, info = torch.linalg.cholesky_ex(spd)
    ref = torch.where(info == 0, 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1), 0.0)
    ours = _logdet_spd(spd.permute(1, 2, 0).clone())
    assert bool((info[5:8] != 0).all()) and bool((ours[5:8] == 0).all())
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    assert float(ours[:5].std()) > 1.0  # the determinants differ: a constant would fail


def test_shared_likelihood_variances_are_the_separate_ones():
    from gendex.model import _dispersion as D

    gen = torch.Generator().manual_seed(3)
    n, g = 8, 50
    x = torch.cat([torch.ones(n, 1), torch.randn(n, 1, generator=gen)], 1).double()
    moments = x[:, :, None] * x[:, None, :]
    mu = torch.exp(torch.randn(n, g, generator=gen).double() + 3.0)
    y = torch.poisson(mu, generator=gen)
    la = torch.full((g,), -2.0, dtype=torch.float64)
    prior = D.LogDispersionPrior(la + 0.3, 0.7, D.normal_weights())
    with_prior, without = D._variances(D._Likelihood(y, mu, moments), la, prior, slice(None))
    torch.testing.assert_close(with_prior, D.log_dispersion_variance(y, mu, moments, la, prior=prior))
    torch.testing.assert_close(without, D.log_dispersion_variance(y, mu, moments, la))
    assert bool((without > with_prior).all())  # the prior adds curvature
    # the grid's shortcut (lgamma once per distinct count) gives the same numbers
    lik = D._Likelihood(y, mu, moments)
    for value in (-18.0, -2.0, 1.5):
        at = torch.full((g,), value, dtype=torch.float64)
        torch.testing.assert_close(lik(at, uniform=True), lik(at), rtol=0, atol=0)
    assert not torch.equal(lik(la), lik(la + 1.0))


def test_back_substitution_is_the_triangular_solve():
    gen = torch.Generator().manual_seed(4)
    g, p, s = 30, 4, 7
    a = torch.randn(g, p, p, dtype=torch.float64, generator=gen)
    chol = torch.linalg.cholesky(a @ a.transpose(1, 2) + 0.1 * torch.eye(p, dtype=torch.float64)).float()
    eps = torch.randn(s, g, p, generator=gen)
    ref = torch.linalg.solve_triangular(chol.transpose(1, 2), eps.permute(1, 2, 0), upper=True).permute(2, 0, 1)
    ours = _posterior._solve_upper_t(chol, eps)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)  # float32 back substitution, another order
    assert float((ours - eps).abs().max()) > 0.1  # the solve does something


def _global_draws() -> tuple:
    import random

    return torch.rand(3).tolist(), np.random.random(3).tolist(), random.random()


def _after(call) -> tuple:
    import random

    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    call()
    return _global_draws()


METHOD_CALLS = {
    "get_latent_representation": lambda m, a: m.get_latent_representation(),
    "get_latent_representation(give_mean=False)": lambda m, a: m.get_latent_representation(give_mean=False),
    "get_normalized_expression": lambda m, a: m.get_normalized_expression(n_samples=2, return_mean=False),
    "get_elbo": lambda m, a: m.get_elbo(),
    "get_decoded_means": lambda m, a: m.get_decoded_means(),
    "decode_latent": lambda m, a: m.decode_latent(np.zeros((2, m.module.n_latent))),
    "fit_dispersions": lambda m, a: m.fit_dispersions(),
    "get_lfc_draws": lambda m, a: m.get_lfc_draws(a, contrast=["condition", "B", "A"], n_draws=20),
    "get_generative_de": lambda m, a: m.get_generative_de(a, contrast=["condition", "B", "A"], n_draws=20),
}


@pytest.mark.parametrize("name", list(METHOD_CALLS))
def test_model_methods_leave_global_generators_alone(conditional, name):
    adata, model = conditional
    reference = _after(lambda: None)
    assert _after(lambda: METHOD_CALLS[name](model, adata)) == reference
    # the check can fail: a call that draws from the generators changes what comes next
    assert _after(lambda: (torch.rand(1), np.random.random())) != reference


def test_stochastic_methods_follow_the_callers_seed(conditional):
    _, model = conditional
    torch.manual_seed(7)
    a = model.get_latent_representation(give_mean=False)
    b = model.get_latent_representation(give_mean=False)  # the same global state: the same draw
    torch.manual_seed(8)
    c = model.get_latent_representation(give_mean=False)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)

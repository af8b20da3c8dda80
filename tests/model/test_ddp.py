"""The NB-VAE trained with Lightning's DDP on CPU (2 processes, gloo) against one process.

DDP with full batches computes the one-process gradient: every rank's loss is the mean over its half of the
samples plus the global prior over all samples, DDP averages the ranks' gradients, and the encoder's batch
orthogonalisation is all-reduced over the ranks. What differs is only the Monte-Carlo noise of the ELBO (each
rank draws its own latent samples). So the DDP model must agree with the one-process model as closely as two
one-process models that differ only in their seed do: that seed-to-seed distance, measured in the same test,
sets the tolerance (three times it, for the spread of a distance measured once, plus a floor).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from scipy import stats

import gendex as gdx

torch = pytest.importorskip("torch")
pytest.importorskip("scvi")

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():  # pragma: no cover
    pytest.skip("torch was built without the gloo backend of torch.distributed", allow_module_level=True)
if sys.platform == "win32":  # pragma: no cover
    pytest.skip("DDP on CPU is tested on POSIX only (gloo on Windows needs a file store)", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KW = {"design": "~condition", "n_latent": 1, "max_epochs": 40, "early_stopping": False, "accelerator": "cpu"}
CONTRAST = ["condition", "B", "A"]


def _data():
    adata = gdx.datasets.simulate_counts(n_samples=24, n_genes=150, frac_de=0.2, random_state=3)
    gdx.pp.size_factors(adata)
    return adata


def reconstruction_nll(model, adata) -> float:
    """Mean negative log-likelihood per sample of the counts at the latent posterior means (deterministic)."""
    x = adata.layers["counts"]
    mu = model.get_decoded_means() * adata.obs["size_factors"].to_numpy()[:, None]
    size = np.exp(-model.module.log_disp.detach().double().numpy())
    return float(-stats.nbinom.logpmf(x, size, size / (size + mu)).sum(1).mean())


def _fit(adata, **kw):
    model = gdx.tl.nbvae(adata, **KW, **kw)
    gdx.tl.generative_de(adata, model, contrast=CONTRAST, n_draws=100)
    return model, adata.varm["nbvae_de"]["log2FoldChange"].to_numpy(), reconstruction_nll(model, adata)


def test_ddp_spawn_two_processes_matches_one_process(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    adata = _data()
    _, lfc_1, nll_1 = _fit(adata.copy())
    _, lfc_seed, nll_seed = _fit(adata.copy(), random_state=1)
    capfd.readouterr()
    ddp_adata = adata.copy()
    model, lfc_ddp, nll_ddp = _fit(ddp_adata, devices=2, train_kwargs={"strategy": "ddp_spawn"})
    out, err = capfd.readouterr()
    # the spawned processes are as quiet as one process, and nothing is left in the working directory
    assert out == "" and err == "", (out, err)
    assert os.listdir(tmp_path) == []
    assert model.is_trained and len(ddp_adata.uns["X_nbvae"]["history"]) == KW["max_epochs"]
    assert np.isfinite(ddp_adata.uns["X_nbvae"]["history"]["elbo_train"]).all()

    seed_corr = np.corrcoef(lfc_1, lfc_seed)[0, 1]
    ddp_corr = np.corrcoef(lfc_1, lfc_ddp)[0, 1]
    assert 1 - ddp_corr <= 3 * (1 - seed_corr) + 1e-3, (ddp_corr, seed_corr)
    assert abs(nll_ddp - nll_1) <= 3 * abs(nll_seed - nll_1) + 1e-4 * nll_1, (nll_ddp, nll_1, nll_seed)
    # and the contrast is recovered as well as by one process
    truth = adata.var["true_log2fc"].to_numpy()
    assert np.corrcoef(truth, lfc_ddp)[0, 1] >= np.corrcoef(truth, lfc_1)[0, 1] - 0.02


def test_strategy_strings_become_the_quiet_ddp_strategy():
    from lightning.pytorch.strategies import DDPStrategy

    from gendex.model._data import QuietDDPStrategy, distributed_strategy

    for name, method in (("ddp", "popen"), ("ddp_spawn", "spawn"), ("ddp_fork", "fork")):
        strategy, distributed = distributed_strategy(name)
        assert distributed and isinstance(strategy, QuietDDPStrategy)
        assert strategy._start_method == method
    mine = DDPStrategy(start_method="spawn")
    assert distributed_strategy(mine) == (mine, True)
    assert distributed_strategy("auto") == ("auto", False)
    assert distributed_strategy(None) == (None, False)

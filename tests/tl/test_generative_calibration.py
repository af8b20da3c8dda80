"""A fast subset of ``benchmarks/nbvae_calibration.py``: generative DE on simulated cohorts with hidden structure.

Few genes and epochs, so the bounds are looser than the benchmark's targets; each test also checks that the same
bounds reject a broken variant (latent draws only, or the unsupervised latent space on hidden structure), so
that they can fail.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

import gendex as gdx

pytest.importorskip("scvi")

TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
pytestmark = pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\).*:FutureWarning")


def _torch_threads(n: int) -> int:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before


def _nbvae(adata, design: str | None, max_epochs: int):
    """Conditional mode (``design=``: the design's factors are decoder covariates) or, with None, unsupervised."""
    kw = {"max_epochs": max_epochs, **TRAIN}
    if design is not None:
        if "design" in inspect.signature(gdx.tl.nbvae).parameters:
            kw["design"] = design
        else:  # before the conditional mode had its name: the same model through categorical covariates
            kw["categorical_covariate_keys"] = [t.strip() for t in design.lstrip("~").split("+")]
    return gdx.tl.nbvae(adata, **kw)


def _generative_de(adata, model, **kw) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the separation warning of the unsupervised variant
        gdx.tl.generative_de(adata, model, groupby="condition", group1="B", group2="A", key_added="gen", **kw)
    return _scores(adata, "gen", adata.varm["gen"]["is_de"].to_numpy(dtype=bool))


def _scores(adata, key: str, called: np.ndarray) -> dict:
    """Observed FDR (a call is false when the gene is not DE or its sign is wrong), TPR, interval coverage."""
    t = adata.varm[key]
    truth, de = adata.var["true_log2fc"].to_numpy(), adata.var["is_de"].to_numpy()
    right = called & de & (np.sign(t["log2FoldChange"].to_numpy()) == np.sign(truth))
    out = {"n": int(called.sum()), "fdr": (called.sum() - right.sum()) / max(called.sum(), 1)}
    out["tpr"] = right.sum() / max(de.sum(), 1)
    if "lfc_lower" in t:
        inside = ((t["lfc_lower"] <= truth) & (truth <= t["lfc_upper"])).to_numpy()
        out["coverage"], out["coverage_de"] = inside.mean(), inside[de].mean() if de.any() else np.nan
    return out


def _failures(s: dict, deseq2: dict) -> list[str]:
    """The bounds of the hidden-factor scenario that a result misses (empty: all met)."""
    bounds = {
        "fdr <= 0.10": s["fdr"] <= 0.10,
        "tpr >= 0.9 x DESeq2's": s["tpr"] >= 0.9 * deseq2["tpr"],
        "coverage >= 0.88": s["coverage"] >= 0.88,
        "coverage_de >= 0.60": s["coverage_de"] >= 0.60,
    }
    return [name for name, ok in bounds.items() if not ok]


@pytest.fixture(scope="module")
def hidden_6v6():
    """6 vs 6, 1,500 genes, three hidden factors explaining ~13x the variance of the contrast."""
    before = _torch_threads(1)
    try:
        adata = gdx.datasets.simulate_counts(n_samples=12, n_genes=1500, n_hidden_factors=3, random_state=11)
        gdx.pp.size_factors(adata)
        gdx.tl.deseq2(adata, design="~condition", contrast=["condition", "B", "A"])
        deseq2 = _scores(adata, "deseq2", (adata.varm["deseq2"]["padj"] < 0.05).to_numpy())
        model = _nbvae(adata, "~condition", max_epochs=60)
        yield adata, model, deseq2
    finally:
        _torch_threads(before)


def test_conditional_mode_is_calibrated_on_hidden_factors(hidden_6v6):
    adata, model, deseq2 = hidden_6v6
    s = _generative_de(adata, model)
    assert _failures(s, deseq2) == [], (s, deseq2)
    assert s["n"] >= 30  # not calibrated by calling nothing


def test_the_bounds_reject_latent_draws_only(hidden_6v6):
    """scvi-tools-style uncertainty (latent codes only): intervals far too narrow, most calls false."""
    adata, model, deseq2 = hidden_6v6
    s = _generative_de(adata, model, uncertainty=("z",), n_draws=100)
    failed = _failures(s, deseq2)
    assert "coverage >= 0.88" in failed and "fdr <= 0.10" in failed, s


def test_the_bounds_reject_the_unsupervised_latent_space_on_hidden_factors(hidden_6v6):
    """Labels unseen: the latent space carries the hidden factors, not the groups, and the decoded answer is wrong
    (without the "residual" source, the group coefficient on the latent codes that the default uses here)."""
    adata, _, deseq2 = hidden_6v6
    before = _torch_threads(1)
    try:
        model = _nbvae(adata, None, max_epochs=60)
    finally:
        _torch_threads(before)
    s = _generative_de(adata, model, uncertainty=("z", "decoder", "dispersion", "samples"))
    failed = _failures(s, deseq2)
    assert "tpr >= 0.9 x DESeq2's" in failed, s


@pytest.mark.xfail(
    strict=True,
    reason="issue #10: the conditional mode with n_latent=2 calls 152 genes here (DESeq2: 0); remove this mark "
    "when the model side (n_latent='auto') lands",
)
def test_permuted_labels_give_almost_no_calls():
    """40 samples, hidden factors and a true condition whose labels are permuted in a balanced way (each new
    group takes half of each true group): no gene differs between the compared groups, every call is false."""
    before = _torch_threads(1)
    try:
        adata = gdx.datasets.simulate_counts(n_samples=40, n_genes=1500, n_hidden_factors=3, random_state=1)
        rng = np.random.default_rng(1001)
        cond = adata.obs["condition"].to_numpy()
        new = np.empty(adata.n_obs, dtype=object)
        for level in ("A", "B"):
            idx = rng.permutation(np.flatnonzero(cond == level))
            new[idx[:10]], new[idx[10:]] = "A", "B"
        adata.obs["condition"] = new
        adata.obs["condition"] = adata.obs["condition"].astype("category")
        gdx.pp.size_factors(adata)
        gdx.tl.deseq2(adata, design="~condition", contrast=["condition", "B", "A"])
        n_deseq2 = int((adata.varm["deseq2"]["padj"] < 0.05).sum())
        model = _nbvae(adata, "~condition", max_epochs=60)
    finally:
        _torch_threads(before)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gdx.tl.generative_de(adata, model, groupby="condition", group1="B", group2="A", key_added="gen")
    n_calls = int(adata.varm["gen"]["is_de"].sum())
    # the benchmark's target is <= 1 per 10,000 genes on average: 0.15 expected here
    assert n_calls <= max(2, n_deseq2), (n_calls, n_deseq2)

"""``tl.generative_de``: the NB-VAE's generative DE on AnnData, and ``de_table``, its summary of posterior draws.

The computation is the model's (:meth:`gendex.model.NBVAE.get_generative_de`); this module validates the
AnnData, calls it once and writes ``varm``/``uns``. It imports no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from numpy.typing import NDArray

from .._utils import store_de_results
from .._validation import check_not_backed
from ..stats import ash, posterior_fdr

if TYPE_CHECKING:
    from ..model import NBVAE

#: Sources of uncertainty of the generative log fold change draws (:meth:`gendex.model.NBVAE.get_lfc_draws`).
UNCERTAINTY_SOURCES = ("z", "decoder", "dispersion", "residual", "samples")
#: Columns of a generative DE table, in order (``baseMean`` first, then :func:`de_table`'s).
DE_TABLE_COLUMNS = (
    "log2FoldChange", "lfcSE", "lfc_lower", "lfc_upper", "prob_de", "prob_up", "prob_down", "lfsr", "qvalue",
    "is_de", "stat", "pvalue", "padj", "lfc_unshrunk", "lfc_unshrunk_se",
)  # fmt: skip


def de_table(
    draws: NDArray,
    *,
    delta: float,
    ci_level: float,
    fdr_target: float,
    lfc_prior: Literal["adaptive", "flat"] = "adaptive",
) -> pd.DataFrame:
    """Generative DE statistics from posterior draws of log2 fold changes ``(n_draws, n_genes)``.

    With ``lfc_prior="adaptive"`` the draws' means and sds summarise each gene's likelihood and an adaptive
    shrinkage prior (:func:`gendex.stats.ash`) estimated from all genes gives the posterior; with ``"flat"`` the
    draws are the posterior. Genes whose draws are not finite get NaN.

    Calls are directional: ``prob_up = P(LFC > delta)``, ``prob_down = P(LFC < -delta)``; a gene's local error
    is ``1 - max(prob_up, prob_down)``, the posterior probability that its change is not beyond ``delta`` in
    the direction it would be called; ``qvalue`` is the mean local error of this gene and every gene ranked
    above it (the posterior expected directional FDR of that list), raised to the gene's own ``lfsr`` where
    that is larger; ``is_de = qvalue <= fdr_target``. So the called genes' posterior expected share of
    directional false discoveries is at most ``fdr_target`` and no called gene has ``lfsr > fdr_target``.
    ``pvalue`` holds the local error and ``padj`` the ``qvalue`` (for tools that read those names).
    """
    n_genes = draws.shape[1]
    ok = np.all(np.isfinite(draws), axis=0)
    d = draws[:, ok].astype(np.float64)
    m, s = d.mean(0), np.maximum(d.std(0, ddof=1), 1e-6)
    a = (1.0 - ci_level) / 2.0
    cols: dict[str, NDArray] = {}
    if lfc_prior == "adaptive":
        post = ash(m, s)
        cols["log2FoldChange"], cols["lfcSE"] = post.mean, post.sd
        lower, upper = post.quantiles([a, 1.0 - a])
        cols["lfc_lower"], cols["lfc_upper"] = lower, upper
        up, down = post.prob_greater(delta), post.prob_less(-delta)
        cols["lfsr"] = post.lfsr()
    else:
        cols["log2FoldChange"], cols["lfcSE"] = m, s
        cols["lfc_lower"], cols["lfc_upper"] = np.quantile(d, a, axis=0), np.quantile(d, 1.0 - a, axis=0)
        up, down = (d > delta).mean(0), (d < -delta).mean(0)
        cols["lfsr"] = np.minimum((d >= 0).mean(0), (d <= 0).mean(0))
    up, down = np.clip(up, 0.0, 1.0), np.clip(down, 0.0, 1.0)
    cols["prob_de"] = np.clip(up + down, 0.0, 1.0)
    cols["prob_up"], cols["prob_down"] = up, down
    cols["pvalue"] = 1.0 - np.maximum(up, down)
    cols["lfc_unshrunk"], cols["lfc_unshrunk_se"] = m, s
    out = pd.DataFrame({k: np.full(n_genes, np.nan) for k in cols})
    for k, v in cols.items():
        out.loc[ok, k] = v
    out["qvalue"] = np.fmax(posterior_fdr(out["pvalue"].to_numpy()), out["lfsr"].to_numpy())
    out["is_de"] = (out["qvalue"] <= fdr_target).to_numpy() & ok
    out["stat"] = out["log2FoldChange"] / out["lfcSE"].where(out["lfcSE"] > 0)
    out["padj"] = out["qvalue"]
    return out[list(DE_TABLE_COLUMNS)]


def generative_de(
    adata: AnnData,
    model: NBVAE,
    *,
    contrast: Sequence[str] | None = None,
    groupby: str | None = None,
    group1: str | None = None,
    group2: str | None = None,
    delta: float = 0.25,
    fdr_target: float = 0.05,
    ci_level: float = 0.9,
    n_draws: int = 500,
    lfc_prior: Literal["adaptive", "flat"] = "adaptive",
    uncertainty: Sequence[str] = UNCERTAINTY_SOURCES,
    key_added: str = "nbvae_de",
    copy: bool = False,
    random_state: int | None = 0,
) -> AnnData | None:
    """Generative differential expression: log2 fold changes of the NB-VAE's decoded normalised means.

    A thin AnnData shell over :meth:`gendex.model.NBVAE.get_generative_de` (see there for the method): it checks
    that ``adata`` is the data the model was trained on, runs the model's generative DE once and stores the
    table and its record.

    Parameters
    ----------
    adata
        The AnnData the model was trained on (same samples and genes, in the same order).
    model
        A trained :class:`gendex.model.NBVAE` (from :func:`nbvae`).
    contrast
        ``[factor, test, reference]``: ``log2FoldChange = log2(test / reference)`` between the samples of the
        two levels of ``obs[factor]``.
    groupby, group1, group2
        Alias of ``contrast=[groupby, group1, group2]`` (scvi-tools' names); give one form only.
    delta
        Smallest absolute log2 fold change that counts as differential expression.
    fdr_target
        Target of the posterior expected directional FDR of the calls (``is_de``).
    ci_level
        Level of the equal-tailed credible interval ``lfc_lower``/``lfc_upper``.
    n_draws
        Number of posterior draws.
    lfc_prior
        ``"adaptive"`` (empirical-Bayes shrinkage prior) or ``"flat"`` (the draws as they are).
    uncertainty
        Sources of uncertainty in the draws, any of ``"z"``, ``"decoder"``, ``"dispersion"``, ``"residual"``,
        ``"samples"`` (see :meth:`gendex.model.NBVAE.get_lfc_draws`).
    key_added
        Key of ``varm`` and ``uns``.
    copy
        Work on a copy of ``adata`` and return it.
    random_state
        Seed of the draws (a private generator); None draws fresh entropy.

    Returns
    -------
    Sets ``adata.varm[key_added]`` (genes x ``baseMean, log2FoldChange, lfcSE, lfc_lower, lfc_upper, prob_de,
    prob_up, prob_down, lfsr, qvalue, is_de, stat, pvalue, padj, lfc_unshrunk, lfc_unshrunk_se,
    lfc_residual, lfc_residual_se``; genes without counts get NaN) and ``adata.uns[key_added]`` (``method``,
    ``params``, ``versions``, ``design``, ``contrast``, ``mode`` (``"counterfactual"`` or ``"unsupervised"``),
    ``separation``: the latent-separation diagnostic). Returns the modified copy when ``copy=True``.

    Notes
    -----
    ``is_de`` controls the posterior expected *directional* false discovery rate at ``fdr_target``: among the
    called genes, the expected share whose log2 fold change is not beyond ``delta`` in the called direction
    (``prob_up``/``prob_down``), and no called gene has a local false sign rate ``lfsr`` above the target
    (see ``de_table`` in this module). In the unsupervised mode (the compared factor is not a model covariate) a
    ``UserWarning`` says when the latent space does not separate the two groups (``uns[key]["separation"]``).

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=200, random_state=0)
    >>> gdx.pp.size_factors(adata)
    >>> model = gdx.tl.nbvae(adata, max_epochs=20, accelerator="cpu", enable_progress_bar=False)
    >>> gdx.tl.generative_de(adata, model, contrast=["condition", "B", "A"])
    >>> "prob_up" in adata.varm["nbvae_de"]
    True
    """
    check_not_backed(adata)
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"`key_added` must be a non-empty string, got {key_added!r}")
    check_model_data(adata, model)
    table = model.get_generative_de(
        adata,
        contrast=contrast,
        groupby=groupby,
        group1=group1,
        group2=group2,
        delta=delta,
        fdr_target=fdr_target,
        ci_level=ci_level,
        n_draws=n_draws,
        lfc_prior=lfc_prior,
        uncertainty=uncertainty,
        random_state=random_state,
    )
    info = dict(table.attrs["generative_de"])
    table.attrs = {}
    if copy:
        adata = adata.copy()
    store_de_results(
        adata,
        key_added,
        table,
        method="nbvae",
        params=info.pop("params"),
        packages=("scvi-tools", "torch"),
        **info,
    )
    return adata if copy else None


def check_model_data(adata: AnnData, model: NBVAE) -> None:
    """Raise when ``model`` is untrained or ``adata`` holds other samples or genes than it was trained on."""
    if not getattr(model, "is_trained", False):
        raise ValueError("the model is not trained; train it with `gdx.tl.nbvae` or `model.train()`")
    if getattr(model, "dispersions_", None) is None:
        raise ValueError("the model has no fitted dispersions; call `model.fit_dispersions()` first")
    if list(model.adata.var_names) != list(adata.var_names):
        raise ValueError("`adata.var_names` differ from the genes the model was trained on")
    if list(model.adata.obs_names) != list(adata.obs_names):
        raise ValueError("`adata.obs_names` differ from the samples the model was trained on")

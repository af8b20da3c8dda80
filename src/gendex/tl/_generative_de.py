"""``tl.generative_de``: the NB-VAE's generative DE on AnnData (draws summarised by ``stats._generative``).

The computation is the model's (:meth:`gendex.model.NBVAE.get_generative_de`); this module validates the
AnnData, calls it once and writes ``varm``/``uns``. It imports no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import pandas as pd
from anndata import AnnData

from .._utils import store_de_results
from ..stats._generative import (  # noqa: F401  (old import paths)
    DE_TABLE_COLUMNS,
    DEFAULT_UNCERTAINTY,
    UNCERTAINTY_SOURCES,
    de_table,
)

if TYPE_CHECKING:
    from ..model import NBVAE


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
    uncertainty: Sequence[str] = DEFAULT_UNCERTAINTY,
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
        Level of the equal-tailed interval ``lfc_lower``/``lfc_upper`` (quantiles of the posterior draws).
    n_draws
        Number of posterior draws.
    lfc_prior
        ``"adaptive"`` (empirical-Bayes shrinkage prior) or ``"flat"`` (the draws as they are).
    uncertainty
        Sources of uncertainty in the draws, any of ``"z"``, ``"decoder"``, ``"dispersion"``, ``"residual"``,
        ``"imbalance"``, ``"samples"`` (see :meth:`gendex.model.NBVAE.get_lfc_draws`).
    key_added
        Key of ``varm`` and ``uns``.
    copy
        Work on a copy of ``adata`` and return it.
    random_state
        Seed of the draws (a private generator); None draws fresh entropy.

    Returns
    -------
    Sets ``adata.varm[key_added]`` (genes x ``baseMean, log2FoldChange, lfcSE, lfc_lower, lfc_upper, prob_de,
    prob_up, prob_down, lfsr, qvalue, is_de, stat, pvalue, padj, lfc_shrunk, lfc_shrunk_se, lfc_residual,
    lfc_residual_se``: ``log2FoldChange``, ``lfcSE`` and the interval are the draws' own, as DESeq2's
    ``results()`` reports maximum-likelihood estimates; ``lfc_shrunk`` is the posterior mean under the adaptive
    prior, as DESeq2's ``lfcShrink``; genes without counts get NaN) and ``adata.uns[key_added]`` (``method``,
    ``params``, ``versions``, ``design``, ``contrast``, ``mode`` (``"counterfactual"`` or ``"unsupervised"``),
    ``separation``: the latent-separation diagnostic). Returns the modified copy when ``copy=True``.

    Notes
    -----
    ``is_de`` controls the posterior expected *directional* false discovery rate of the list at ``fdr_target``:
    among the called genes, the expected share whose log2 fold change is not beyond ``delta`` in the called
    direction (``prob_up``/``prob_down``, under the adaptive prior). It is the list's rate, as DESeq2's padj:
    the last genes called may each have a local error (``pvalue``) above the target (see ``de_table`` in this
    module).

    Which mode runs depends on the model. If the compared factor is a decoder covariate (``tl.nbvae(design=...)``,
    the conditional mode) the contrast is counterfactual. Otherwise (unsupervised) the answer depends on whether
    the latent space separates the two groups (``uns[key]["separation"]``: silhouette, cross-validated accuracy,
    Hotelling's p-value of the latent means): if it does, the groups' decoded means are compared, with the
    sampling variance of the groups' mean codes in the intervals (``separation["latent_sampling_added"]``: a
    chance latent difference of null groups is not a change of every gene); if not, the log fold change is each
    gene's group coefficient in its GLM on the latent codes (``separation["source"] == "residual"``, columns
    ``lfc_residual``; intervals widened by genomic control's factor ``separation["residual_inflation"]`` when
    the coefficients vary more than their sds allow), and a ``UserWarning`` says so and names the fix (train
    with the factor in the design). Decoding alone would then give both groups the same means and tight
    intervals around 0 whatever the data say.

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
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"`key_added` must be a non-empty string, got {key_added!r}")
    check_model_data(adata, model)
    table = model.get_generative_de(
        annotation_shell(adata),
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


def annotation_shell(adata: AnnData) -> AnnData:
    """``adata`` itself, or for a backed or lazy one an in-memory AnnData of its ``obs`` and names only.

    The model's computations read the samples' annotations from it (the counts are the model's own).
    """
    if not adata.isbacked and isinstance(adata.obs, pd.DataFrame):
        return adata
    obs = adata.obs.to_memory() if not isinstance(adata.obs, pd.DataFrame) else adata.obs.copy()
    return AnnData(obs=obs, var=pd.DataFrame(index=pd.Index(adata.var_names.copy())))


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

"""Generative differential expression as methods of the NB-VAE (:class:`GenerativeDEMixin`, a base of ``NBVAE``).

Two modes, chosen by the compared factor. **Counterfactual**: the factor is a categorical covariate of the
decoder; every sample of both groups is decoded with the factor set to each level, keeping its latent code, so
the log fold change is the covariate's effect. **Unsupervised**: the factor is unknown to the model. When the
latent space separates the two groups (Hotelling's test of their latent means, p < ``LATENT_SHIFT_ALPHA``),
each group's samples are decoded as they are and the log2 ratio of the two groups' mean decoded expression is
taken. When it does not, both groups would decode to nearly the same means whatever the data say, so the log
fold change is instead each gene's group coefficient in its GLM on the latent codes (the decoder refitted with
the group as one more feature, its dispersions re-estimated; the latent codes act as RUV/SVA factors), and a
``UserWarning`` names the fix (the conditional mode). ``uns[key]["separation"]`` records the diagnostic.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS

from .._contrast import Comparison, resolve_comparison
from .._validation import check_groups
from ..stats._generative import DEFAULT_UNCERTAINTY, UNCERTAINTY_SOURCES
from . import _data, _posterior

if TYPE_CHECKING:
    from anndata import AnnData

    from ._module import NBVAEModule

SOURCES = UNCERTAINTY_SOURCES
#: The unsupervised latent space separates two groups when Hotelling's test of their latent means has a p-value
#: below this; otherwise their latent difference counts as chance and the group effect comes from the residual.
LATENT_SHIFT_ALPHA = 0.05


@dataclass
class _Groups:
    comparison: Comparison
    idx1: np.ndarray  # positions of the test group's samples
    idx2: np.ndarray  # positions of the reference group's samples
    counterfactual: tuple[torch.Tensor, torch.Tensor] | None


@dataclass
class _Draws:
    draws: np.ndarray  # (n_draws, G) log2 fold changes
    groups: _Groups
    state: _posterior.GLMState
    separation: dict[str, Any]  # diagnostic numbers and the "source" of the group effect
    residual: tuple[np.ndarray, np.ndarray] | None  # log2 estimate and se of the residual group effect
    node_sizes: list[int] | None  # draws at each node of the dispersion posterior (draws grouped by node)


class GenerativeDEMixin:
    """Generative DE of the NB-VAE.

    :meth:`get_lfc_draws`, :meth:`get_generative_de`, and :meth:`differential_expression` (scvi-tools' name)
    routed to them.
    """

    if TYPE_CHECKING:  # provided by the scvi-tools model this mixes into (see _posterior.FittedNBVAE)
        adata: AnnData
        adata_manager: Any
        module: NBVAEModule
        dispersions_: pd.DataFrame | None

        @property
        def device(self) -> Any: ...
        def get_latent_representation(self, *args: Any, **kwargs: Any) -> Any: ...

    # ------------------------------------------------------------------ public methods
    def get_lfc_draws(
        self,
        adata: AnnData | None = None,
        *,
        contrast: Sequence[str] | None = None,
        groupby: str | None = None,
        group1: str | None = None,
        group2: str | None = None,
        n_draws: int = 500,
        uncertainty: Sequence[str] = DEFAULT_UNCERTAINTY,
        random_state: int | None = 0,
    ) -> np.ndarray:
        """Posterior draws of every gene's log2 fold change ``test / reference``, shape ``(n_draws, n_genes)``.

        Each draw decodes the samples of both groups (size factors excluded) and takes the log2 ratio of the two
        groups' mean decoded expression (counterfactual mode: every sample of both groups decoded at each level
        of the factor, see the module notes). The sources of uncertainty (``uncertainty``):

        - ``"z"``: the latent codes, drawn from ``q(z | x)``;
        - ``"decoder"``: every gene's decoder parameters, from their Laplace posterior (the NB-GLM information on
          the features ``[1, z, covariates]`` averaged over ``q(z)``, plus the weight prior);
        - ``"dispersion"``: the log dispersions, from their empirical-Bayes posterior (at the nodes of
          ``gendex.model._posterior.dispersion_nodes``, each with its own decoder information and a share
          of the draws equal to its probability; the draws come grouped by node);
        - ``"residual"`` (unsupervised mode, latent space not separating the groups): the group coefficient of
          each gene's GLM on ``[1, z, covariates, group]`` with re-estimated dispersions, drawn from its Laplace
          posterior jointly with the decoder's coefficients; both groups are decoded at their common latent
          centroid, so the draws are that coefficient's. Without it such groups decode to the same means and a
          large true change gets a tight interval around 0. When these coefficients vary more than their
          posterior sds allow (genomic control's inflation factor, ``median(z^2) / 0.4549``, above 1: the groups
          differ by chance in variation the codes do not describe), each gene's draws are widened by that
          factor (``separation["residual_inflation"]``);
        - ``"imbalance"``, unsupervised mode with the latent space separating the groups: the decoded difference
          is ``W_g . (z1 - z2)`` of the groups' mean codes, and the draws get the sampling variance of that
          difference, ``W_g S W_g^T (1/n1 + 1/n2)`` (``S``: pooled within-group covariance of the codes). Without
          it, two null groups that the separation test lets through by chance (5% of null contrasts) get a
          confident change of every gene loaded on their chance difference;
        - ``"imbalance"`` (counterfactual mode): the codes of the conditional mode are orthogonal to the design,
          so a chance difference of the groups in the unknown variation the codes describe lands in the group
          coefficient; when the genes' log fold changes line up with their loadings (chi-square test of the
          regression of one on the other, p < 0.05), the draws get that imbalance's sampling variance
          (``_add_imbalance``). Without it, permuted labels on cohorts with hidden structure give hundreds
          of confident calls where DESeq2 gives none;
        - ``"samples"`` (not in the default): the sampling of the samples within each group, a Bayesian bootstrap
          (flat Dirichlet weights per draw) of the group means of the decoded expression, so that the draws cover
          the groups' population means, not only these samples'. For observational groups whose latent
          composition is itself random; a designed experiment (e.g. cell types balanced within each status)
          has a fixed composition, and the bootstrap would count it as noise.

        Parameters
        ----------
        adata
            AnnData with the same samples as the model's, holding the compared factor in ``obs``; None means
            the model's own AnnData.
        contrast
            ``[factor, test, reference]``.
        groupby, group1, group2
            Alias of ``contrast=[groupby, group1, group2]``.
        n_draws
            Number of draws (at least 10).
        uncertainty
            Sources of uncertainty to include.
        random_state
            Seed of a private generator; None draws fresh entropy.
        """
        res = self._lfc_draws(
            adata, contrast, groupby, group1, group2, n_draws=n_draws, uncertainty=uncertainty, seed=random_state
        )
        return res.draws

    def get_generative_de(
        self,
        adata: AnnData | None = None,
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
        random_state: int | None = 0,
    ) -> pd.DataFrame:
        """Generative DE table of ``test`` vs ``reference``, indexed by the model's genes.

        Draws from :meth:`get_lfc_draws`, summarised by ``gendex.stats._generative.de_table``: the estimates
        and intervals are the draws' own (as DESeq2's ``results()`` reports maximum-likelihood estimates); the
        calls come from the posterior under an adaptive shrinkage prior fitted to all genes
        (``lfc_prior="adaptive"``: :func:`gendex.stats.ash`, with a point mass at no change, on each gene's
        likelihood, the mixture of normals of its draws at the nodes of the dispersion posterior) or from the
        draws as they are (``"flat"``).

        Parameters
        ----------
        adata, contrast, groupby, group1, group2, n_draws, uncertainty, random_state
            As in :meth:`get_lfc_draws`.
        delta
            Smallest absolute log2 fold change that counts as differential expression.
        fdr_target
            Target of the posterior expected directional FDR of ``is_de``.
        ci_level
            Level of the equal-tailed interval ``lfc_lower``/``lfc_upper`` (quantiles of the draws).
        lfc_prior
            ``"adaptive"`` or ``"flat"``.

        Returns
        -------
        A DataFrame with ``baseMean`` (mean decoded normalised expression over the model's samples),
        ``log2FoldChange``, ``lfcSE`` (mean and sd of the draws), ``lfc_lower``, ``lfc_upper`` (their
        quantiles), ``prob_de`` (``P(|LFC| > delta)``), ``prob_up`` (``P(LFC > delta)``), ``prob_down``
        (``P(LFC < -delta)``), ``lfsr``, ``qvalue``, ``is_de``, ``stat`` (``log2FoldChange / lfcSE``),
        ``pvalue`` (local directional error ``1 - max(prob_up, prob_down)``), ``padj`` (= ``qvalue``),
        ``lfc_shrunk``, ``lfc_shrunk_se`` (posterior mean and sd under the adaptive prior, as DESeq2's
        ``lfcShrink``) and, in the unsupervised mode, ``lfc_residual``, ``lfc_residual_se`` (the observed
        group difference the decoder misses, log2); NaN for genes without counts.
        ``table.attrs["generative_de"]`` holds the record (``params``, ``design``, ``contrast``, ``mode``,
        ``separation``).

        Notes
        -----
        The error rate controlled is the posterior expected *directional* FDR of the list: among the genes
        with ``is_de``, the expected share whose log2 fold change is not beyond ``delta`` in the called
        direction (wrong sign or too small) is at most ``fdr_target``. It is the list's, not each gene's: the
        last genes called may have a local error (``pvalue``) above ``fdr_target``. In the unsupervised mode
        ``separation`` holds the silhouette of the two groups in the latent means, a cross-validated
        classifier's balanced accuracy and the share of the between-group differences the decoded means
        reproduce; a ``UserWarning`` names the fix when the latent space does not separate the groups.
        """
        from ..stats._generative import de_table

        _check_summary_args(delta, fdr_target, ci_level, lfc_prior)
        res = self._lfc_draws(
            adata, contrast, groupby, group1, group2, n_draws=n_draws, uncertainty=uncertainty, seed=random_state
        )
        table = de_table(
            res.draws,
            delta=delta,
            ci_level=ci_level,
            fdr_target=fdr_target,
            lfc_prior=lfc_prior,
            node_sizes=res.node_sizes,
        )
        table.insert(0, "baseMean", _posterior.mean_decoded(res.state))
        nan = np.full(table.shape[0], np.nan)
        table["lfc_residual"], table["lfc_residual_se"] = res.residual if res.residual is not None else (nan, nan)
        counts = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        empty = np.asarray(counts.sum(axis=0)).ravel() == 0
        table.loc[empty, table.columns != "is_de"] = np.nan
        table.loc[empty, "is_de"] = False
        table.index = pd.Index(self.adata.var_names.copy())
        comp, cf = res.groups.comparison, res.groups.counterfactual is not None
        table.attrs["generative_de"] = {
            "params": {
                "groupby": comp.factor,
                "group1": comp.test,
                "group2": comp.reference,
                "delta": float(delta),
                "fdr_target": float(fdr_target),
                "ci_level": float(ci_level),
                "n_draws": int(n_draws),
                "lfc_prior": lfc_prior,
                "uncertainty": list(uncertainty),
                "counterfactual": cf,
                "random_state": random_state,
            },
            "design": f"NB-VAE decoder on [1, z ({self.module.n_latent}-d), covariates]",
            "contrast": comp.as_list(),
            "mode": "counterfactual" if cf else "unsupervised",
            "separation": res.separation,
        }
        return table

    def differential_expression(
        self,
        adata: AnnData | None = None,
        groupby: str | None = None,
        group1: str | list[str] | tuple[str, ...] | None = None,
        group2: str | None = None,
        idx1: Any = None,
        idx2: Any = None,
        mode: str = "change",
        delta: float = 0.25,
        fdr_target: float = 0.05,
        **kwargs: Any,
    ) -> pd.DataFrame:
        """scvi-tools' ``differential_expression``, routed to :meth:`get_generative_de` for two named groups.

        Only the two-group form ``groupby=, group1=, group2=`` (``group1`` one level or a one-level list) with
        ``mode="change"``, ``delta`` and ``fdr_target`` is supported; it returns :meth:`get_generative_de`'s
        table (``is_de`` is gendex's directional call). scvi-tools' cell-level options (one-vs-rest groups,
        ``idx1``/``idx2``, ``mode="vanilla"``, batch correction, importance weights, ...) raise
        ``NotImplementedError``.
        """
        how = "use `model.get_generative_de(adata, contrast=[factor, test, reference])`"
        if isinstance(group1, (list, tuple)):
            if len(group1) != 1:
                raise NotImplementedError(f"NBVAE.differential_expression compares exactly two groups; {how}")
            group1 = group1[0]
        if idx1 is not None or idx2 is not None:
            raise NotImplementedError(f"NBVAE.differential_expression does not take `idx1`/`idx2`; {how}")
        if mode != "change":
            raise NotImplementedError(f"NBVAE.differential_expression supports mode='change' only; {how}")
        if groupby is None or group1 is None or group2 is None:
            raise NotImplementedError(
                f"NBVAE.differential_expression needs `groupby`, `group1` and `group2` (no one-vs-rest); {how}"
            )
        ignored = {"batch_size", "all_stats", "silent"}
        unsupported = sorted(k for k, v in kwargs.items() if k not in ignored and v not in (None, False))
        if unsupported:
            raise NotImplementedError(f"NBVAE.differential_expression does not support {unsupported}; {how}")
        return self.get_generative_de(
            adata, groupby=groupby, group1=group1, group2=group2, delta=delta, fdr_target=fdr_target
        )

    # ------------------------------------------------------------------ internals
    def _de_groups(
        self,
        adata: AnnData | None,
        contrast: Sequence[str] | None,
        groupby: str | None,
        group1: str | None,
        group2: str | None,
    ) -> _Groups:
        """Resolve and check the comparison: levels present, two samples each, not confounded with covariates."""
        comp = resolve_comparison(contrast, groupby=groupby, group1=group1, group2=group2)
        assert comp is not None  # required=True (the default) raises instead of returning None
        if adata is None:
            adata = self.adata
        elif list(adata.obs_names) != list(self.adata.obs_names):
            raise ValueError("`adata.obs_names` differ from the samples the model was trained on")
        col = check_groups(adata, comp.factor, [comp.test, comp.reference], min_size=1)
        idx1 = np.flatnonzero((col == comp.test).to_numpy())
        idx2 = np.flatnonzero((col == comp.reference).to_numpy())
        for level, idx in ((comp.test, idx1), (comp.reference, idx2)):
            if len(idx) < 2:
                raise ValueError(
                    f"group {level!r} of `obs[{comp.factor!r}]` has {len(idx)} sample; generative DE needs at least "
                    "2 per group (its uncertainty and the latent-separation check compare samples within groups)"
                )
        counterfactual = _posterior.counterfactual_features(self, comp.factor, comp.test, comp.reference)
        self._check_not_confounded(comp, idx1, idx2, counterfactual=counterfactual is not None)
        return _Groups(comp, idx1, idx2, counterfactual)

    def _covariate_columns(self) -> list[tuple[str, slice]]:
        """Each covariate of the decoder with its columns in the covariate features."""
        mgr, m = self.adata_manager, self.module
        out, start = [], 0
        if REGISTRY_KEYS.CAT_COVS_KEY in mgr.data_registry:
            keys = list(mgr.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY).field_keys)
            for key, n_cat in zip(keys, m.n_cats_per_cov, strict=True):
                out.append((str(key), slice(start, start + n_cat - 1)))
                start += n_cat - 1
        if REGISTRY_KEYS.CONT_COVS_KEY in mgr.data_registry:
            for key in mgr.get_state_registry(REGISTRY_KEYS.CONT_COVS_KEY).columns:
                out.append((str(key), slice(start, start + 1)))
                start += 1
        return out

    def _check_not_confounded(self, comp: Comparison, idx1: np.ndarray, idx2: np.ndarray, *, counterfactual: bool):
        """Raise when the two groups are a function of the (other) covariates of the decoder."""
        columns = [(k, s) for k, s in self._covariate_columns() if not (counterfactual and k == comp.factor)]
        if not columns:
            return
        feats = _posterior.covariate_features(self).cpu().numpy().astype(np.float64)
        sel = np.concatenate([idx1, idx2])
        label = np.r_[np.ones(len(idx1)), np.zeros(len(idx2))]

        def explains(cols: list[slice]) -> bool:
            x = np.column_stack([np.ones(len(sel)), *(feats[sel][:, s] for s in cols)])
            coef, *_ = np.linalg.lstsq(x, label, rcond=None)
            return bool(np.max(np.abs(x @ coef - label)) < 1e-6)

        if not explains([s for _, s in columns]):
            return
        alone = [k for k, s in columns if explains([s])]
        names = alone or [k for k, _ in columns]
        raise ValueError(
            f"the groups {comp.test!r} and {comp.reference!r} of {comp.factor!r} are confounded with the model's "
            f"covariate(s) {names}: every sample's group follows from them, so the decoder cannot tell the "
            "contrast from the covariate; retrain without the confounded covariate(s) or compare within their levels"
        )

    @torch.inference_mode()
    def _lfc_draws(
        self,
        adata: AnnData | None,
        contrast: Sequence[str] | None,
        groupby: str | None,
        group1: str | None,
        group2: str | None,
        *,
        n_draws: int,
        uncertainty: Sequence[str],
        seed: int | None,
    ) -> _Draws:
        if not getattr(self, "is_trained", False):
            raise ValueError("the model is not trained; train it with `gdx.tl.nbvae` or `model.train()`")
        if getattr(self, "dispersions_", None) is None:
            raise ValueError("the model has no fitted dispersions; call `model.fit_dispersions()` first")
        if isinstance(uncertainty, str):
            uncertainty = (uncertainty,)
        bad = sorted(set(uncertainty) - set(SOURCES))
        if bad:
            raise ValueError(f"unknown sources of `uncertainty`: {bad}; use any of {list(SOURCES)}")
        if int(n_draws) != n_draws or n_draws < 10:
            raise ValueError(f"`n_draws` must be an integer >= 10, got {n_draws}")
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31))
        groups = self._de_groups(adata, contrast, groupby, group1, group2)
        unsupervised = groups.counterfactual is None
        state = _posterior.glm_state(self, with_counts=False)
        idx1, idx2 = groups.idx1, groups.idx2
        separation: dict[str, Any] = _posterior.latent_separation(state.z_mean.cpu().numpy(), idx1, idx2)
        # the latent space carries the groups unless their latent means differ no more than chance allows
        separated = bool(np.isnan(separation["pvalue"]) or separation["pvalue"] < LATENT_SHIFT_ALPHA)
        use_residual = unsupervised and "residual" in uncertainty and not separated
        draw_state, residual = state, None
        if use_residual:
            _data.check_counts_fit_in_memory(self.adata_manager, "the residual DE of an unsupervised model")
            state = _posterior.glm_state(self, with_counts=True)
            draw_state = _posterior.with_group_feature(self, state, idx1, idx2)
            est = draw_state.beta[:, -1].cpu().numpy() / np.log(2.0)
            se = _posterior.group_coefficient_se(self, draw_state) / np.log(2.0)
            residual = (est, se)
            separation["decoded_share"] = _decoded_share(_posterior.group_difference(state, idx1, idx2), est, se)
            draw_state = _posterior.at_common_centroid(draw_state, idx1, idx2)
        imbalance = None
        # +1 or -1 by the order of the groups: the sampled latent shifts flip sign with the groups
        orientation = 1.0 if groups.idx1.min() < groups.idx2.min() else -1.0
        if unsupervised:
            separation["source"] = "residual" if use_residual else "decoded"
        else:
            if "imbalance" in uncertainty:
                imbalance = _imbalance_cov(state.z_mean.cpu().numpy(), idx1, idx2)
            idx1 = idx2 = np.concatenate([groups.idx1, groups.idx2])
        draws = _posterior.lfc_draws(
            self,
            draw_state,
            idx1,
            idx2,
            counterfactual=groups.counterfactual,
            n_draws=int(n_draws),
            include=tuple(uncertainty),
            random_state=seed,
        )
        if imbalance is not None:
            separation.update(_add_imbalance(draws, state, imbalance, seed, orientation))
        if unsupervised and separated and "imbalance" in uncertainty:
            # the decoded difference is W (z1 - z2) of the groups' mean codes; as the groups' difference it has
            # their sampling variance (a chance latent difference of two groups, which the separation test lets
            # through in 5% of null contrasts, would otherwise be a confident change of every gene loaded on it)
            latent_cov = _imbalance_cov(state.z_mean.cpu().numpy(), groups.idx1, groups.idx2)
            if latent_cov is not None:
                loadings = np.nan_to_num(_log2_loadings(state))
                _add_latent_shift(draws, loadings, latent_cov, seed, orientation)
            separation["latent_sampling_added"] = latent_cov is not None
        if use_residual and residual is not None:
            shift = _residual_latent_shift(draw_state, *residual)
            draws -= shift[None, :].astype(draws.dtype)
            residual = (residual[0] - shift, residual[1])
            separation["latent_shift_removed"] = float(np.sqrt(np.mean(shift**2)))
            centre = draws.mean(0, keepdims=True)
            inflation = _null_inflation(centre[0].astype(np.float64), draws.std(0, ddof=1).astype(np.float64))
            separation["residual_inflation"] = inflation
            if inflation > 1.0:  # widen each gene's draws about their mean (the node structure is kept)
                factor = np.float32(np.sqrt(inflation))
                draws -= centre
                draws *= factor
                draws += centre
                residual = (residual[0], residual[1] * float(factor))
        if unsupervised and not separated:
            _warn_if_not_separated(groups.comparison, separation, residual=use_residual)
        nodes = None
        if "dispersion" in uncertainty and "decoder" in uncertainty:
            nodes = _posterior.dispersion_nodes(int(n_draws))[1]
        return _Draws(draws, groups, state, separation, residual, nodes)


def _log2_loadings(state: _posterior.GLMState) -> np.ndarray:
    """The decoder's loadings ``W`` ``(G, k)`` in log2 units per unit of the codes (float64)."""
    k = state.z_mean.shape[1]
    return state.beta[:, 1 : 1 + k].cpu().numpy().astype(np.float64) / np.log(2.0)


def _imbalance_cov(z_mean: np.ndarray, idx1: np.ndarray, idx2: np.ndarray) -> np.ndarray | None:
    """Sampling covariance of the difference of two groups' mean latent codes, ``S (1/n1 + 1/n2)``.

    ``S`` is the pooled within-group covariance of the latent means: the spread of the unknown variation the
    codes describe. None without a latent space or with too few samples.
    """
    n1, n2, k = len(idx1), len(idx2), z_mean.shape[1]
    if k == 0 or n1 + n2 - 2 < 1:
        return None
    z1, z2 = z_mean[idx1], z_mean[idx2]
    pooled = ((z1 - z1.mean(0)).T @ (z1 - z1.mean(0)) + (z2 - z2.mean(0)).T @ (z2 - z2.mean(0))) / (n1 + n2 - 2)
    return pooled * (1.0 / n1 + 1.0 / n2)


def _add_imbalance(
    draws: np.ndarray, state: _posterior.GLMState, cov: np.ndarray, seed: int, orientation: float = 1.0
) -> dict:
    """Add the groups' chance latent imbalance to counterfactual draws (in place) when the data show it.

    The conditional mode's codes are orthogonal to the design, so a chance difference of the groups in the
    unknown variation the codes describe lands in the group coefficient, as ``W_g . delta`` for one latent
    shift ``delta`` shared by all genes. The weighted regression of the genes' log fold changes on their
    loadings estimates ``delta``; when it differs from 0 (chi-square p < 0.05) every draw gets ``W_g . delta``
    with ``delta ~ N(0, S (1/n1 + 1/n2))`` (``S``: pooled within-group covariance of the codes), the
    sampling variance of such an imbalance.
    """
    k = cov.shape[0]
    loadings = _log2_loadings(state)
    ok = np.all(np.isfinite(draws), axis=0)
    sel = draws[:, ok]  # one copy for both moments
    m, sd = sel.mean(0).astype(np.float64), np.maximum(sel.std(0, ddof=1), 1e-6)
    del sel
    x, w = loadings[ok], 1.0 / sd.astype(np.float64) ** 2
    xtwx = x.T @ (x * w[:, None])
    if ok.sum() <= k + 1 or np.linalg.matrix_rank(xtwx) < k:
        return {"imbalance_pvalue": float("nan"), "imbalance_added": False}
    delta = np.linalg.solve(xtwx, x.T @ (w * m))
    resid = m - x @ delta
    sigma2 = float((w * resid**2).sum() / (ok.sum() - k))
    stat = float(delta @ xtwx @ delta / sigma2)
    from scipy.stats import chi2

    pvalue = float(chi2.sf(stat, k))
    added = pvalue < 0.05
    if added:
        _add_latent_shift(draws, loadings, cov, seed, orientation)
    return {"imbalance_pvalue": pvalue, "imbalance_added": bool(added)}


def _add_latent_shift(
    draws: np.ndarray, loadings: np.ndarray, cov: np.ndarray, seed: int, orientation: float = 1.0
) -> None:
    """Add ``W_g . delta`` to every draw (in place), one latent shift ``delta ~ N(0, cov)`` per draw (log2 ``W``).

    ``orientation`` (+1 or -1, from the order of the two groups) makes the shifts of ``B vs A`` those of
    ``A vs B`` negated, so that swapping the groups negates every draw.
    """
    k = cov.shape[0]
    root = np.linalg.cholesky(cov + 1e-12 * np.eye(k))
    shift = orientation * np.random.default_rng(seed).standard_normal((draws.shape[0], k)) @ root.T
    for a in range(0, draws.shape[0], 32):  # in blocks of draws: float64 products that stay in the cache
        draws[a : a + 32] += (shift[a : a + 32] @ loadings.T).astype(np.float32)


def _residual_latent_shift(state: _posterior.GLMState, est: np.ndarray, se: np.ndarray) -> np.ndarray:
    """The part ``W_g . d`` of the residual group coefficients that lines up with the genes' loadings, ``(G,)``.

    The residual GLMs condition on the estimated latent codes; an error of the codes that differs between the
    groups (one latent shift ``d``, the same for every gene) lands in every gene's group coefficient in
    proportion to its loadings. As confounder adjustment does (CATE, RUV-4), ``d`` is the robust (Tukey
    biweight) regression of the coefficients, scaled by their standard errors, on the scaled loadings over
    the genes: most genes do not change, so their coefficients are that shift and noise.
    """
    from ._model import _tukey_regression

    k = state.z_mean.shape[1]
    loadings = _log2_loadings(state)
    ok = np.isfinite(est) & np.isfinite(se) & (se > 0) & np.all(np.isfinite(loadings), axis=1)
    if k == 0 or ok.sum() <= 10 * k:
        return np.zeros_like(est)
    d = _tukey_regression(loadings[ok] / se[ok, None], est[ok] / se[ok])
    return np.where(np.all(np.isfinite(loadings), axis=1), loadings @ d, 0.0)


def _null_inflation(est: np.ndarray, se: np.ndarray) -> float:
    """Genomic control's inflation factor of the genes' estimates: ``median(z^2) / 0.4549``, ``z = est / se``.

    ``est`` and ``se`` are the means and sds of each gene's draws. Under the null each ``z`` is standard normal
    and the median of ``z^2`` is chi-square(1)'s, 0.4549; most genes do not change, so the median holds against
    the few that do. A factor above 1 says that
    the group coefficients vary more than their standard errors allow, as when the groups differ by chance in
    variation the latent codes do not describe (more hidden factors than latent dimensions): each gene's
    draws then get that factor's share of extra variance (Devlin and Roeder's genomic control). Many changed
    genes move the median too (10% of genes far from 0: a factor of about 1.28), so the correction errs on the
    side of wider intervals; it never narrows them.
    """
    ok = np.isfinite(est) & np.isfinite(se) & (se > 0)
    if ok.sum() < 100:
        return float("nan")
    return float(np.median((est[ok] / se[ok]) ** 2) / 0.45493642311957283)


def _decoded_share(decoded: np.ndarray, residual: np.ndarray, se: np.ndarray) -> float:
    """Share of the genes' between-group differences (log2, squared, summed) that the decoded means carry.

    The residual group coefficients count beyond their noise (``max(est^2 - se^2, 0)``), so a decoder that
    reproduces every difference scores about 1 and one that decodes both groups to the same means about 0.
    """
    ok = np.isfinite(decoded) & np.isfinite(residual) & np.isfinite(se)
    carried = float((decoded[ok] ** 2).sum())
    missed = float(np.maximum(residual[ok] ** 2 - se[ok] ** 2, 0.0).sum())
    return carried / (carried + missed) if carried + missed > 0 else float("nan")


def _warn_if_not_separated(comp: Comparison, sep: dict[str, float], *, residual: bool) -> None:
    """Warn that the latent space does not separate the groups, and where the answer then comes from."""
    fix = (
        f"for a generative contrast train the model with {comp.factor!r} in its design (the conditional mode) "
        "and compare counterfactually"
    )
    if residual:
        how = (
            "the log fold changes are the group coefficients of per-gene GLMs on the latent codes "
            "(`lfc_residual`), not decoded differences"
        )
    else:
        how = "without the 'residual' source the decoded means of both groups hardly differ, whatever the data say"
    warnings.warn(
        f"the NB-VAE's latent space does not separate {comp.test!r} from {comp.reference!r} (silhouette "
        f"{sep['silhouette']:.2f}, cross-validated accuracy {sep['cv_accuracy']:.2f}, Hotelling p "
        f"{sep['pvalue']:.2g}): {how}; {fix}",
        UserWarning,
        stacklevel=4,
    )


def _check_summary_args(delta: float, fdr_target: float, ci_level: float, lfc_prior: str) -> None:
    if not np.isfinite(delta) or delta < 0:
        raise ValueError(f"`delta` must be >= 0, got {delta}")
    for name, val in (("fdr_target", fdr_target), ("ci_level", ci_level)):
        if not 0.0 < val < 1.0:
            raise ValueError(f"`{name}` must lie in (0, 1), got {val}")
    if lfc_prior not in ("adaptive", "flat"):
        raise ValueError(f"`lfc_prior` must be 'adaptive' or 'flat', got {lfc_prior!r}")

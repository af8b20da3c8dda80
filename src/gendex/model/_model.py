"""``NBVAE``: the AnnData-facing scvi-tools model of the bulk NB-VAE."""

from __future__ import annotations

import functools
import logging
import random
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import (
    CategoricalJointObsField,
    CategoricalObsField,
    LayerField,
    NumericalJointObsField,
    NumericalObsField,
)
from scvi.model.base import BaseModelClass, RNASeqMixin, UnsupervisedTrainingMixin, VAEMixin

from .._validation import check_obs_key
from . import _data, _dispersion, _init, _latent_dim, _posterior
from ._de import GenerativeDEMixin
from ._module import NBVAEModule

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)


class NBVAE(GenerativeDEMixin, RNASeqMixin, VAEMixin, UnsupervisedTrainingMixin, BaseModelClass):
    """Negative-binomial variational autoencoder for bulk RNA-seq counts (scvi-tools model).

    Each sample gets a low-dimensional latent code ``z`` (a normal posterior from an encoder on ``log1p(x / s)``);
    every gene is a negative-binomial GLM on the shared features ``[1, z, covariates]`` with the sample's DESeq2
    size factor ``s`` as a fixed offset: ``mu = s * exp(b + z W + c B)``. The per-gene intercepts start at the log
    mean normalised count, so the model trains reliably on a dozen samples and scales to thousands by minibatches.
    Dispersions are gene-wise with DESeq2's empirical-Bayes prior around a mean-dispersion trend: a moments trend
    during training, then (at the end of :meth:`train`) DESeq2's full procedure on the fitted means.

    Methods that read the trained model or sample from its posterior (``get_latent_representation``,
    ``get_normalized_expression``, ``get_lfc_draws``, ``get_generative_de``, ... see ``RNG_NEUTRAL_METHODS``)
    leave the global torch, numpy and Python generators as they found them (their own draws follow the
    caller's seed); :meth:`train` draws from torch's generator (:func:`gendex.tl.nbvae` trains under a
    private one).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Dimension of the latent space, or ``"auto"``: chosen from the residual structure of the log-normalised
        counts after the covariates (``gendex.model._latent_dim.choose_n_latent``; the choice and its
        reasons are in ``model.latent_dim_``).
    n_hidden
        Width of the encoder's hidden layer.
    weight_prior_sd
        Standard deviation of the normal prior on the decoder's loadings (natural-log expression per unit of the
        latent space); it keeps genes that are zero in one region of the latent space finite.
    cov_prior_sd
        Standard deviation of the (weak) normal prior on the covariate coefficients (natural log): design effects
        keep their size (a log2 fold change of 9 stays about 9). Genes with no counts in a whole cell of the
        design have no finite estimate under so weak a prior; after training the design coefficients are
        refitted with Firth's penalty, which bounds them (``gendex.model._posterior.firth_refit``).
    """

    _module_cls = NBVAEModule

    def __init__(
        self,
        adata: AnnData,
        n_latent: int | str = 2,
        n_hidden: int = 128,
        weight_prior_sd: float = 1.0,
        cov_prior_sd: float = 10.0,
    ):
        super().__init__(adata)
        n_cats, n_cont = _init.covariate_shapes(self.adata_manager)
        n_feat = sum(k - 1 for k in n_cats) + n_cont
        self.latent_dim_: dict | None = None
        self.confounding_: np.ndarray | None = None
        self.confounding_null_share_: np.ndarray | None = None
        if _LOADING.get():  # weights follow from the saved state: skip the data-driven start
            if not isinstance(n_latent, int):
                raise ValueError("a saved NBVAE must record an integer `n_latent`")
            init = _init.placeholder_parameters(self.summary_stats.n_vars, n_latent, n_feat)
        else:
            resolved = _resolve_n_latent(self.adata_manager, n_latent, n_feat)
            if isinstance(resolved, tuple):
                n_latent, self.latent_dim_ = resolved
            else:
                n_latent = resolved
            _latent_dim.check_n_latent(n_latent, self.adata.n_obs, n_feat)
            init, _, _ = _init.initial_parameters_from_manager(
                self.adata_manager, n_latent, weight_prior_sd, cov_prior_sd
            )
        self.module = self._module_cls(
            self.summary_stats.n_vars,
            init,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_cats_per_cov=n_cats,
            n_continuous_cov=n_cont,
            weight_prior_sd=weight_prior_sd,
            cov_prior_sd=cov_prior_sd,
        )
        self._model_summary_string = (
            f"NBVAE (bulk NB-VAE): n_latent={n_latent}, n_hidden={n_hidden}, genes={self.summary_stats.n_vars}, "
            f"covariate features={self.module.n_cov_features}"
        )
        self.dispersions_: pd.DataFrame | None = None
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = "counts",
        size_factor_key: str = "size_factors",
        categorical_covariate_keys: Sequence[str] | None = None,
        continuous_covariate_keys: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Register raw counts, size factors and covariates of ``adata`` for :class:`NBVAE`.

        Parameters
        ----------
        adata
            Samples x genes AnnData.
        layer
            Layer with the raw counts (non-negative integers); None means ``X``.
        size_factor_key
            Column of ``obs`` with the size factors (e.g. from :func:`gendex.pp.size_factors`), used as fixed
            offsets, never learned.
        categorical_covariate_keys
            Columns of ``obs`` decoded as categorical covariates (treatment coding, first level = reference).
        continuous_covariate_keys
            Columns of ``obs`` decoded as continuous covariates.
        **kwargs
            Passed on by scvi-tools when loading (``source_registry``).
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        stored = adata.X if layer is None else adata.layers[layer] if layer in adata.layers else None
        if _data.is_lazy(stored) and not _data.is_dask(stored):
            raise TypeError(
                "NBVAE.setup_anndata needs the counts in memory or as a dask array, not a backed file's dataset: "
                "train with `gdx.tl.nbvae` (which reads a backed file lazily), or open the file with "
                "`anndata.experimental.read_lazy`"
            )
        _data.training_counts(adata, layer)  # clear errors for missing layers, floats, negatives, NaN
        check_registration_inputs(adata, size_factor_key, categorical_covariate_keys, continuous_covariate_keys)
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, None),
            NumericalObsField(REGISTRY_KEYS.SIZE_FACTOR_KEY, size_factor_key, required=True),
            CategoricalJointObsField(REGISTRY_KEYS.CAT_COVS_KEY, _as_list(categorical_covariate_keys)),
            NumericalJointObsField(REGISTRY_KEYS.CONT_COVS_KEY, _as_list(continuous_covariate_keys)),
        ]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        with warnings.catch_warnings():
            # scvi-tools warns of covariate levels with fewer than 3 cells; bulk designs have them by nature
            # (a paired design's donor has 2 samples), and the design checks of gendex come before this
            warnings.filterwarnings("ignore", message=r"Category .* has fewer than 3 cells", category=UserWarning)
            manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None, **kwargs: Any) -> NBVAE:
        """Load a saved model (see :meth:`scvi.model.base.BaseModelClass.load`) without re-running the start.

        The data-driven initialisation is skipped (the saved weights replace it). A given ``adata`` is never
        written to: the model is set up on a private AnnData with its counts, size factors and covariates (the
        registry columns scvi-tools adds stay out of the caller's object).
        """
        if adata is not None and adata is not False:
            setup = cls.load_registry(dir_path, prefix=kwargs.get("prefix"))["setup_args"]
            adata = private_anndata(
                adata,
                layer=setup.get("layer"),
                size_factor_key=setup.get("size_factor_key", "size_factors"),
                categorical_covariate_keys=setup.get("categorical_covariate_keys"),
                continuous_covariate_keys=setup.get("continuous_covariate_keys"),
            )
        token = _LOADING.set(True)
        try:
            with quiet_lightning():
                return super().load(dir_path, adata=adata, **kwargs)
        finally:
            _LOADING.reset(token)

    def train(
        self,
        max_epochs: int | None = None,
        *,
        lr: float = 1e-2,
        batch_size: int | None = None,
        early_stopping: bool = True,
        early_stopping_patience: int = 10,
        early_stopping_tol: float = 0.005,
        n_epochs_kl_warmup: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        fit_dispersions: bool = True,
        plan_kwargs: dict | None = None,
        **trainer_kwargs: Any,
    ):
        """Train with bulk-sized defaults, then fit the empirical-Bayes dispersions on the fitted means.

        With covariates, the codes are held orthogonal to the covariate features during training; afterwards
        the intercepts and design coefficients are refitted given the codes with Firth's penalty (up to 200
        samples, see ``_refit_design_coefficients``), and the part of the codes the covariates explain is
        estimated from the genes that do not change and given back (see ``_adjust_for_confounding``; the
        estimate is in ``model.confounding_``).

        Parameters
        ----------
        max_epochs
            Maximum number of epochs; None means about 3,000 optimizer steps (between 100 and 1,000 epochs).
        lr
            Adam learning rate (``eps=1e-8``).
        batch_size
            Minibatch size; None means the full data set up to 512 samples (one step per epoch), else 256.
        early_stopping
            Stop when the training ELBO per sample has not improved by more than ``early_stopping_tol`` nats per
            gene for ``early_stopping_patience`` epochs (all samples are used for training; there is no
            validation split, see the notes of :func:`gendex.tl.nbvae`).
        early_stopping_patience
            Patience of early stopping, in epochs.
        early_stopping_tol
            Smallest improvement of the per-sample ELBO that counts, in nats per gene.
        n_epochs_kl_warmup
            Epochs of linear KL warm-up; None means a tenth of ``max_epochs``.
        accelerator, devices
            Passed to Lightning (``"cpu"``, ``"gpu"``, ``"auto"``; device count or indices). Further Lightning
            ``Trainer`` arguments go through ``**trainer_kwargs``, e.g. ``strategy="ddp_spawn"`` with
            ``devices=2`` for distributed data parallel (Lightning's DDP strategies become
            ``gendex.model._data.QuietDDPStrategy``; ``batch_size`` is then per process).
        fit_dispersions
            Run :meth:`fit_dispersions` after the gradient phase.
        plan_kwargs
            Extra arguments of :class:`scvi.train.TrainingPlan` (override the defaults above).
        **trainer_kwargs
            Extra arguments of :class:`scvi.train.Trainer` / Lightning's ``Trainer``.
        """
        for name, val in (("lr", lr), ("early_stopping_tol", early_stopping_tol)):
            if not (isinstance(val, int | float) and np.isfinite(val) and val > 0):
                raise ValueError(f"`{name}` must be a positive number, got {val!r}")
        for name, count in (("max_epochs", max_epochs), ("batch_size", batch_size)):
            if count is not None and not (
                isinstance(count, int | np.integer) and not isinstance(count, bool) and count >= 1
            ):
                raise ValueError(f"`{name}` must be a positive integer or None, got {count!r}")
        if not (isinstance(early_stopping_patience, int | np.integer) and early_stopping_patience >= 1):
            raise ValueError(f"`early_stopping_patience` must be a positive integer, got {early_stopping_patience!r}")
        n_obs = self.adata.n_obs
        if batch_size is None:
            batch_size = n_obs if n_obs <= 512 else 256
        steps = int(np.ceil(n_obs / batch_size))
        if max_epochs is None:
            max_epochs = int(min(1000, max(100, np.ceil(3000 / steps))))
        plan = {
            "lr": lr,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "n_epochs_kl_warmup": max(1, max_epochs // 10) if n_epochs_kl_warmup is None else n_epochs_kl_warmup,
            **(plan_kwargs or {}),
        }
        if "optimizer" not in plan and "optimizer_creator" not in plan:  # the same Adam, one fused kernel
            plan["optimizer"] = "Custom"
            plan["optimizer_creator"] = FusedAdam(plan["lr"], plan["eps"], plan["weight_decay"])
        callbacks = list(trainer_kwargs.pop("callbacks", None) or [])

        if early_stopping:
            callbacks.append(
                EarlyStopping(
                    monitor="elbo_train",
                    min_delta=early_stopping_tol * self.summary_stats.n_vars,
                    patience=early_stopping_patience,
                    check_on_train_epoch_end=True,
                )
            )
        trainer_kwargs.setdefault("enable_checkpointing", False)
        trainer_kwargs.setdefault("log_every_n_steps", max(1, min(10, steps)))
        if trainer_kwargs.get("enable_progress_bar") is None:
            trainer_kwargs["enable_progress_bar"] = bool(getattr(sys.stderr, "isatty", lambda: False)())
        shuffle_set_split, scratch = True, None
        if "strategy" in trainer_kwargs:
            trainer_kwargs["strategy"], distributed = _data.distributed_strategy(trainer_kwargs["strategy"])
            if distributed:
                # scvi-tools seeds its train/validation permutation per process; unseeded ranks would draw
                # different orders and their DistributedSampler shares would overlap (all samples train anyway)
                shuffle_set_split = False
                # the history (pickled by rank 0) and the spawn launcher's weights go to a scratch folder,
                # not to the working directory
                scratch = tempfile.mkdtemp(prefix="gendex-ddp-")
                trainer_kwargs.setdefault("default_root_dir", scratch)
                trainer_kwargs.setdefault("log_save_dir", scratch)
        if self._counts_on_disk():
            self._data_splitter_cls = _data.BlockDataSplitter
            trainer_kwargs.setdefault("use_distributed_sampler", False)  # BlockSampler shards the ranks itself
        try:
            with quiet_lightning():
                out = super().train(
                    max_epochs=max_epochs,
                    accelerator=accelerator,
                    devices=devices,
                    train_size=1.0,
                    batch_size=batch_size,
                    early_stopping=False,
                    plan_kwargs=plan,
                    callbacks=callbacks,
                    shuffle_set_split=shuffle_set_split,
                    datasplitter_kwargs={"drop_last": False},
                    **trainer_kwargs,
                )
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        self.module.eval()
        self._refresh_orthogonalisation()
        self._refit_design_coefficients()
        self._adjust_for_confounding()
        if fit_dispersions:
            self.fit_dispersions()
        return out

    def _counts_on_disk(self) -> bool:
        """Whether the registered counts are a dask array (read in row blocks, see ``gendex.model._data``)."""
        return _data.is_dask(self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY))

    def _make_data_loader(
        self,
        adata: AnnData,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        shuffle: bool = False,  # noqa: FBT001, FBT002 (scvi-tools' signature)
        data_loader_class=None,
        **data_loader_kwargs: Any,
    ):
        """scvi-tools' loader; for counts on disk, minibatches read in row blocks (``_data.inference_loader``).

        Every method that runs the model over samples (latent codes, decoded expression, ELBO) reads them so:
        each row block once for sorted ``indices``, with the minibatches of ``_data.group_rows`` samples.
        """
        mgr = self.get_anndata_manager(adata)
        if (
            mgr is not None
            and not shuffle
            and data_loader_class is None
            and not data_loader_kwargs
            and _data.is_dask(mgr.get_from_registry(REGISTRY_KEYS.X_KEY))
        ):
            return _data.inference_loader(mgr, indices, batch_size)
        return super()._make_data_loader(
            adata, indices, batch_size, shuffle, data_loader_class=data_loader_class, **data_loader_kwargs
        )

    @torch.no_grad()
    def _adjust_for_confounding(self) -> None:
        """Give the codes back the part of them that the design explains, estimated from the null genes.

        Training keeps the codes orthogonal to the covariate features, so an unknown factor that differs between
        the groups by chance would leave that difference in every gene's design coefficient ``B_g`` (as
        ``W_g gamma``). As confounder adjustment for linear models does (CATE, RUV-4), ``gamma`` (features x
        latent) is the robust (Tukey biweight) regression of the design coefficients on the loadings over the
        genes (most genes do not change, so their ``B_g`` is ``W_g gamma`` alone); then the codes become
        ``z + (c - c_mean) gamma`` and ``B <- B - W gamma^T`` (the intercepts absorb the centring): the fitted
        means are unchanged, the design coefficients are freed of the factor's imbalance, and their posterior
        sees the codes' correlation with the design (wider where the groups differ in the unknown factors).
        The estimate is in ``model.confounding_``.
        """
        m = self.module
        f, k = m.n_cov_features, m.n_latent
        if not (f and k):
            self.confounding_ = None
            return
        w = m.loadings.detach().double().cpu().numpy()
        b = m.cov_coef.detach().double().cpu().numpy()
        expressed = m.intercept.detach().double().cpu().numpy() > np.log(1.0)
        gamma = np.zeros((f, k))
        for j in range(f):
            gamma[j] = _tukey_regression(w[expressed], b[expressed, j])
        self._shift_codes(gamma)
        # the estimate needs most genes unchanged by the feature (CATE's sparsity); where the adjusted
        # coefficients say otherwise (Storey's null share of their Wald p-values < MIN_NULL_SHARE, e.g. a cell
        # type that changes most genes), the shift is undone for that feature
        null_share = self._null_share()
        dense = null_share < MIN_NULL_SHARE
        if dense.any():
            undo = np.where(dense[:, None], -gamma, 0.0)
            self._shift_codes(undo)
            gamma = gamma + undo
        self.confounding_ = gamma
        self.confounding_null_share_ = null_share

    @torch.no_grad()
    def _shift_codes(self, gamma: np.ndarray) -> None:
        """Codes ``+= (c - c_mean) gamma``, ``B -= W gamma^T``, intercepts absorb the centring (same fit)."""
        m = self.module
        g = torch.as_tensor(gamma, dtype=m.loadings.dtype, device=m.loadings.device)
        enc = m.z_encoder
        m.intercept += m.loadings @ (g.T @ enc.cov_mean)
        m.cov_coef -= m.loadings @ g.T
        enc.code_cov_coef -= g

    @torch.no_grad()
    def _null_share(self) -> np.ndarray:
        """Storey's estimate (lambda = 0.5) of the share of genes each covariate feature leaves unchanged."""
        from scipy.stats import norm

        state = _posterior.glm_state(self, max_samples=200, with_counts=False)
        mu = state.mu()
        alpha = torch.exp(self.module.log_disp.detach().to(mu.dtype))
        wts = mu / (1.0 + alpha * mu)
        info = torch.einsum("ng,npq->gpq", wts, state.moments) + torch.diag(self.module.prior_precision_diag())
        p = info.shape[-1]
        f = self.module.n_cov_features
        cov = torch.linalg.inv(info)[:, p - f :, p - f :].diagonal(dim1=-2, dim2=-1)
        z = (state.beta[:, p - f :] / cov.sqrt()).cpu().numpy()
        keep = np.isfinite(z).all(1) & (self.module.intercept.detach().cpu().numpy() > 0)
        pvals = 2 * norm.sf(np.abs(z[keep]))
        return np.minimum(1.0, (pvals > 0.5).mean(0) / 0.5)

    @torch.inference_mode()
    def _refresh_orthogonalisation(self) -> None:
        """Make the codes of the training samples exactly orthogonal to the covariate features (see the encoder)."""
        m = self.module
        if not m.n_cov_features:
            return
        rows = _init.init_rows(self.adata.n_obs, REFRESH_SAMPLES)
        mgr = self.adata_manager
        x = mgr.get_from_registry(REGISTRY_KEYS.X_KEY)
        sf = torch.as_tensor(
            np.asarray(mgr.get_from_registry(REGISTRY_KEYS.SIZE_FACTOR_KEY), dtype=np.float32).reshape(-1, 1)[rows]
        )
        feats = _posterior.covariate_features(self, rows)
        means = []  # the codes' raw means, group by group: one group of samples x genes in memory at a time
        for where, counts in _data.iter_rows(x, rows, _data.group_rows(x.shape[1])):
            u = torch.log1p(torch.as_tensor(counts, dtype=torch.float32) / sf[where]).to(self.device)
            means.append(m.z_encoder.raw_mean(u, feats[where])[0])
            del u, counts
        m.z_encoder.set_orthogonalisation(torch.cat(means), feats)

    @torch.inference_mode()
    def fit_dispersions(
        self, *, max_samples: int = 200, random_state: int = 0, heavy_tail: bool = True
    ) -> pd.DataFrame:
        """DESeq2's dispersion procedure on the decoded means; sets the module's dispersions and prior.

        Gene-wise Cox-Reid adjusted estimates given the fitted means at the latent posterior means, the DESeq2
        engine's trend and prior variance, the MAP dispersions and the posterior of each log dispersion (on a
        grid: its variance and nodes). With ``heavy_tail`` the prior has a one-sided heavy tail above the trend
        whose weights are estimated from the data (``gendex.model._dispersion.tail_weights``): genes far above
        the trend keep their dispersion and its uncertainty; without it DESeq2's outlier rule applies (gene-wise
        kept more than two prior standard deviations above the trend). The trend, the prior and the tail
        weights are in ``model.dispersion_trend_``. At most ``max_samples`` random samples are used (the
        posterior variances are then scaled to all samples).

        Returns
        -------
        The table stored in ``model.dispersions_`` (genes x ``baseMean, genewise, trend, MAP, dispersion,
        outlier, log_dispersion_var, node_1, ..., node_8``; the nodes in posterior sds from the dispersion).
        """
        state = _posterior.glm_state(self, max_samples=max_samples, random_state=random_state)
        assert state.counts is not None  # glm_state collects the counts by default
        base_mean = (state.counts / state.size_factors[:, None]).mean(0).cpu().numpy()
        fit = _dispersion.fit_dispersions(state.counts, state.mu(), state.moments, base_mean, heavy_tail=heavy_tail)
        fit.log_final_var = fit.log_final_var * len(state.indices) / self.adata.n_obs
        self.module.set_dispersions(fit.log_final, fit.log_trend, fit.prior_var)
        self.dispersions_ = fit.to_frame(base_mean, self.adata.var_names)
        self.dispersion_trend_ = {
            "kind": fit.trend_kind,
            "coefs": [float(c) for c in fit.trend_coefs],
            "prior_var": fit.prior_var,
            "heavy_tail": heavy_tail,
            "tail_shifts_sd": _dispersion.TAIL_SHIFTS.tolist(),
            "tail_weights": fit.tail_weights.round(6).tolist(),
        }
        return self.dispersions_

    @torch.no_grad()
    def _refit_design_coefficients(self, max_samples: int = 200) -> None:
        """Intercepts and design coefficients as Firth-penalised MAPs given the codes (``_posterior.firth_refit``).

        Finite where a design cell has no counts (training leaves such a coefficient wherever it stopped).
        With more samples than ``max_samples`` (a random subset would lose information) they stay as trained:
        a design cell without counts is then rare, and each coefficient's information large.
        """
        m = self.module
        if not m.n_cov_features or self.adata.n_obs > max_samples:
            return
        beta = _posterior.firth_refit(self, _posterior.glm_state(self))
        m.intercept.copy_(beta[:, 0].to(m.intercept))
        m.cov_coef.copy_(beta[:, 1 + m.n_latent :].to(m.cov_coef))

    @torch.inference_mode()
    def get_decoded_means(self) -> np.ndarray:
        """Decoded size-factor-normalised means of every sample at its latent posterior mean, ``(n_obs, n_genes)``.

        Deterministic, unlike scvi-tools' ``get_normalized_expression``, which decodes a draw of each latent code.
        """
        z = torch.as_tensor(self.get_latent_representation(), device=self.device)
        feats = _posterior.covariate_features(self) if self.module.n_cov_features else None
        return torch.exp(self.module.log_normalized_mean(z, feats)).cpu().numpy().astype(np.float64)

    @torch.inference_mode()
    def decode_latent(self, latent: np.ndarray) -> np.ndarray:
        """Decoded size-factor-normalised means at latent points ``(m, n_latent)`` -> ``(m, n_genes)``.

        Covariates, if any, are held at their average feature values over the registered samples.
        """
        k = self.module.n_latent
        try:
            arr = np.asarray(latent, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"`latent` must be a numeric array of shape (m, {k})") from None
        if arr.ndim == 1 and arr.size == k:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != k:
            raise ValueError(
                f"`latent` must have shape (m, {k}) (the model has {k} latent dimensions), got {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError("`latent` holds non-finite coordinates")
        z = torch.as_tensor(arr.astype(np.float32), device=self.device)
        feats = _posterior.covariate_features(self).mean(0, keepdim=True) if self.module.n_cov_features else None
        return torch.exp(self.module.log_normalized_mean(z, feats)).cpu().numpy().astype(np.float64)


class FusedAdam:
    """Creates :class:`torch.optim.Adam` with ``fused=True`` where the parameters' device has the fused kernel.

    The same update as scvi-tools' default Adam (one kernel over all parameters instead of a dozen tensor
    operations per parameter: about 5x faster per step on a CPU for the NB-VAE's 2.4 million encoder weights);
    falls back to the default implementation elsewhere. A class, not a closure, so that a training plan holding
    it can be pickled (spawned DDP workers).
    """

    def __init__(self, lr: float, eps: float, weight_decay: float):
        self.lr, self.eps, self.weight_decay = float(lr), float(eps), float(weight_decay)

    def __call__(self, params) -> torch.optim.Adam:
        params = list(params)
        kw: dict[str, Any] = {"lr": self.lr, "eps": self.eps, "weight_decay": self.weight_decay}
        try:
            return torch.optim.Adam(params, fused=True, **kw)
        except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
            return torch.optim.Adam(params, **kw)


@contextmanager
def global_rng_kept():
    """Leave the global torch (CPU and CUDA), numpy and Python generators as the block found them.

    Code inside still draws from them (a stochastic method's draws follow the caller's seed), but their states
    are restored afterwards, so a caller's own random stream is the same whether or not the block ran.
    """
    py, npy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


def _keeps_global_rng(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with global_rng_kept():
            return method(*args, **kwargs)

    return wrapper


#: Methods that read the model (or sample from its posterior) without training it: they leave the caller's global
#: generators as they were (scvi-tools' data loaders draw a torch seed, and its samplers use torch's generator).
RNG_NEUTRAL_METHODS = (
    "get_latent_representation",
    "get_normalized_expression",
    "get_likelihood_parameters",
    "posterior_predictive_sample",
    "get_feature_correlation_matrix",
    "get_elbo",
    "get_reconstruction_error",
    "get_marginal_ll",
    "get_decoded_means",
    "decode_latent",
    "fit_dispersions",
    "get_lfc_draws",
    "get_generative_de",
    "differential_expression",
)
for _name in RNG_NEUTRAL_METHODS:
    setattr(NBVAE, _name, _keeps_global_rng(getattr(NBVAE, _name)))


def _tukey_regression(x: np.ndarray, y: np.ndarray, n_iter: int = 30) -> np.ndarray:
    """Robust regression ``y ~ x`` (no intercept) by iteratively reweighted least squares with Tukey's biweight."""
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    for it in range(n_iter):
        r = y - x @ coef
        scale = 1.4826 * np.median(np.abs(r - np.median(r))) + 1e-12
        c = (1.345 if it < 5 else 4.685) * scale  # Huber start, then the biweight (redescending)
        u = np.abs(r) / c
        wts = np.minimum(1.0, 1.0 / np.maximum(u, 1e-12)) if it < 5 else np.where(u < 1, (1 - u**2) ** 2, 0.0)
        xw = x * wts[:, None]
        new = np.linalg.lstsq(xw.T @ x + 1e-10 * np.eye(x.shape[1]), xw.T @ y, rcond=None)[0]
        if np.max(np.abs(new - coef)) < 1e-8:
            return new
        coef = new
    return coef


#: At most this many evenly spaced samples set the codes' final orthogonalisation to the covariate features: a
#: regression of the ``n_latent`` code means on the features, whose standard error is about sd(codes) /
#: sqrt(n var(feature)), 3% of the codes' spread at 5,000 samples for a balanced two-level factor. The samples
#: are read and encoded in groups (``_data.iter_rows``), so the cap bounds time, not memory.
REFRESH_SAMPLES = 5000

#: Least share of unchanged genes (per covariate feature) for which the confounding estimate is trusted.
MIN_NULL_SHARE = 0.7

_LOADING: ContextVar[bool] = ContextVar("nbvae_loading", default=False)

#: Lightning and scvi-tools lines that are noise to a library user (kept out of stdout/stderr while training).
_QUIET_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "scvi")
#: Warnings that are noise to a library user: ``(message regex, category)``.
QUIET_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r".*isinstance\(treespec, LeafSpec\).*", FutureWarning),
    (r".*does not have many workers.*", Warning),
    (r".*litlogger.*", Warning),
    # scvi-tools' own early stopping is off anyway; the NB-VAE's (on the synchronised training ELBO) stays on
    (r"early_stopping was automatically disabled due to the use of DDP", UserWarning),
)


@contextmanager
def quiet_lightning():
    """Silence Lightning's banners ("GPU available", "Seed set", tips) and its pytree FutureWarning."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message, category in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def check_registration_inputs(
    adata: AnnData,
    size_factor_key: str,
    categorical_covariate_keys: Sequence[str] | str | None,
    continuous_covariate_keys: Sequence[str] | str | None,
) -> None:
    """Clear errors, before anything is computed, for size factors and covariates the model cannot use."""
    sf = check_obs_key(adata, size_factor_key)
    if not (pd.api.types.is_numeric_dtype(sf) and not pd.api.types.is_bool_dtype(sf)):
        raise TypeError(
            f"`adata.obs[{size_factor_key!r}]` holds {sf.dtype} values, not numbers: size factors must be positive "
            "floats (compute them with `gdx.pp.size_factors(adata)`)"
        )
    values = sf.to_numpy(dtype=float)
    if not (np.all(np.isfinite(values)) and np.all(values > 0)):
        raise ValueError(f"`adata.obs[{size_factor_key!r}]` must hold finite positive size factors")
    for key in _as_list(categorical_covariate_keys) or []:
        col = check_obs_key(adata, key)
        if col.isna().any():
            raise ValueError(
                f"covariate `adata.obs[{key!r}]` has {int(col.isna().sum())} missing value(s); the model needs every "
                "sample annotated (fill them in, or drop those samples)"
            )
    for key in _as_list(continuous_covariate_keys) or []:
        col = check_obs_key(adata, key)
        if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
            raise TypeError(
                f"continuous covariate `adata.obs[{key!r}]` holds {col.dtype} values, not numbers; "
                "pass it as a categorical covariate instead"
            )
        vals = col.to_numpy(dtype=float)
        if not np.all(np.isfinite(vals)):
            raise ValueError(
                f"covariate `adata.obs[{key!r}]` has {int((~np.isfinite(vals)).sum())} missing or infinite value(s); "
                "the model needs every sample annotated (fill them in, or drop those samples)"
            )


def private_anndata(
    adata: AnnData,
    *,
    layer: str | None,
    size_factor_key: str,
    categorical_covariate_keys: Sequence[str] | None = None,
    continuous_covariate_keys: Sequence[str] | None = None,
) -> AnnData:
    """A new AnnData with only the counts, size factors and covariates of ``adata`` (nothing is copied twice).

    scvi-tools' registry writes its fields into the AnnData a model is set up on; this one is the model's own.
    """
    from anndata import AnnData as _AnnData

    counts = _data.training_counts(adata, layer)
    check_registration_inputs(adata, size_factor_key, categorical_covariate_keys, continuous_covariate_keys)
    covs = [*(_as_list(categorical_covariate_keys) or []), *(_as_list(continuous_covariate_keys) or [])]
    obs = adata.obs[[size_factor_key, *covs]].copy()
    obs[size_factor_key] = obs[size_factor_key].to_numpy(dtype=np.float64)
    private = _AnnData(obs=obs, var=pd.DataFrame(index=adata.var_names.copy()))
    if layer is None:
        private.X = counts
    else:
        private.layers[layer] = counts
    return private


def _resolve_n_latent(mgr, n_latent: int | str, n_feat: int) -> int | tuple[int, dict]:
    if isinstance(n_latent, str):
        if n_latent != "auto":
            raise ValueError(f"`n_latent` must be a positive integer or 'auto', got {n_latent!r}")
        n_cats, n_cont = _init.covariate_shapes(mgr)
        rows = _init.init_rows(mgr.adata.n_obs)
        feats = _posterior.registered_covariates(mgr, n_cats, n_cont).numpy().astype(np.float64)[rows]
        counts = _data.read_rows(mgr.get_from_registry(REGISTRY_KEYS.X_KEY), rows)
        sf = np.asarray(mgr.get_from_registry(REGISTRY_KEYS.SIZE_FACTOR_KEY), dtype=np.float64).ravel()[rows]
        return _latent_dim.choose_n_latent(counts, sf, feats)
    if isinstance(n_latent, bool) or not isinstance(n_latent, int | np.integer) or n_latent < (0 if n_feat else 1):
        raise ValueError(
            f"`n_latent` must be a positive integer (0 is allowed beside covariates) or 'auto', got {n_latent!r}"
        )
    return int(n_latent)


def _as_list(keys: Sequence[str] | None) -> list[str] | None:
    if keys is None:
        return None
    return [keys] if isinstance(keys, str) else list(keys)

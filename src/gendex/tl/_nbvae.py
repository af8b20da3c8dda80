"""``tl.nbvae`` and ``tl.latent_path``: the NB-VAE on AnnData (torch imported lazily)."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from numpy.typing import NDArray

from .._design import design_factors, design_matrix, prepare_obs
from .._lazy import is_dask
from .._utils import h5ad_safe, package_versions
from .._validation import check_no_empty_samples, check_obs_key, get_counts
from ._generative_de import annotation_shell, check_model_data

if TYPE_CHECKING:
    from ..model import NBVAE

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = ("elbo_train", "reconstruction_loss_train", "kl_local_train", "kl_global_train")


def nbvae(
    adata: AnnData,
    *,
    design: str | None = None,
    n_latent: int | Literal["auto"] | None = None,
    layer: str | None = "counts",
    size_factor_key: str = "size_factors",
    categorical_covariate_keys: Sequence[str] | None = None,
    continuous_covariate_keys: Sequence[str] | None = None,
    n_hidden: int = 128,
    weight_prior_sd: float = 1.0,
    cov_prior_sd: float = 10.0,
    max_epochs: int | None = None,
    lr: float = 1e-2,
    batch_size: int | None = None,
    early_stopping: bool = True,
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    enable_progress_bar: bool | None = None,
    train_kwargs: dict[str, Any] | None = None,
    key_added: str = "X_nbvae",
    random_state: int | None = 0,
) -> NBVAE:
    """Train the NB-VAE (:class:`gendex.model.NBVAE`) on raw counts and store the latent space.

    Two modes. **Unsupervised** (no ``design``): the model never sees the sample labels; the latent space is
    learnt from the counts alone and is what to plot and explore. **Conditional** (``design="~donor +
    condition"``): the design's factors (the contrast factor and known nuisance factors such as donor or batch;
    categorical or continuous, additive terms only) are decoder covariates, and the latent codes absorb the
    remaining, unknown variation (as RUV/SVA factors do for linear models). Training keeps the codes orthogonal
    to the design's columns over the samples, so they cannot take over the design's effects; afterwards the
    part of the unknown factors that differs between the groups by chance is estimated from the genes that do
    not change and given back to the codes (confounder adjustment, as CATE/RUV-4 do), and the design
    coefficients have only a weak prior (``cov_prior_sd``), so large fold changes keep their size.
    :func:`gendex.tl.generative_de` on a design factor then decodes every sample as each level
    (counterfactual DE). Use the conditional mode for DE whenever the groups are known; the unsupervised mode
    for the latent space itself.

    The model is trained on a private AnnData holding only the counts, size factors and covariates, so scvi-tools'
    registry fields never enter ``adata``, and under a private random state, so the caller's global numpy,
    torch and Python generators are left as they were.

    Parameters
    ----------
    adata
        Samples x genes AnnData with raw counts and size factors (:func:`gendex.pp.size_factors`). It may be
        backed (``anndata.read_h5ad(path, backed="r")``) or lazy (its counts a dask array, e.g. from
        ``anndata.experimental.read_lazy``): the counts are then checked block by block and read in row blocks
        during training, never loaded as a whole (see the notes).
    design
        Formula of additive ``obs`` columns (``"~donor + condition"``) decoded as covariates: the conditional
        mode. None: the unsupervised mode (or the low-level covariate keys below).
    n_latent
        Dimension of the latent space: an integer, ``"auto"`` (from the residual structure after the design: a
        parallel analysis of the log-normalised counts, capped so that every gene's GLM keeps residual degrees
        of freedom; the choice and why are in ``uns[key_added]["params"]["latent_dim"]``), or None: ``"auto"``
        with a design, 2 without (a plottable space; GSE60450's story).
    layer
        Layer with the raw counts; None means ``X``.
    size_factor_key
        Column of ``obs`` with the size factors (fixed offsets of the likelihood).
    categorical_covariate_keys, continuous_covariate_keys
        The low-level form of ``design`` (columns of ``obs`` decoded as covariates); give one or the other.
    n_hidden
        Width of the encoder's hidden layer.
    weight_prior_sd
        Standard deviation of the normal prior on the decoder's loadings (log scale per unit of the latent
        space); it keeps genes that are zero in one region of the latent space finite.
    cov_prior_sd
        Standard deviation of the weak normal prior on the covariate (design) coefficients, natural log.
    max_epochs, lr, batch_size, early_stopping, accelerator, devices
        Training settings, see :meth:`gendex.model.NBVAE.train` (defaults suit bulk data of any size).
    enable_progress_bar
        Show a progress bar; None shows one only when stderr is a terminal.
    train_kwargs
        Further arguments of :meth:`gendex.model.NBVAE.train` (e.g. ``strategy``, ``plan_kwargs``,
        ``fit_dispersions``).
    key_added
        Key of ``obsm`` (latent means) and ``uns`` (parameters and training history).
    random_state
        Seed of a private random state for the initialisation and training; None uses (and advances) the
        global torch/numpy generators.

    Returns
    -------
    The trained model. Sets ``adata.obsm[key_added]`` (samples x ``n_latent`` latent means) and
    ``adata.uns[key_added] = {"params": {...}, "history": DataFrame, "versions": {...}}`` (ELBO terms per epoch,
    indexed from 0). ``params`` records the mode, the design, ``n_latent`` and how it was chosen, the
    dispersion trend and prior, ``confounding`` (the part of the codes the design explains, features x latent,
    estimated from the genes that do not change; see :meth:`gendex.model.NBVAE.train`) and
    ``latent_design_max_abs_corr`` (largest absolute correlation of a latent dimension with a design column).

    Notes
    -----
    The model (:class:`gendex.model.NBVAE`): counts ``x_ig ~ NB(s_i exp(b_g + z_i W_g + c_i B_g), alpha_g)`` with
    the DESeq2 size factors ``s_i`` as fixed offsets, a normal latent code ``z_i`` per sample encoded from
    ``log1p(x_i / s_i)``, and a per-gene log-linear decoder (a negative-binomial GLM on shared latent features).
    Training starts from the data: the encoder at the PCA of the log-normalised counts (after the covariates'
    effects), every gene's decoder at its NB GLM fit on those codes, and the dispersions at DESeq2's
    empirical-Bayes estimates given those fits; Adam (full batch up to 512 samples, else minibatches of 256)
    then maximises the ELBO plus the log priors (the dispersion prior around the mean-dispersion trend and
    normal priors on the loadings and the covariate coefficients). All samples are used for training: early
    stopping watches the training ELBO, since a held-out sample of a dozen cannot monitor anything. After
    training, with a design and up to 200 samples, every gene's intercept and design coefficients are refitted
    given the codes with Firth's penalty (the Jeffreys prior), so that a gene with no counts in a whole cell of
    the design (every untreated sample at 0, say) gets a finite, moderate fold change instead of wherever
    training left an estimate that has no finite maximum; then DESeq2's dispersion procedure (gene-wise Cox-Reid
    estimates, the DESeq2 engine's trend and prior variance, a heavy upper tail of the prior estimated from the
    data, the MAP and the posterior on a grid) runs again on the decoded means.

    **Counts on disk.** With a backed or lazy ``adata`` the model keeps the counts as a dask array. The start
    reads the 1,000 evenly spaced samples it uses; each training epoch reads the store's row chunks once, in
    random groups of chunks whose rows are shuffled together into minibatches (so keep row chunks of a few
    hundred to a few thousand samples, all genes); with full batches (up to 512 samples) the minibatches, and so
    the trained model, are exactly those of the in-memory training with the same ``random_state``.

    **Several processes.** ``train_kwargs={"strategy": "ddp_spawn"}`` with ``devices=2`` (or ``"ddp"``,
    ``"ddp_fork"``) trains with Lightning's distributed data parallel, on CPUs with the gloo backend: every
    process takes its share of each epoch's samples (``batch_size`` is per process), the gradients are
    averaged and the encoder's orthogonalisation to the design is computed over all processes together, so the
    result is one process's to within the Monte-Carlo noise of the ELBO. The initialisation is computed once,
    in the calling process. ``"ddp"`` re-runs the calling script in every process, as Lightning documents.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=200, random_state=0)
    >>> gdx.pp.size_factors(adata)
    >>> model = gdx.tl.nbvae(adata, max_epochs=20, accelerator="cpu")
    >>> adata.obsm["X_nbvae"].shape
    (8, 2)
    >>> model = gdx.tl.nbvae(adata, design="~condition", n_latent=1, max_epochs=20, accelerator="cpu")
    >>> adata.uns["X_nbvae"]["params"]["mode"]
    'conditional'
    """
    on_disk = _counts_on_disk(adata, layer)
    if not on_disk:
        counts = get_counts(adata, layer, dense=False)  # validated, not copied
        check_no_empty_samples(counts, adata.obs_names)
    if adata.n_obs < 2:
        raise ValueError(f"the NB-VAE needs at least 2 samples, got {adata.n_obs}")
    cat_keys, cont_keys = _as_list(categorical_covariate_keys), _as_list(continuous_covariate_keys)
    obs = adata.obs if isinstance(adata.obs, pd.DataFrame) else adata.obs.to_memory()  # lazy: xarray-backed
    design_obs = None
    if design is not None:
        if cat_keys or cont_keys:
            raise ValueError(
                "give the covariates once: either `design=` or `categorical_covariate_keys`/`continuous_covariate_keys`"
            )
        cat_keys, cont_keys, design_obs = design_covariates(obs, design)
    n_latent_arg = n_latent
    if n_latent is None:
        n_latent = "auto" if design is not None else 2
    if not (n_latent == "auto" or (isinstance(n_latent, int | np.integer) and not isinstance(n_latent, bool))):
        raise ValueError(f"`n_latent` must be a positive integer, 'auto' or None, got {n_latent!r}")
    if n_latent != "auto" and n_latent < (0 if (cat_keys or cont_keys) else 1):
        raise ValueError(f"`n_latent` must be >= 1 (>= 0 with a design: no latent space), got {n_latent}")
    train_opts = dict(train_kwargs or {})
    fit_disp = train_opts.get("fit_dispersions", True)

    with _private_random_state(random_state):  # importing scvi-tools draws from Python's generator too
        from ..model import NBVAE
        from ..model._data import on_disk_source
        from ..model._latent_dim import check_n_latent
        from ..model._model import private_anndata, quiet_lightning

    # counts on disk: checked block by block, and kept a dask array that training reads in row blocks
    source = on_disk_source(adata, obs, layer) if on_disk else adata
    private = private_anndata(
        source,
        layer=layer,
        size_factor_key=size_factor_key,
        categorical_covariate_keys=cat_keys,
        continuous_covariate_keys=cont_keys,
    )
    if design_obs is not None:  # the design's coding (levels sorted, first = reference), as tl.deseq2 uses it
        for col in design_obs.columns:
            private.obs[col] = design_obs[col].to_numpy()
            if isinstance(design_obs[col].dtype, pd.CategoricalDtype):
                private.obs[col] = pd.Categorical(design_obs[col].to_numpy(), categories=design_obs[col].cat.categories)
    n_feat = sum(len(private.obs[k].astype("category").cat.categories) - 1 for k in cat_keys) + len(cont_keys)
    if n_latent != "auto":
        check_n_latent(int(n_latent), adata.n_obs, n_feat)
    _check_confounding(private.obs, cat_keys, cont_keys)

    with _private_random_state(random_state), quiet_lightning():
        NBVAE.setup_anndata(
            private,
            layer=layer,
            size_factor_key=size_factor_key,
            categorical_covariate_keys=cat_keys or None,
            continuous_covariate_keys=cont_keys or None,
        )
        model = NBVAE(
            private,
            n_latent=n_latent,
            n_hidden=n_hidden,
            weight_prior_sd=weight_prior_sd,
            cov_prior_sd=cov_prior_sd,
        )
        train_opts.setdefault("enable_progress_bar", enable_progress_bar)
        model.train(
            max_epochs=max_epochs,
            lr=lr,
            batch_size=batch_size,
            early_stopping=early_stopping,
            accelerator=accelerator,
            devices=devices,
            **train_opts,
        )
        latent = model.get_latent_representation().astype(np.float64)  # a DataLoader draws a torch seed
        max_corr = _max_abs_corr(latent, model)
    history = training_history(model)
    params = {
        "mode": "conditional" if (cat_keys or cont_keys) else "unsupervised",
        "design": design,
        "n_latent": int(model.module.n_latent),
        "n_latent_requested": "default" if n_latent_arg is None else n_latent_arg,
        "latent_dim": model.latent_dim_ if model.latent_dim_ is not None else {"method": "given"},
        "layer": layer,
        "size_factor_key": size_factor_key,
        "categorical_covariate_keys": cat_keys,
        "continuous_covariate_keys": cont_keys,
        "n_hidden": n_hidden,
        "weight_prior_sd": weight_prior_sd,
        "cov_prior_sd": cov_prior_sd,
        "max_epochs": max_epochs,
        "n_epochs": len(history),
        "lr": lr,
        "batch_size": batch_size,
        "early_stopping": early_stopping,
        "random_state": random_state,
        "fit_dispersions": bool(fit_disp),
        "dispersion_trend": getattr(model, "dispersion_trend_", None) if fit_disp else None,
        "latent_design_max_abs_corr": max_corr,
        "confounding": None if model.confounding_ is None else np.asarray(model.confounding_).round(6),
        "confounding_null_share": None
        if model.confounding_null_share_ is None
        else np.asarray(model.confounding_null_share_).round(4),
    }
    adata.obsm[key_added] = latent
    adata.uns[key_added] = {
        "params": h5ad_safe({k: v for k, v in params.items() if v is not None}),
        "history": history,
        "versions": package_versions("scvi-tools", "torch"),
    }
    return model


def _counts_on_disk(adata: AnnData, layer: str | None) -> bool:
    """Whether ``adata`` is backed or its counts are a dask array (e.g. from ``anndata.experimental.read_lazy``)."""
    x = adata.X if layer is None else adata.layers[layer] if layer in adata.layers else None
    return adata.isbacked or is_dask(x)


def design_covariates(obs: pd.DataFrame, design: str) -> tuple[list[str], list[str], pd.DataFrame]:
    """Categorical and continuous covariate keys of an additive design formula, and its prepared columns.

    Raises a ``ValueError`` for interactions, transformed terms or a formula without intercept (the model has
    its own per-gene intercept), and the errors of :func:`gendex._design.design_matrix` (unknown columns,
    missing values, single levels, rank-deficient designs).
    """
    from formulaic import Formula

    factors = design_factors(obs, design)
    formula = Formula(design)
    terms = [str(t) for t in (formula.rhs.terms if hasattr(formula, "rhs") else formula)]
    for term in terms:
        if term == "1":
            continue
        if ":" in term:
            raise ValueError(
                f"design {design!r} has the interaction {term!r}: the NB-VAE's design takes additive terms only "
                "(e.g. '~donor + condition'); model an interaction as one combined factor column"
            )
        if term not in factors:
            raise ValueError(
                f"design {design!r} has the term {term!r}, which is not a plain `obs` column: add the transformed "
                "values as a column and name it in the design"
            )
    if "1" not in terms:
        raise ValueError(f"design {design!r} drops the intercept; the NB-VAE always has per-gene intercepts")
    design_matrix(obs, design)  # missing values, single levels, confounded factors: clear errors
    prepared = prepare_obs(obs, factors)
    cat = [f for f in factors if isinstance(prepared[f].dtype, pd.CategoricalDtype)]
    cont = [f for f in factors if f not in cat]
    return cat, cont, prepared


def _check_confounding(obs: pd.DataFrame, cat_keys: list[str], cont_keys: list[str]) -> None:
    """Refuse covariates whose features are linearly dependent (confounded factors), before any fit."""
    if not (cat_keys or cont_keys):
        return
    parts = [np.ones((len(obs), 1))]
    names = ["intercept"]
    for key in cat_keys:
        col = obs[key].astype("category")
        for level in col.cat.categories[1:]:
            parts.append((col == level).to_numpy(dtype=float)[:, None])
            names.append(f"{key}[{level}]")
    for key in cont_keys:
        parts.append(obs[key].to_numpy(dtype=float)[:, None])
        names.append(key)
    x = np.hstack(parts)
    rank = np.linalg.matrix_rank(x)
    if rank < x.shape[1]:
        raise ValueError(
            f"the covariates {cat_keys + cont_keys} are confounded (their features {names} have rank {rank} < "
            f"{x.shape[1]}): one factor is determined by the others, so their effects cannot be told apart; "
            "drop one of them or combine them"
        )


def _max_abs_corr(latent: NDArray, model: NBVAE) -> float | None:
    """Largest absolute correlation between a latent dimension and a covariate feature over the samples."""
    if not (model.module.n_cov_features and model.module.n_latent):
        return None
    from ..model import _posterior

    feats = _posterior.covariate_features(model).cpu().numpy().astype(np.float64)
    zc, fc = latent - latent.mean(0), feats - feats.mean(0)
    denom = np.outer(np.linalg.norm(zc, axis=0), np.linalg.norm(fc, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(denom > 0, (zc.T @ fc) / denom, 0.0)
    return float(np.max(np.abs(corr)))


@contextmanager
def _private_random_state(seed: int | None):
    """Seed torch, numpy and Python's generators for the block, then restore the caller's states."""
    if seed is None:
        yield
        return
    py, npy = random.getstate(), np.random.get_state()  # before importing scvi-tools, which draws from them
    import scvi
    import torch

    tor = torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    scvi_seed = scvi.settings._seed  # read by scvi-tools' data splitter (sample order); set without reseeding
    random.seed(int(seed))
    np.random.seed(int(seed))
    torch.manual_seed(int(seed))
    scvi.settings._seed = int(seed)
    try:
        yield
    finally:
        scvi.settings._seed = scvi_seed
        random.setstate(py)
        np.random.set_state(npy)
        torch.random.set_rng_state(tor)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def training_history(model: NBVAE) -> pd.DataFrame:
    """The logged ELBO terms of a trained model, one row per epoch (float columns, integer index from 0)."""
    hist = model.history or {}
    cols = {
        c: pd.to_numeric(hist[c][c], errors="coerce").to_numpy(dtype=np.float64) for c in HISTORY_COLUMNS if c in hist
    }
    df = pd.DataFrame(cols)
    df.index = pd.RangeIndex(len(df), name="epoch")
    return df


def _as_list(keys: Sequence[str] | str | None) -> list[str]:
    if keys is None:
        return []
    return [keys] if isinstance(keys, str) else list(keys)


def _latent_point(adata: AnnData, model: NBVAE, point: Any, latent: NDArray, name: str) -> tuple[NDArray, str | None]:
    """A latent coordinate from a sequence of floats, or the latent centroid of ``(obs_column, level)``."""
    k = latent.shape[1]
    if isinstance(point, tuple) and len(point) == 2 and isinstance(point[0], str):
        column, level = point
        values = check_obs_key(adata, column).astype(str).to_numpy()
        sel = values == str(level)
        if not sel.any():
            raise ValueError(f"`{name}`: level {level!r} not found in `adata.obs[{column!r}]`")
        return latent[sel].mean(0), str(level)
    try:
        arr = np.asarray(point, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be {k} latent coordinates or an (obs_column, level) tuple") from None
    if arr.shape != (k,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must hold {k} finite latent coordinates, got {point!r}")
    return arr, None


def latent_path(
    adata: AnnData,
    model: NBVAE,
    *,
    start: Sequence[float] | tuple[str, str],
    end: Sequence[float] | tuple[str, str],
    n_points: int = 50,
    genes: Sequence[str] | None = None,
    key_added: str = "latent_path",
) -> None:
    """Decode normalised expression along a straight line in the NB-VAE's latent space.

    Parameters
    ----------
    adata
        The AnnData the model was trained on.
    model
        A trained :class:`gendex.model.NBVAE`.
    start, end
        End points: latent coordinates (``n_latent`` floats), or ``(obs_column, level)`` for the latent centroid
        (mean of the latent posterior means) of that group's samples.
    n_points
        Number of points on the path (including both ends).
    genes
        Genes (``var_names``) to decode; None means all.
    key_added
        Key of ``uns``.

    Returns
    -------
    Sets ``adata.uns[key_added] = {"params": {...}, "t": (n_points,) in [0, 1], "latent": (n_points, n_latent),
    "expression": DataFrame (n_points x genes) of decoded size-factor-normalised expected counts}``. ``params``
    holds ``start``/``end`` as lists of floats and, for groups, ``start_label``/``end_label``. Covariates, if
    the model has any, are held at their average over the samples.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=200, random_state=0)
    >>> gdx.pp.size_factors(adata)
    >>> model = gdx.tl.nbvae(adata, max_epochs=20, accelerator="cpu", enable_progress_bar=False)
    >>> gdx.tl.latent_path(adata, model, start=("condition", "A"), end=("condition", "B"), n_points=5)
    >>> adata.uns["latent_path"]["expression"].shape
    (5, 200)
    """
    check_model_data(adata, model)
    adata_obs = annotation_shell(adata)
    if n_points < 2:
        raise ValueError(f"`n_points` must be >= 2, got {n_points}")
    if genes is None:
        gene_list = list(adata.var_names)
    else:
        gene_list = [genes] if isinstance(genes, str) else [str(g) for g in genes]
        missing = [g for g in gene_list if g not in adata.var_names]
        if missing:
            raise KeyError(f"genes not in `adata.var_names`: {missing[:10]}")
        if len(set(gene_list)) != len(gene_list) or not gene_list:
            raise ValueError("`genes` must be a non-empty list of distinct var_names")
    latent = model.get_latent_representation().astype(np.float64)
    p0, label0 = _latent_point(adata_obs, model, start, latent, "start")
    p1, label1 = _latent_point(adata_obs, model, end, latent, "end")
    t = np.linspace(0.0, 1.0, n_points)
    path = p0[None, :] + t[:, None] * (p1 - p0)[None, :]
    decoded = model.decode_latent(path)
    if not np.all(np.isfinite(decoded)):
        lo, hi = latent.min(0), latent.max(0)
        raise ValueError(
            "the path decodes to expression too large to represent (the decoder is log-linear): its end points "
            f"{p0.tolist()} and {p1.tolist()} lie far outside the samples' latent codes, which span "
            f"{np.round(lo, 3).tolist()} to {np.round(hi, 3).tolist()}; choose end points near the samples"
        )
    cols = adata.var_names.get_indexer(gene_list)
    expression = pd.DataFrame(decoded[:, cols], columns=pd.Index(gene_list, dtype=str))
    expression.index = pd.RangeIndex(n_points).astype(str)
    params: dict[str, Any] = {"start": p0.tolist(), "end": p1.tolist(), "n_points": n_points}
    if label0 is not None:
        params["start_label"] = label0
    if label1 is not None:
        params["end_label"] = label1
    adata.uns[key_added] = {"params": h5ad_safe(params), "t": t, "latent": path, "expression": expression}

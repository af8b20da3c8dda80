"""``tl.nbvae`` and ``tl.latent_path``: the NB-VAE on AnnData (torch imported lazily)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData
from numpy.typing import NDArray

from .._utils import h5ad_safe, package_versions
from .._validation import check_no_empty_samples, check_not_backed, check_obs_key, get_counts
from ._generative_de import check_model_data

if TYPE_CHECKING:
    from ..model import NBVAE

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = ("elbo_train", "reconstruction_loss_train", "kl_local_train", "kl_global_train")


def nbvae(
    adata: AnnData,
    *,
    n_latent: int = 2,
    layer: str | None = "counts",
    size_factor_key: str = "size_factors",
    categorical_covariate_keys: Sequence[str] | None = None,
    continuous_covariate_keys: Sequence[str] | None = None,
    n_hidden: int = 128,
    weight_prior_sd: float = 1.0,
    max_epochs: int | None = None,
    lr: float = 1e-2,
    batch_size: int | None = None,
    early_stopping: bool = True,
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    enable_progress_bar: bool = True,
    train_kwargs: dict[str, Any] | None = None,
    key_added: str = "X_nbvae",
    random_state: int | None = 0,
) -> NBVAE:
    """Train the NB-VAE (:class:`gendex.model.NBVAE`) on raw counts and store the latent space.

    The model is trained on a private AnnData holding only the counts, size factors and covariates, so scvi-tools'
    registry fields never enter ``adata``.

    Parameters
    ----------
    adata
        Samples x genes AnnData with raw counts and size factors (:func:`gendex.pp.size_factors`).
    n_latent
        Dimension of the latent space.
    layer
        Layer with the raw counts; None means ``X``.
    size_factor_key
        Column of ``obs`` with the size factors (fixed offsets of the likelihood).
    categorical_covariate_keys, continuous_covariate_keys
        Columns of ``obs`` decoded as covariates (for counterfactual DE with :func:`generative_de`).
    n_hidden
        Width of the encoder's hidden layer.
    weight_prior_sd
        Standard deviation of the normal prior on the decoder's loadings and covariate coefficients (log scale per
        unit of the latent space); it keeps genes that are zero in one region of the latent space finite.
    max_epochs, lr, batch_size, early_stopping, accelerator, devices
        Training settings, see :meth:`gendex.model.NBVAE.train` (defaults suit bulk data of any size).
    enable_progress_bar
        Show a progress bar.
    train_kwargs
        Further arguments of :meth:`gendex.model.NBVAE.train` (e.g. ``strategy``, ``plan_kwargs``).
    key_added
        Key of ``obsm`` (latent means) and ``uns`` (parameters and training history).
    random_state
        Seed (``scvi.settings.seed``); None leaves the global seed alone.

    Returns
    -------
    The trained model. Sets ``adata.obsm[key_added]`` (samples x ``n_latent`` latent means) and
    ``adata.uns[key_added] = {"params": {...}, "history": DataFrame, "versions": {...}}`` (ELBO terms per epoch,
    indexed from 0).

    Notes
    -----
    The model (:class:`gendex.model.NBVAE`): counts ``x_ig ~ NB(s_i exp(b_g + z_i W_g + c_i B_g), alpha_g)`` with
    the DESeq2 size factors ``s_i`` as fixed offsets, a normal latent code ``z_i`` per sample encoded from
    ``log1p(x_i / s_i)``, and a per-gene log-linear decoder (a negative-binomial GLM on shared latent features).
    Training starts from the data: the encoder at the PCA of the log-normalised counts, every gene's decoder at
    its NB GLM fit on those codes, and the dispersions at DESeq2's empirical-Bayes estimates given those fits;
    Adam (full batch up to 512 samples, else minibatches of 256) then maximises the ELBO plus the log priors
    (the dispersion prior around the mean-dispersion trend and a normal prior on the loadings). All samples are
    used for training: early stopping watches the training ELBO, since a held-out sample of a dozen cannot
    monitor anything. After training, DESeq2's dispersion procedure (gene-wise Cox-Reid estimates, parametric
    trend, prior variance, MAP, dispersion outliers) runs again on the decoded means.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=200, seed=0)
    >>> gdx.pp.size_factors(adata)
    >>> model = gdx.tl.nbvae(adata, max_epochs=20, accelerator="cpu", enable_progress_bar=False)
    >>> adata.obsm["X_nbvae"].shape
    (8, 2)
    """
    check_not_backed(adata)
    counts = get_counts(adata, layer, dense=False)  # validated, not copied
    check_no_empty_samples(counts, adata.obs_names)
    sf = check_obs_key(adata, size_factor_key)
    covs = [*_as_list(categorical_covariate_keys), *_as_list(continuous_covariate_keys)]
    for key in covs:
        check_obs_key(adata, key)
    if n_latent < 1:
        raise ValueError(f"`n_latent` must be >= 1, got {n_latent}")
    if adata.n_obs < 2:
        raise ValueError(f"the NB-VAE needs at least 2 samples, got {adata.n_obs}")

    import scvi

    from ..model import NBVAE

    if random_state is not None:
        scvi.settings.seed = int(random_state)
    obs = adata.obs[[size_factor_key, *covs]].copy()
    obs[size_factor_key] = sf.to_numpy(dtype=np.float64)
    private = AnnData(obs=obs, var=pd.DataFrame(index=adata.var_names.copy()))
    if layer is None:
        private.X = counts
    else:
        private.layers[layer] = counts
    NBVAE.setup_anndata(
        private,
        layer=layer,
        size_factor_key=size_factor_key,
        categorical_covariate_keys=categorical_covariate_keys,
        continuous_covariate_keys=continuous_covariate_keys,
    )
    model = NBVAE(private, n_latent=n_latent, n_hidden=n_hidden, weight_prior_sd=weight_prior_sd)
    model.train(
        max_epochs=max_epochs,
        lr=lr,
        batch_size=batch_size,
        early_stopping=early_stopping,
        accelerator=accelerator,
        devices=devices,
        enable_progress_bar=enable_progress_bar,
        **(train_kwargs or {}),
    )
    history = training_history(model)
    adata.obsm[key_added] = model.get_latent_representation().astype(np.float64)
    params = {
        "n_latent": n_latent,
        "layer": layer,
        "size_factor_key": size_factor_key,
        "categorical_covariate_keys": _as_list(categorical_covariate_keys),
        "continuous_covariate_keys": _as_list(continuous_covariate_keys),
        "n_hidden": n_hidden,
        "weight_prior_sd": weight_prior_sd,
        "max_epochs": max_epochs,
        "n_epochs": len(history),
        "lr": lr,
        "batch_size": batch_size,
        "early_stopping": early_stopping,
        "random_state": random_state,
        "dispersion_trend": model.dispersion_trend_,
    }
    adata.uns[key_added] = {
        "params": h5ad_safe(params),
        "history": history,
        "versions": package_versions("scvi-tools", "torch"),
    }
    return model


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
    >>> adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=200, seed=0)
    >>> gdx.pp.size_factors(adata)
    >>> model = gdx.tl.nbvae(adata, max_epochs=20, accelerator="cpu", enable_progress_bar=False)
    >>> gdx.tl.latent_path(adata, model, start=("condition", "A"), end=("condition", "B"), n_points=5)
    >>> adata.uns["latent_path"]["expression"].shape
    (5, 200)
    """
    check_not_backed(adata)
    check_model_data(adata, model)
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
    p0, label0 = _latent_point(adata, model, start, latent, "start")
    p1, label1 = _latent_point(adata, model, end, latent, "end")
    t = np.linspace(0.0, 1.0, n_points)
    path = p0[None, :] + t[:, None] * (p1 - p0)[None, :]
    decoded = model.decode_latent(path)
    cols = adata.var_names.get_indexer(gene_list)
    expression = pd.DataFrame(decoded[:, cols], columns=pd.Index(gene_list, dtype=str))
    expression.index = pd.RangeIndex(n_points).astype(str)
    params: dict[str, Any] = {"start": p0.tolist(), "end": p1.tolist(), "n_points": n_points}
    if label0 is not None:
        params["start_label"] = label0
    if label1 is not None:
        params["end_label"] = label1
    adata.uns[key_added] = {"params": h5ad_safe(params), "t": t, "latent": path, "expression": expression}

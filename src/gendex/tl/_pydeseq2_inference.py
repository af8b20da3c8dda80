"""``BatchedInference``: PyDESeq2's :class:`~pydeseq2.inference.Inference` on gendex's batched DESeq2 engine.

The adapter only maps PyDESeq2's method names and arguments onto the engine's kernels
(:mod:`gendex.stats._deseq2._batch`): every method works on all genes at once (no per-gene joblib tasks).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydeseq2.inference import Inference

from ..stats._deseq2 import _batch


class BatchedInference(Inference):
    """Vectorised DESeq2 inference for PyDESeq2 (``DeseqDataSet(..., inference=BatchedInference())``).

    Parameters
    ----------
    device
        ``"cpu"`` (numpy), ``"torch"`` (torch on the CPU) or a torch device such as ``"cuda"``.
    chunk_size
        Genes per batch (default: about 4 million matrix entries per batch).

    Examples
    --------
    >>> import gendex as gdx
    >>> from pydeseq2.dds import DeseqDataSet
    >>> ad = gdx.datasets.simulate_counts(n_samples=8, n_genes=100, random_state=0)
    >>> dds = DeseqDataSet(
    ...     counts=ad.to_df(), metadata=ad.obs, design="~condition", inference=BatchedInference(), quiet=True
    ... )
    >>> dds.deseq2()
    >>> dds.varm["LFC"].shape
    (100, 2)
    """

    def __init__(self, device: str = "cpu", chunk_size: int | None = None) -> None:
        self.device = device
        self.chunk_size = chunk_size

    def lin_reg_mu(
        self,
        counts: np.ndarray,
        size_factors: np.ndarray,
        design_matrix: np.ndarray,
        min_mu: float,
    ) -> np.ndarray:
        return _batch.lin_reg_mu(counts=counts, size_factors=size_factors, design_matrix=design_matrix, min_mu=min_mu)

    def irls(
        self,
        counts: np.ndarray,
        size_factors: np.ndarray,
        design_matrix: np.ndarray,
        disp: np.ndarray,
        min_mu: float,
        beta_tol: float,
        min_beta: float = -30,
        max_beta: float = 30,
        optimizer: Literal["BFGS", "L-BFGS-B"] = "L-BFGS-B",
        maxiter: int = 250,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return _batch.irls(
            counts=counts,
            size_factors=size_factors,
            design_matrix=design_matrix,
            disp=disp,
            min_mu=min_mu,
            beta_tol=beta_tol,
            min_beta=min_beta,
            max_beta=max_beta,
            optimizer=optimizer,
            maxiter=maxiter,
            device=self.device,
            chunk_size=self.chunk_size,
        )

    def alpha_mle(
        self,
        counts: np.ndarray,
        design_matrix: np.ndarray,
        mu: np.ndarray,
        alpha_hat: np.ndarray,
        min_disp: float,
        max_disp: float,
        prior_disp_var: float | None = None,
        cr_reg: bool = True,  # noqa: FBT001, FBT002 (PyDESeq2 interface)
        prior_reg: bool = False,  # noqa: FBT001, FBT002 (PyDESeq2 interface)
        optimizer: Literal["BFGS", "L-BFGS-B"] = "L-BFGS-B",
    ) -> tuple[np.ndarray, np.ndarray]:
        return _batch.alpha_mle(
            counts=counts,
            design_matrix=design_matrix,
            mu=mu,
            alpha_hat=alpha_hat,
            min_disp=min_disp,
            max_disp=max_disp,
            prior_disp_var=prior_disp_var,
            cr_reg=cr_reg,
            prior_reg=prior_reg,
            optimizer=optimizer,
            device=self.device,
            chunk_size=self.chunk_size,
        )

    def wald_test(
        self,
        design_matrix: np.ndarray,
        disp: np.ndarray,
        lfc: np.ndarray,
        mu: np.ndarray,
        ridge_factor: np.ndarray,
        contrast: np.ndarray,
        lfc_null: np.ndarray,
        alt_hypothesis: Literal["greaterAbs", "lessAbs", "greater", "less"] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _batch.wald_test(
            design_matrix=design_matrix,
            disp=disp,
            lfc=lfc,
            mu=mu,
            ridge_factor=ridge_factor,
            contrast=contrast,
            lfc_null=lfc_null,
            alt_hypothesis=alt_hypothesis,
        )

    def fit_rough_dispersions(self, normed_counts: np.ndarray, design_matrix: np.ndarray) -> np.ndarray:
        return _batch.fit_rough_dispersions(normed_counts=normed_counts, design_matrix=design_matrix)

    def fit_moments_dispersions(self, normed_counts: np.ndarray, size_factors: np.ndarray) -> np.ndarray:
        return _batch.fit_moments_dispersions(normed_counts=normed_counts, size_factors=size_factors)

    def dispersion_trend_gamma_glm(
        self, covariates: pd.Series, targets: pd.Series
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        return _batch.dispersion_trend_gamma_glm(covariates=covariates, targets=targets)

    def lfc_shrink_nbinom_glm(
        self,
        design_matrix: np.ndarray,
        counts: np.ndarray,
        size: np.ndarray,
        offset: np.ndarray,
        prior_no_shrink_scale: float,
        prior_scale: float,
        optimizer: str,
        shrink_index: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _batch.lfc_shrink_nbinom_glm(
            design_matrix=design_matrix,
            counts=counts,
            size=size,
            offset=offset,
            prior_no_shrink_scale=prior_no_shrink_scale,
            prior_scale=prior_scale,
            optimizer=optimizer,
            shrink_index=shrink_index,
        )

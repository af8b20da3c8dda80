"""ROC and observed-vs-nominal FDR curves of several DE methods, from :func:`gendex.tl.evaluate_de`."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

import pandas as pd
from anndata import AnnData

from ._data import contrast_label, method_name
from ._utils import finish, get_ax

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _eval_record(adata: AnnData, key: str) -> dict:
    """The evaluation stored for ``key``: ``uns[f"eval_{key}"]``, or ``uns[key]`` when that is one."""
    for cand in (f"eval_{key}", key):
        rec = adata.uns.get(cand)
        if isinstance(rec, dict) and {"metrics", "roc", "fdr"} <= set(rec):
            return rec
    raise KeyError(
        f"no evaluation for {key!r} in `adata.uns` (looked for 'eval_{key}' and {key!r}); "
        f"run `gdx.tl.evaluate_de(adata, key={key!r})` first"
    )


def _as_keys(keys: str | Sequence[str]) -> list[str]:
    out = [keys] if isinstance(keys, str) else [str(k) for k in keys]
    if not out:
        raise ValueError("`keys` is empty: name at least one evaluated DE result")
    return out


def _names(adata: AnnData, keys: list[str]) -> dict[str, str]:
    """Each DE result named by its method (``"DESeq2"``); by its key where two results share a method."""
    names = {k: method_name(adata, k.removeprefix("eval_") if k not in adata.varm else k) for k in keys}
    counts = pd.Series(list(names.values())).value_counts()
    return {k: (v if counts[v] == 1 else k) for k, v in names.items()}


def _title(adata: AnnData, keys: list[str], what: str) -> str:
    label = next((c for k in keys if (c := contrast_label(adata, k.removeprefix("eval_")))), None)
    return f"{what}: {label}" if label else what


def _roc_data(adata: AnnData, keys: str | Sequence[str]) -> pd.DataFrame:
    """Long table of the stored ROC curves: ``key, label, fpr, tpr`` (label: the method and its AUROC)."""
    frames = []
    keys = _as_keys(keys)
    names = _names(adata, keys)
    for key in keys:
        rec = _eval_record(adata, key)
        auc = float(rec["metrics"]["AUROC"].iloc[0])
        roc = rec["roc"]
        label = f"{names[key]} (AUROC {auc:.3f})"
        frames.append(pd.DataFrame({"key": key, "label": label, "fpr": roc["fpr"], "tpr": roc["tpr"]}))
    return pd.concat(frames, ignore_index=True)


def _fdr_curve_data(adata: AnnData, keys: str | Sequence[str]) -> pd.DataFrame:
    """Long table of the stored FDR curves: ``key, alpha, observed_fdr, tpr, n_called``."""
    frames = []
    for key in _as_keys(keys):
        fdr = _eval_record(adata, key)["fdr"]
        frames.append(pd.DataFrame({"key": key, **{c: fdr[c].to_numpy() for c in fdr.columns}}))
    return pd.concat(frames, ignore_index=True)


def roc(
    adata: AnnData,
    keys: str | Sequence[str],
    *,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **plot_kwargs: Any,
) -> Axes:
    """ROC curves (true vs false positive rate) of one or several evaluated DE results on one Axes.

    Parameters
    ----------
    adata
        AnnData with results of :func:`gendex.tl.evaluate_de`.
    keys
        DE result keys (their evaluations are read from ``uns[f"eval_{key}"]``) or evaluation keys.
    ax
        Axes to draw into; a new figure when None.
    show
        Call ``plt.show()`` when True.
    save
        Full path to save the figure to.
    **plot_kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` for each curve.

    Returns
    -------
    The Axes.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=500, random_state=0)
    >>> gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
    >>> _ = gdx.tl.evaluate_de(adata, key="limma_voom")
    >>> ax = gdx.pl.roc(adata, keys=["limma_voom"])
    """
    data = _roc_data(adata, keys)
    ax = get_ax(ax, figsize=(4.5, 4.5))
    for label, sub in data.groupby("label", sort=False):
        ax.plot(sub["fpr"], sub["tpr"], label=label, **plot_kwargs)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", frameon=False)
    ax.set_title(_title(adata, _as_keys(keys), "ROC"))
    finish(ax, show=show, save=save)
    return ax


def fdr_curve(
    adata: AnnData,
    keys: str | Sequence[str],
    *,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **plot_kwargs: Any,
) -> Axes:
    """Observed false discovery proportion against the nominal FDR level, for several DE results.

    Points above the diagonal mean the method calls more false discoveries than it promises.

    Parameters
    ----------
    adata
        AnnData with results of :func:`gendex.tl.evaluate_de`.
    keys
        DE result keys (their evaluations are read from ``uns[f"eval_{key}"]``) or evaluation keys.
    ax
        Axes to draw into; a new figure when None.
    show
        Call ``plt.show()`` when True.
    save
        Full path to save the figure to.
    **plot_kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` for each curve.

    Returns
    -------
    The Axes.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=500, random_state=0)
    >>> gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
    >>> _ = gdx.tl.evaluate_de(adata, key="limma_voom")
    >>> ax = gdx.pl.fdr_curve(adata, keys="limma_voom")
    """
    data = _fdr_curve_data(adata, keys)
    ax = get_ax(ax, figsize=(4.5, 4.5))
    names = _names(adata, _as_keys(keys))
    for key, sub in data.groupby("key", sort=False):
        ax.plot(sub["alpha"], sub["observed_fdr"], label=names[str(key)], **plot_kwargs)
    top = float(max(data["alpha"].max(), data["observed_fdr"].max()))
    ax.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1, label="observed = nominal")
    ax.set_xlabel("nominal FDR (padj threshold)")
    ax.set_ylabel("observed false discovery proportion")
    ax.legend(loc="upper left", frameon=False)
    ax.set_title(_title(adata, _as_keys(keys), "FDR control"))
    finish(ax, show=show, save=save)
    return ax

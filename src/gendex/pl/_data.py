"""Private look-ups shared by the DE, comparison and NB-VAE plots (read-only: nothing is written)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._results import lookup_de_table

if TYPE_CHECKING:
    from anndata import AnnData

#: Default colours: up / down / not significant, and the comparison categories (Okabe-Ito colours, which
#: stay apart under the common colour-vision deficiencies).
DIRECTION_COLORS = {"up": "#d62728", "down": "#1f77b4", "ns": "#bdbdbd"}
CATEGORY_COLORS = {
    "both": "#0072B2",
    "only1": "#D55E00",
    "only2": "#009E73",
    "neither": "#bdbdbd",
    "untested": "#CC79A7",
}


def de_table(adata: AnnData, key: str, columns: Sequence[str]) -> pd.DataFrame:
    """The DE table ``adata.varm[key]`` (not copied); KeyError naming the available results if absent."""
    return lookup_de_table(adata, key, columns)


def de_method(adata: AnnData, key: str) -> str:
    """``adata.uns[key]["method"]`` (lower case), or ``""`` when no run record is stored."""
    record = adata.uns.get(key)
    return str(record.get("method", "")).lower() if isinstance(record, dict) else ""


def numeric(table: pd.DataFrame, column: str) -> np.ndarray:
    """A column as a float array (NaN for missing)."""
    return pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def gene_labels(adata: AnnData, gene_symbols: str | None) -> pd.Series:
    """Gene labels indexed by ``var_names``: ``var[gene_symbols]`` where present and non-empty, else the name."""
    names = pd.Series(adata.var_names.astype(str), index=adata.var_names)
    if gene_symbols is None or gene_symbols not in adata.var.columns:
        return names
    sym = adata.var[gene_symbols]
    ok = sym.notna().to_numpy() & ~sym.astype(str).str.strip().isin(["", "nan", "None", "NA"]).to_numpy()
    return names.where(~ok, sym.astype(str))


def _compare_keys(adata: AnnData) -> list[str]:
    return [
        str(k)
        for k, v in adata.uns.items()
        if isinstance(v, dict) and isinstance(v.get("table"), pd.DataFrame) and "summary" in v
    ]


def compare_record(adata: AnnData, key: str) -> dict[str, Any]:
    """``adata.uns[key]`` written by :func:`gendex.tl.compare_de`; KeyError naming the available ones."""
    record = adata.uns.get(key)
    if not (isinstance(record, dict) and isinstance(record.get("table"), pd.DataFrame) and "summary" in record):
        raise KeyError(
            f"no comparison `adata.uns[{key!r}]` (run `gdx.tl.compare_de` first); available: {_compare_keys(adata)}"
        )
    return record


def uns_record(adata: AnnData, key: str, field: str, producer: str) -> Any:
    """``adata.uns[key][field]``; KeyError naming the function that writes it and the keys that hold it."""
    record = adata.uns.get(key)
    if not isinstance(record, dict) or field not in record:
        have = [str(k) for k, v in adata.uns.items() if isinstance(v, dict) and field in v]
        raise KeyError(f"no `adata.uns[{key!r}][{field!r}]` (written by `{producer}`); keys holding one: {have}")
    return record[field]


#: How each ``uns[key]["method"]`` is named in titles.
METHOD_NAMES = {
    "deseq2": "DESeq2",
    "pydeseq2": "PyDESeq2",
    "limma_voom": "limma-voom",
    "limma": "limma",
    "ttest_welch": "Welch t-test",
    "ttest_student": "Student t-test",
    "ttest": "t-test",
    "nbvae": "NB-VAE generative DE",
    "ulm": "ULM enrichment",
    "mlm": "MLM enrichment",
    "gsea": "GSEA",
    "ora": "ORA",
}


def method_name(adata: AnnData, key: str) -> str:
    """The method of ``uns[key]`` as a reader names it (``"DESeq2"``, ``"limma-voom"``), else the key itself."""
    record = adata.uns.get(key)
    method = str(record.get("method", "")) if isinstance(record, dict) else ""
    if not method:
        return key
    name = METHOD_NAMES.get(method.lower(), method)
    if method.lower() == "deseq2" and isinstance(record, dict) and str(record.get("test", "")).lower() == "lrt":
        name += " (LRT)"
    return name


def contrast_label(adata: AnnData, key: str) -> str | None:
    """``"test vs reference"`` from ``uns[key]["contrast"]`` (``[factor, test, reference]``), else None."""
    record = adata.uns.get(key)
    contrast = record.get("contrast") if isinstance(record, dict) else None
    if contrast is None or isinstance(contrast, str):
        return str(contrast) if contrast else None
    values = [str(c) for c in np.ravel(np.asarray(contrast, dtype=object))]
    return f"{values[1]} vs {values[2]}" if len(values) == 3 else None


def result_title(adata: AnnData, key: str) -> str:
    """A title naming the method and the comparison, ``"DESeq2: luminal vs basal"``, from ``uns[key]``."""
    label = contrast_label(adata, key)
    name = method_name(adata, key)
    return f"{name}: {label}" if label else name

"""Sample or gene names that are not strings (issue 14 item 1): results stored under integer names make an
.h5ad that `read_h5ad` refuses, so every function that reads the data refuses them first, naming the fix, and
leaves the AnnData unchanged."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import gendex as gdx
from gendex._utils import store_de_results

TRAIN = {"accelerator": "cpu", "enable_progress_bar": False, "max_epochs": 1}

WRITERS = {
    "pp.qc_metrics": lambda a: gdx.pp.qc_metrics(a),
    "pp.filter_genes": lambda a: gdx.pp.filter_genes(a),
    "pp.filter_by_expr": lambda a: gdx.pp.filter_by_expr(a, group="condition"),
    "pp.size_factors": lambda a: gdx.pp.size_factors(a),
    "pp.log_cpm": lambda a: gdx.pp.log_cpm(a),
    "tl.pca": lambda a: gdx.tl.pca(a, layer="counts"),
    "tl.mds": lambda a: gdx.tl.mds(a, layer="counts"),
    "tl.deseq2": lambda a: gdx.tl.deseq2(a, design="~condition"),
    "tl.limma_voom": lambda a: gdx.tl.limma_voom(a, design="~condition"),
    "tl.ttest": lambda a: gdx.tl.ttest(a, groupby="condition", group1="B", group2="A", layer="counts"),
    "tl.nbvae": lambda a: gdx.tl.nbvae(a, **TRAIN),
}


def _with_integer_names(adata, axis):
    frame = getattr(adata, axis)
    frame.index = pd.Index(np.arange(frame.shape[0]))  # the one assignment anndata does not convert to str
    assert getattr(adata, f"{axis}_names").dtype == np.int64


def snapshot(adata):
    """A checker that `adata` is unchanged; `adata.copy()` would turn the integer names into strings."""
    frames = {"obs": adata.obs.copy(), "var": adata.var.copy()}
    arrays = {"X": adata.X.copy(), **{f"layer {k}": v.copy() for k, v in adata.layers.items()}}
    keys = {slot: list(getattr(adata, slot)) for slot in ("uns", "obsm", "varm", "layers", "obsp")}

    def check():
        for slot, before in frames.items():
            pd.testing.assert_frame_equal(getattr(adata, slot), before)  # the index too, with its int64 dtype
        np.testing.assert_array_equal(adata.X, arrays["X"])
        for k, v in adata.layers.items():
            np.testing.assert_array_equal(v, arrays[f"layer {k}"])
        assert {slot: list(getattr(adata, slot)) for slot in keys} == keys

    return check


@pytest.mark.parametrize("name", WRITERS)
@pytest.mark.parametrize("axis", ["var", "obs"])
def test_integer_names_are_refused_naming_the_fix(adata, name, axis):
    adata.obs["size_factors"] = 1.0
    _with_integer_names(adata, axis)
    check = snapshot(adata)
    fix = rf"`adata\.{axis}_names = adata\.{axis}_names\.astype\(str\)`"
    with pytest.raises(TypeError, match=rf"`adata\.{axis}_names` must be strings, got dtype int64.*{fix}"):
        WRITERS[name](adata)
    check()


def test_mixed_object_names_are_refused(adata):
    names = list(adata.var_names)
    names[7] = 7
    adata.var.index = pd.Index(names, dtype=object)
    check = snapshot(adata)
    with pytest.raises(TypeError, match=r"`adata\.var_names` must be strings, got int names \(e\.g\. 7\)"):
        gdx.tl.deseq2(adata, design="~condition")
    check()


def test_store_de_results_refuses_integer_names(adata):
    _with_integer_names(adata, "var")
    table = pd.DataFrame(
        {c: np.zeros(adata.n_vars) for c in ("baseMean", "log2FoldChange", "stat", "pvalue", "padj")},
        index=adata.var_names,
    )
    check = snapshot(adata)
    with pytest.raises(TypeError, match="must be strings"):
        store_de_results(adata, "de", table, method="synthetic", params={})
    check()


def test_the_suggested_fix_gives_a_file_that_reads_back(adata, tmp_path):
    _with_integer_names(adata, "var")
    adata.var_names = adata.var_names.astype(str)  # what the error message says
    gdx.tl.deseq2(adata, design="~condition")
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    pd.testing.assert_frame_equal(back.varm["deseq2"], adata.varm["deseq2"])

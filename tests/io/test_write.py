import numpy as np
import pandas as pd
import pytest

import gendex as gdx


@pytest.fixture
def adata():
    sim = gdx.datasets.simulate_counts(n_samples=6, n_genes=80)
    gdx.tl.limma_voom(sim, design="~condition", contrast=["condition", "B", "A"])
    sim.var["symbol"] = [f"SYM{i}" for i in range(sim.n_vars)]
    return sim


@pytest.mark.parametrize(("name", "sep"), [("de.csv", ","), ("de.tsv", "\t"), ("de.tsv.gz", "\t"), ("de.CSV.gz", ",")])
def test_write_de_round_trips(adata, tmp_path, unchanged, name, sep):
    table = adata.varm["limma_voom"].copy()
    table.iloc[:3, table.columns.get_loc("padj")] = np.nan  # untested genes: empty fields
    adata.varm["limma_voom"] = table
    check = unchanged(adata)
    path = gdx.io.write_de(adata, "limma_voom", tmp_path / name)
    check()
    back = pd.read_csv(path, sep=sep, index_col=0)
    assert back.index.name == "gene" and list(back.index) == list(adata.var_names)
    assert list(back.columns) == ["symbol", *table.columns] and back["symbol"].iloc[1] == "SYM1"
    pd.testing.assert_frame_equal(back[list(table.columns)], table.rename_axis("gene"), check_dtype=False, rtol=1e-15)
    assert back["padj"].isna().sum() == 3
    assert [p.name for p in tmp_path.iterdir()] == [name], "no temporary file left"


def test_write_de_bad_input(adata, tmp_path, unchanged):
    check = unchanged(adata)
    with pytest.raises(ValueError, match="suffix"):
        gdx.io.write_de(adata, "limma_voom", tmp_path / "de.xlsx")
    with pytest.raises(KeyError, match="deseq2"):
        gdx.io.write_de(adata, "deseq2", tmp_path / "de.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gdx.io.write_de(adata, "limma_voom", tmp_path / "missing" / "de.csv")
    check()
    assert list(tmp_path.iterdir()) == []
    gdx.io.write_de(adata, "limma_voom", tmp_path / "de.results", sep=";", gene_symbols=None)
    assert (tmp_path / "de.results").read_text().startswith("gene;baseMean;")

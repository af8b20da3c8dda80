import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import gendex as gdx


def test_two_column_dataframe_and_unmapped_keep_id(adata, tmp_path):
    table = pd.DataFrame(
        {
            "id": ["gene_00000", "gene_00001", "gene_00002", "gene_00001", "gene_00003", "other"],
            "sym": ["Aa", "Bb", "Aa", "Zz", "", "Cc"],
        }
    )
    out = gdx.pp.add_gene_symbols(adata, table=table, copy=True)
    assert "symbol" not in adata.var
    sym = out.var["symbol"]
    assert sym.iloc[:4].tolist() == ["Aa", "Bb", "Aa", "gene_00003"]  # first symbol wins, empty = unmapped
    assert (sym.iloc[4:] == out.var_names[4:]).all()
    rec = out.uns["add_gene_symbols"]
    assert rec["n_mapped"] == 3 and rec["n_unmapped"] == 197 and rec["n_duplicated"] == 2
    assert rec["params"] == {"table": "DataFrame", "from_col": "id", "to_col": "sym", "key_added": "symbol"}
    out.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert back.var["symbol"].tolist() == sym.tolist()


def test_table_files_and_columns(adata, tmp_path):
    df = pd.DataFrame({"desc": ["x", "y"], "ENTREZ": ["gene_00005", "gene_00006"], "name": ["Ee", "Ff"]})
    csv = tmp_path / "map.csv"
    df.to_csv(csv, index=False)
    gdx.pp.add_gene_symbols(adata, table=csv, from_col="ENTREZ", to_col="name", key_added="gene_name")
    assert adata.var["gene_name"].iloc[5:7].tolist() == ["Ee", "Ff"]
    tsv = tmp_path / "map.tsv.gz"
    df[["ENTREZ", "name"]].to_csv(tsv, sep="\t", index=False)
    gdx.pp.add_gene_symbols(adata, table=tsv)  # first two columns by default
    assert adata.var["symbol"].iloc[5] == "Ee" and adata.uns["add_gene_symbols"]["params"]["table"] == str(tsv)


def test_ncbi_gene_info_is_detected(adata, tmp_path):
    header = "#tax_id\tGeneID\tSymbol\tLocusTag\tSynonyms\n"
    rows = "10090\tgene_00010\tKrt5\t-\tK5\n10090\tgene_00011\t-\t-\t-\n"
    path = tmp_path / "Mus_musculus.gene_info.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(header + rows)
    gdx.pp.add_gene_symbols(adata, table=path)
    assert adata.var["symbol"].iloc[10] == "Krt5" and adata.var["symbol"].iloc[11] == "gene_00011"
    assert adata.uns["add_gene_symbols"]["params"]["from_col"] == "GeneID"
    assert adata.uns["add_gene_symbols"]["n_mapped"] == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"table": pd.DataFrame({"a": ["x"], "b": ["y"]}), "from_col": "id"}, KeyError, "from_col='id'"),
        ({"table": pd.DataFrame({"a": ["x"], "b": ["y"]}), "to_col": "a"}, ValueError, "same column"),
        ({"table": pd.DataFrame({"a": ["x"]})}, ValueError, "two columns"),
        ({"table": "/nonexistent/map.tsv"}, FileNotFoundError, "not found"),
        ({"table": 3}, TypeError, "path or a DataFrame"),
        ({"table": pd.DataFrame({"a": ["x"], "b": ["y"]}), "key_added": ""}, TypeError, "key_added"),
    ],
)
def test_bad_input(adata, unchanged, kwargs, error, match):
    check = unchanged(adata)
    with pytest.raises(error, match=match):
        gdx.pp.add_gene_symbols(adata, **kwargs)
    check()


def test_gse60450_with_ncbi_gene_info(gse60450, shared_data_dir):
    root = shared_data_dir / "data" / "genesets"
    if not root.is_dir():
        pytest.skip("../shared/data/genesets is absent")
    gdx.pp.add_gene_symbols(gse60450, table=root / "Mus_musculus.gene_info.gz")
    rec = gse60450.uns["add_gene_symbols"]
    # README of the gene sets: the 2021 gene_info alone maps 25,869 of the 27,179 Entrez IDs
    assert rec["n_mapped"] == 25869 and rec["n_unmapped"] == 27179 - 25869
    derived = pd.read_csv(root / "gse60450_entrez_symbol.tsv", sep="\t", dtype=str).set_index("entrez_id")
    both = derived.loc[gse60450.var_names, "symbol"]
    snap = derived.loc[gse60450.var_names, "gene_info_snapshot"]
    from_2021 = (snap == "2021-07-11").to_numpy()
    np.testing.assert_array_equal(gse60450.var["symbol"].to_numpy()[from_2021], both.to_numpy()[from_2021])
    gdx.pp.add_gene_symbols(gse60450, table=root / "gse60450_entrez_symbol.tsv", key_added="symbol_all")
    assert gse60450.uns["add_gene_symbols"]["n_mapped"] == 26143

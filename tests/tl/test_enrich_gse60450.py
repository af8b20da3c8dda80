"""Biology sanity of `tl.enrich` on GSE60450 (luminal vs basal, `~celltype+status`) with the mouse hallmark sets."""

import pandas as pd
import pytest

import gendex as gdx
from gendex._utils import store_de_results

EMT = "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION"
OXPHOS = "HALLMARK_OXIDATIVE_PHOSPHORYLATION"
HALLMARK_ENTREZ = "mh.all.v2022.1.Mm.entrez.derived.gmt"


@pytest.fixture(scope="module")
def hallmark_entrez(shared_data_dir):
    path = shared_data_dir / "data" / "genesets" / HALLMARK_ENTREZ
    if not path.is_file():
        pytest.skip(f"../shared/data/genesets/{HALLMARK_ENTREZ} is absent")
    return gdx.io.read_gmt(path)


def check_hallmark_biology(adata, key, net, *, method="ulm", luminal_top=5):
    """Enrich `varm[key]` (luminal vs basal) and check the known biology; return the results (sorted by score).

    Basal (myoepithelial) cells are mesenchymal-like: EMT must be the most basal-enriched set (the most negative
    score, significant). Luminal (secretory) cells are metabolically active: oxidative phosphorylation must be
    among the `luminal_top` most luminal-enriched sets (positive, significant).
    """
    key_added = f"hallmark_{method}_{key}"
    gdx.tl.enrich(adata, key=key, net=net, method=method, key_added=key_added)
    res = adata.uns[key_added]["results"].sort_values("score", kind="stable").reset_index(drop=True)
    assert res["source"].iloc[0] == EMT, res.head()
    assert res["score"].iloc[0] < 0 and res["padj"].iloc[0] < 1e-6
    top_luminal = res.iloc[::-1].head(luminal_top)
    assert OXPHOS in set(top_luminal["source"]), top_luminal
    oxphos = res.set_index("source").loc[OXPHOS]
    assert oxphos["score"] > 0 and oxphos["padj"] < 1e-3
    assert len(res) == 50  # every hallmark set has >= 5 measured genes
    return res


def test_hallmark_biology_on_r_deseq2_stat(gse60450, reference_dir, hallmark_entrez):
    # R DESeq2, design ~celltype+status, contrast celltype luminal vs basal, on the rowSums >= 10 genes
    ref = pd.read_csv(reference_dir / "deseq2_design_celltype_luminal_vs_basal.csv", dtype={"gene": str})
    ref = ref.set_index("gene")
    store_de_results(gse60450, "deseq2_r", ref, method="R DESeq2", params={}, contrast=["celltype", "luminal", "basal"])
    res = check_hallmark_biology(gse60450, "deseq2_r", hallmark_entrez)
    assert gse60450.uns["hallmark_ulm_deseq2_r"]["n_universe"] == 18418
    assert res["source"].iloc[-1] == OXPHOS  # the single most luminal-enriched set


def test_hallmark_biology_on_gendex_deseq2(gse60450, hallmark_entrez):
    if not hasattr(gdx.tl, "deseq2"):
        pytest.skip("gdx.tl.deseq2 is not on this branch yet")
    gdx.pp.filter_genes(gse60450, min_total_count=10)
    gdx.tl.deseq2(gse60450, design="~celltype+status", contrast=["celltype", "luminal", "basal"])
    check_hallmark_biology(gse60450, "deseq2", hallmark_entrez)

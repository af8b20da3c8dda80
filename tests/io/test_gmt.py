import gzip

import pandas as pd
import pytest

import gendex as gdx


def genesets_dir(shared_data_dir):
    path = shared_data_dir / "data" / "genesets"
    if not path.is_dir():
        pytest.skip("../shared/data/genesets is absent")
    return path


def test_read_gmt_parses_tabs_keeps_description_drops_empty_and_duplicates(tmp_path):
    text = (
        "SET_A\tdescription with spaces\tg1\tg2\t\tg3\r\n"
        "SET_B\thttp://x\t12345\t 67890 \t12345\n"
        "\n"
        "EMPTY_SET\tno genes\t\tNone\tNA\n"
        "SET_A\trepeated name\tg1\tg4\n"
    )
    path = tmp_path / "sets.gmt"
    path.write_text(text)
    net = gdx.io.read_gmt(path)
    assert list(net.columns) == ["source", "target", "description"]
    descriptions = net.drop_duplicates("source").set_index("source")["description"]
    assert descriptions.to_dict() == {"SET_A": "description with spaces", "SET_B": "http://x"}
    assert net[["source", "target"]].to_records(index=False).tolist() == [
        ("SET_A", "g1"),
        ("SET_A", "g2"),
        ("SET_A", "g3"),
        ("SET_B", "12345"),
        ("SET_B", "67890"),
        ("SET_A", "g4"),
    ]
    assert all(isinstance(t, str) for t in net["target"])
    gz = tmp_path / "sets.gmt.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(text)
    pd.testing.assert_frame_equal(gdx.io.read_gmt(str(gz)), net)


def test_read_gmt_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        gdx.io.read_gmt(tmp_path / "missing.gmt")
    bad = tmp_path / "bad.gmt"
    bad.write_text("SET_A\tdesc\tg1\nno tabs here\n")
    with pytest.raises(ValueError, match="line 2"):
        gdx.io.read_gmt(bad)
    empty = tmp_path / "empty.gmt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no gene sets"):
        gdx.io.read_gmt(empty)


def test_read_gmt_on_shared_collections(shared_data_dir):
    root = genesets_dir(shared_data_dir)
    sym = gdx.io.read_gmt(root / "mh.all.v2022.1.Mm.symbols.gmt")
    assert sym["source"].nunique() == 50 and len(sym) == 7188 and sym["target"].nunique() == 4288
    entrez = gdx.io.read_gmt(root / "mh.all.v2022.1.Mm.entrez.derived.gmt")
    assert entrez["source"].nunique() == 50 and entrez["target"].str.fullmatch(r"\d+").all()
    # descriptions with spaces (e.g. "GOBP_0007595<TAB>LACTATION ...") and empty complexes, gzipped
    msig = gdx.io.read_gmt(root / "mmu_msig_entrez.gmt.gz")
    assert msig["source"].str.startswith("KEGG_").any() and msig["source"].str.startswith("GOBP_").any()
    assert msig["target"].str.fullmatch(r"\d+").all()
    assert not msig.duplicated().any()
    assert msig["source"].nunique() == 7247  # of 7,317 sets; the others hold no gene, or only "None" or blanks

import bz2
import gzip

import numpy as np
import pandas as pd
import pytest

import gendex as gdx

COUNTS = np.array([[10, 0, 3], [5, 7, 0], [0, 1, 2], [100, 200, 300]])  # genes x samples
GENES = ["g1", "g2", "g3", "g4"]
SAMPLES = ["S1", "S2", "S3"]


def write_table(path, rows, sep="\t", *, compress=None):
    text = "\n".join(sep.join(str(v) for v in row) for row in rows) + "\n"
    if compress == "gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    elif compress == "bz2":
        with bz2.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def plain_rows(header="gene", genes=GENES, samples=SAMPLES, counts=COUNTS):
    return [[header, *samples]] + [[g, *row] for g, row in zip(genes, counts, strict=True)]


def assert_counts(adata, genes=GENES, samples=SAMPLES, counts=COUNTS):
    assert adata.shape == (len(samples), len(genes))
    assert list(adata.obs_names) == samples
    assert list(adata.var_names) == genes
    assert adata.X.dtype == np.int64
    np.testing.assert_array_equal(adata.X, counts.T)
    np.testing.assert_array_equal(adata.layers["counts"], counts.T)
    assert adata.layers["counts"] is not adata.X


@pytest.mark.parametrize(
    ("name", "sep", "compress"),
    [
        ("counts.tsv", "\t", None),
        ("counts.txt", "\t", None),
        ("counts.csv", ",", None),
        ("counts.tsv.gz", "\t", "gz"),
        ("counts.csv.gz", ",", "gz"),
        ("counts.txt.bz2", "\t", "bz2"),
    ],
)
def test_plain_tables(tmp_path, name, sep, compress):
    path = write_table(tmp_path / name, plain_rows(), sep, compress=compress)
    adata = gdx.io.read_counts(path)
    assert_counts(adata)
    assert adata.uns["read_counts"] == {"path": str(path), "layout": "table"}
    assert "length" not in adata.var


def test_separator_is_sniffed_when_the_suffix_misleads(tmp_path):
    path = write_table(tmp_path / "counts.txt", plain_rows(), ",")
    assert_counts(gdx.io.read_counts(path))


def test_explicit_separator_and_gene_column(tmp_path):
    pairs = enumerate(zip(GENES, COUNTS, strict=True))
    rows = [["symbol", "id", *SAMPLES]] + [[f"sym{i}", g, *r] for i, (g, r) in pairs]
    path = write_table(tmp_path / "counts.dat", rows, ";")
    with pytest.raises(ValueError, match="non-numeric values in sample column.*symbol"):
        gdx.io.read_counts(path, sep=";", gene_column="id")
    rows = [["id", *SAMPLES]] + [[g, *r] for g, r in zip(GENES, COUNTS, strict=True)]
    path = write_table(tmp_path / "counts2.dat", rows, ";")
    assert_counts(gdx.io.read_counts(path, sep=";", gene_column="id"))
    with pytest.raises(KeyError, match="'ensembl'"):
        gdx.io.read_counts(path, sep=";", gene_column="ensembl")


def test_r_write_table_layout_without_row_name_header(tmp_path):
    rows = [SAMPLES] + [[g, *r] for g, r in zip(GENES, COUNTS, strict=True)]
    path = write_table(tmp_path / "counts.tsv", rows)
    assert_counts(gdx.io.read_counts(path))


def test_numeric_gene_ids_stay_strings_with_leading_zeros(tmp_path):
    genes = ["0012", "497097", "100503874", "7"]
    path = write_table(tmp_path / "counts.tsv", plain_rows(genes=genes))
    adata = gdx.io.read_counts(path)
    assert list(adata.var_names) == genes


def test_trailing_separator_is_ignored(tmp_path):
    rows = [[*r, ""] for r in plain_rows()]
    path = write_table(tmp_path / "counts.tsv", rows)
    assert_counts(gdx.io.read_counts(path))


def featurecounts_rows(samples):
    header = ["Geneid", "Chr", "Start", "End", "Strand", "Length", *samples]
    ann = [
        ["chr1;chr1", "100;300", "200;400", "+;+", 202],
        ["chr2", "50", "80", "-", 31],
        ["chrX", "1", "1000", "+", 1000],
        ["chr1", "5000", "5999", "-", 1000],
    ]
    return [header] + [[g, *a, *r] for g, a, r in zip(GENES, ann, COUNTS, strict=True)]


@pytest.mark.parametrize("compress", [None, "gz"])
def test_featurecounts_output(tmp_path, compress):
    bams = ["/data/run1/S1.bam", "/data/run1/S2.bam", "S3.bam"]
    rows = featurecounts_rows(bams)
    cmd = '# Program:featureCounts v2.0.3; Command:"featureCounts" "-a" "genes.gtf" "-o" "counts.txt" "S1.bam"'
    text_rows = [[cmd]] + rows
    name = "fc.txt.gz" if compress else "fc.txt"
    path = write_table(tmp_path / name, text_rows, compress=compress)
    adata = gdx.io.read_counts(path)
    assert_counts(adata)  # BAM paths became S1, S2, S3; Chr/Start/End/Strand dropped
    assert list(adata.var.columns) == ["length"]
    np.testing.assert_array_equal(adata.var["length"], [202, 31, 1000, 1000])
    assert adata.uns["read_counts"]["layout"] == "featureCounts"


def test_featurecounts_duplicate_bam_names_across_folders(tmp_path):
    path = write_table(tmp_path / "fc.txt", featurecounts_rows(["/a/S1.bam", "/b/S1.bam", "/a/S3.bam"]))
    with pytest.raises(ValueError, match=r"duplicate sample names \['S1'\]"):
        gdx.io.read_counts(path)


def test_geo_genewise_layout(tmp_path):
    genes = ["497097", "100503874", "100038431", "19888"]
    rows = [["EntrezGeneID", "Length", *SAMPLES]] + [
        [g, ln, *r] for g, ln, r in zip(genes, [3634, 3259, 1634, 9747], COUNTS, strict=True)
    ]
    path = write_table(tmp_path / "GSE1_GenewiseCounts.txt.gz", rows, compress="gz")
    adata = gdx.io.read_counts(path)
    assert_counts(adata, genes=genes)
    np.testing.assert_array_equal(adata.var["length"], [3634, 3259, 1634, 9747])
    assert adata.uns["read_counts"]["layout"] == "GEO genewise"


def test_gse60450_counts_file(shared_data_dir):
    adata = gdx.io.read_counts(shared_data_dir / "data" / "gse60450" / "counts_matrix.tsv")
    assert adata.shape == (12, 27179)
    assert adata.var_names[0] == "497097"
    assert int(adata.X.sum()) == int(adata.layers["counts"].sum()) > 0


# --- sample sheet ---------------------------------------------------------------------------------


def test_sample_sheet_file_joins_as_categoricals(tmp_path):
    counts = write_table(tmp_path / "counts.tsv", plain_rows())
    sheet = write_table(
        tmp_path / "samples.csv",
        [["sample", "condition", "batch", "rin"], ["S3", "treated", "b2", 8.1], ["S1", "ctrl", "b1", 9.0]]
        + [["S2", "ctrl", "b2", 7.5], ["S9", "treated", "b1", 6.0]],
        ",",
    )
    adata = gdx.io.read_counts(counts, sample_sheet=sheet)
    assert list(adata.obs_names) == SAMPLES  # the count table's order, not the sheet's
    assert isinstance(adata.obs["condition"].dtype, pd.CategoricalDtype)
    assert list(adata.obs["condition"].cat.categories) == ["treated", "ctrl"]  # order of appearance
    assert list(adata.obs["condition"]) == ["ctrl", "ctrl", "treated"]
    assert list(adata.obs["batch"]) == ["b1", "b2", "b2"]
    assert adata.obs["rin"].dtype == np.float64  # numeric columns stay numeric
    np.testing.assert_allclose(adata.obs["rin"], [9.0, 7.5, 8.1])


def test_sample_sheet_dataframe(tmp_path):
    counts = write_table(tmp_path / "counts.tsv", plain_rows())
    sheet = pd.DataFrame({"group": ["a", "b", "a"]}, index=["S2", "S1", "S3"])
    adata = gdx.io.read_counts(counts, sample_sheet=sheet)
    assert list(adata.obs["group"]) == ["b", "a", "a"]
    assert adata.obs["group"].dtype == "category"
    assert list(sheet.index) == ["S2", "S1", "S3"]  # the caller's sheet is untouched


def test_sample_sheet_not_covering_samples_lists_them(tmp_path):
    counts = write_table(tmp_path / "counts.tsv", plain_rows())
    sheet = write_table(tmp_path / "samples.tsv", [["sample", "group"], ["S1", "a"], ["s2", "b"], ["S4", "b"]])
    with pytest.raises(ValueError, match=r"does not cover 2 sample\(s\).*\['S2', 'S3'\].*\['s2', 'S4'\]"):
        gdx.io.read_counts(counts, sample_sheet=sheet)


def test_sample_sheet_with_duplicate_samples(tmp_path):
    counts = write_table(tmp_path / "counts.tsv", plain_rows())
    sheet = pd.DataFrame({"group": ["a", "b", "a", "b"]}, index=["S1", "S2", "S3", "S1"])
    with pytest.raises(ValueError, match=r"more than once: \['S1'\]"):
        gdx.io.read_counts(counts, sample_sheet=sheet)


def test_sample_sheet_missing_file(tmp_path):
    counts = write_table(tmp_path / "counts.tsv", plain_rows())
    with pytest.raises(FileNotFoundError, match="sample sheet"):
        gdx.io.read_counts(counts, sample_sheet=tmp_path / "nope.tsv")


# --- bad input ------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="count table not found"):
        gdx.io.read_counts(tmp_path / "nope.tsv")


def test_duplicate_sample_names(tmp_path):
    path = write_table(tmp_path / "counts.tsv", plain_rows(samples=["S1", "S2", "S1"]))
    with pytest.raises(ValueError, match=r"duplicate sample names \['S1'\]"):
        gdx.io.read_counts(path)


def test_duplicate_gene_ids(tmp_path):
    path = write_table(tmp_path / "counts.tsv", plain_rows(genes=["g1", "g2", "g1", "g3"]))
    with pytest.raises(ValueError, match=r"duplicate gene IDs \['g1'\]"):
        gdx.io.read_counts(path)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("2.5", "non-integer counts: 1 value.*gene 'g2' in sample 'S3'"),
        ("-1", "negative counts: 1 value.*gene 'g2' in sample 'S3'"),
        ("", r"missing \(NaN or empty\) counts.*gene 'g2' in sample 'S3'"),
        ("NA", r"missing \(NaN or empty\) counts"),
        ("inf", "infinite counts"),
        ("ten", r"non-numeric values in sample column\(s\) \['S3'\] \(e.g. 'ten' for gene 'g2'\)"),
    ],
)
def test_bad_counts(tmp_path, value, match):
    counts = COUNTS.astype(object)
    counts[1, 2] = value
    path = write_table(tmp_path / "counts.tsv", plain_rows(counts=counts))
    with pytest.raises(ValueError, match=match):
        gdx.io.read_counts(path)


def test_integer_valued_floats_are_counts(tmp_path):
    path = write_table(tmp_path / "counts.tsv", plain_rows(counts=COUNTS.astype(float)))
    assert_counts(gdx.io.read_counts(path))


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([], "empty \\(no header line\\)"),
        ([["gene", *SAMPLES]], "no gene rows"),
        ([["gene"], ["g1"], ["g2"]], "no sample columns"),
        ([["EntrezGeneID", "Length"], ["1", "10"]], "no sample columns"),
    ],
)
def test_empty_tables(tmp_path, rows, match):
    path = tmp_path / "counts.tsv"
    if rows:
        write_table(path, rows)
    else:
        path.write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match=match):
        gdx.io.read_counts(path)


def test_rows_without_gene_id(tmp_path):
    rows = plain_rows()
    rows[2][0] = ""
    path = write_table(tmp_path / "counts.tsv", rows)
    with pytest.raises(ValueError, match=r"rows without a gene ID \(file lines \[3\]\)"):
        gdx.io.read_counts(path)


def test_ragged_rows(tmp_path):
    rows = plain_rows()
    rows[2] = [*rows[2], 4, 5]
    path = write_table(tmp_path / "counts.tsv", rows)
    with pytest.raises(ValueError, match="cannot parse"):
        gdx.io.read_counts(path)

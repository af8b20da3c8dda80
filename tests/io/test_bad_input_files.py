"""Files a new user hands to `io.read_counts` and `io.read_gmt` that are not what the readers expect (issue 14
item 1): encodings, compression without a suffix, other separators, binary files. Each reads correctly (with a
warning where we guess) or raises a ValueError naming the file and the way out."""

import bz2
import gzip
import lzma
import re
import warnings

import numpy as np
import pytest

import gendex as gdx

COUNTS = np.array([[10, 0, 3], [5, 7, 0], [0, 1, 2], [100, 200, 300]])  # genes x samples
GENES = ["g1", "g2", "g3", "g4"]


def table_text(samples=("S1", "S2", "S3"), genes=GENES, sep="\t"):
    rows = [["gene", *samples]] + [[g, *map(str, r)] for g, r in zip(genes, COUNTS, strict=True)]
    return "\n".join(sep.join(r) for r in rows) + "\n"


def read_quietly(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file we read without guessing must not warn
        return gdx.io.read_counts(path, **kwargs)


# --- encodings ----------------------------------------------------------------------------------------


def test_latin1_count_table_is_read_with_a_warning_naming_the_file(tmp_path):
    path = tmp_path / "counts.tsv"
    path.write_bytes(table_text(samples=("Mère", "S2", "S3")).encode("latin-1"))
    with pytest.warns(UserWarning, match=r"count table counts\.tsv is not UTF-8 \(byte b'\\xe8' on line 1\).*Latin-1"):
        adata = gdx.io.read_counts(path)
    assert list(adata.obs_names) == ["Mère", "S2", "S3"]
    np.testing.assert_array_equal(adata.X, COUNTS.T)


def test_latin1_sample_sheet_is_read_with_a_warning(tmp_path):
    counts = tmp_path / "counts.tsv"
    counts.write_text(table_text())
    sheet = tmp_path / "samples.tsv"
    sheet.write_bytes("sample\tsite\nS1\tNîmes\nS2\tLyon\nS3\tNîmes\n".encode("latin-1"))
    with pytest.warns(UserWarning, match=r"sample sheet samples\.tsv is not UTF-8"):
        adata = gdx.io.read_counts(counts, sample_sheet=sheet)
    assert list(adata.obs["site"]) == ["Nîmes", "Lyon", "Nîmes"]


def test_utf8_with_byte_order_mark_keeps_the_gene_column_name(tmp_path):
    path = tmp_path / "counts.csv"
    path.write_bytes(b"\xef\xbb\xbf" + table_text(sep=",").encode())
    adata = read_quietly(path, gene_column="gene")
    assert list(adata.var_names) == GENES


def test_latin1_gmt_is_read_with_a_warning_naming_the_file(tmp_path):
    path = tmp_path / "sets.gmt"
    path.write_bytes("SET_A\tcaf\xe9 genes\tg1\tg2\nSET_B\tna\tg3\n".encode("latin-1"))
    with pytest.warns(UserWarning, match=r"GMT file sets\.gmt is not UTF-8 \(byte b'\\xe9' on line 1\)"):
        net = gdx.io.read_gmt(path)
    assert net[["source", "target"]].to_records(index=False).tolist() == [
        ("SET_A", "g1"),
        ("SET_A", "g2"),
        ("SET_B", "g3"),
    ]
    assert net["description"].tolist() == ["café genes", "café genes", "na"]


@pytest.mark.parametrize("reader", ["counts", "gmt"])
def test_utf16_text_is_refused_with_the_way_out(tmp_path, reader):
    path = tmp_path / ("counts.tsv" if reader == "counts" else "sets.gmt")
    path.write_bytes(table_text().encode("utf-16"))
    read = gdx.io.read_counts if reader == "counts" else gdx.io.read_gmt
    with pytest.raises(ValueError, match=rf"{re.escape(path.name)}: contains NUL bytes: it is UTF-16.*UTF-8"):
        read(path)


# --- compression recognised by content ------------------------------------------------------------------

COMPRESSORS = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}


@pytest.mark.parametrize("kind", COMPRESSORS)
def test_compressed_count_table_without_suffix(tmp_path, kind):
    path = tmp_path / "counts.txt"  # e.g. a browser that dropped the .gz
    path.write_bytes(COMPRESSORS[kind](table_text().encode()))
    adata = read_quietly(path)
    np.testing.assert_array_equal(adata.X, COUNTS.T)


def test_gzip_gmt_without_suffix(tmp_path):
    path = tmp_path / "sets.gmt"
    path.write_bytes(gzip.compress(b"SET_A\tdesc\tg1\tg2\n"))
    assert gdx.io.read_gmt(path)["target"].tolist() == ["g1", "g2"]


def test_plain_text_named_gz_is_read(tmp_path):
    path = tmp_path / "counts.tsv.gz"  # not compressed after all
    path.write_text(table_text())
    np.testing.assert_array_equal(read_quietly(path).X, COUNTS.T)


@pytest.mark.parametrize("reader", ["counts", "gmt"])
def test_truncated_gzip_names_the_file_and_says_to_fetch_it_again(tmp_path, reader):
    data = gzip.compress((table_text() * 50).encode())
    path = tmp_path / "data.gz"
    path.write_bytes(data[: len(data) // 2])
    read = gdx.io.read_counts if reader == "counts" else gdx.io.read_gmt
    with pytest.raises(ValueError, match=r"data\.gz: gzip data that cannot be decompressed.*truncated or corrupt"):
        read(path)


@pytest.mark.parametrize(
    ("magic", "hint"),
    [
        (b"PK\x03\x04\x14\x00", "zip archive.*xlsx.*export the sheet as TSV or CSV"),
        (b"\x89HDF\r\n\x1a\n", r"HDF5 file.*anndata\.read_h5ad"),
        (b"BAM\x01\x00\x00", "BAM alignment file.*featureCounts"),
        (b"\x00\x01\x02\x03", "NUL bytes: it looks like a binary file"),
    ],
)
def test_binary_files_are_refused_saying_what_they_are(tmp_path, magic, hint):
    path = tmp_path / "counts.tsv"
    path.write_bytes(magic + bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=rf"counts\.tsv: .*{hint}"):
        gdx.io.read_counts(path)


# --- separators ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("counts.txt", table_text(sep=" ")),
        ("counts.txt", table_text(sep="   ")),  # aligned columns
        ("counts.tsv", table_text(sep=" ").replace("\n", " \n")),  # trailing spaces
        ("counts.csv", table_text(sep=";")),  # a European CSV
        ("counts.csv", table_text(sep="\t")),  # a TSV named .csv
    ],
)
def test_other_separators_are_detected(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    adata = read_quietly(path)
    assert list(adata.var_names) == GENES and list(adata.obs_names) == ["S1", "S2", "S3"]
    np.testing.assert_array_equal(adata.X, COUNTS.T)


def test_r_write_table_default_space_separated_quoted(tmp_path):
    """R's `write.table(counts)`: space-separated, quoted names, no header field for the row names."""
    lines = ['"S1" "S2" "S3"'] + [f'"{g}" ' + " ".join(map(str, r)) for g, r in zip(GENES, COUNTS, strict=True)]
    path = tmp_path / "counts.txt"
    path.write_text("\n".join(lines) + "\n")
    adata = read_quietly(path)
    assert list(adata.var_names) == GENES and list(adata.obs_names) == ["S1", "S2", "S3"]


def test_one_column_file_says_what_it_saw(tmp_path):
    path = tmp_path / "counts.tsv"
    path.write_text("gene|S1|S2\ng1|1|2\n")
    with pytest.raises(
        ValueError, match=r"no sample columns; the header line 'gene\|S1\|S2' has one field.*pass `sep=`"
    ):
        gdx.io.read_counts(path)
    assert gdx.io.read_counts(path, sep="|").shape == (2, 1)


def test_wrong_explicit_separator_says_what_it_saw(tmp_path):
    path = tmp_path / "counts.tsv"
    path.write_text(table_text())
    with pytest.raises(
        ValueError, match=r"no sample columns; the header line 'gene\\tS1\\tS2\\tS3' has one field when "
    ):
        gdx.io.read_counts(path, sep=",")


def test_annotation_only_table_names_the_columns_it_saw(tmp_path):
    path = tmp_path / "counts.tsv"
    path.write_text("EntrezGeneID\tLength\n1\t10\n2\t20\n")
    with pytest.raises(ValueError, match=r"no sample columns \(the header holds only \['EntrezGeneID', 'Length'\]"):
        gdx.io.read_counts(path)


# --- arguments ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"sep": ""}, ValueError, r"`sep` must be one separator character.*got ''"),
        ({"sep": "ab"}, ValueError, r"`sep` must be one separator character.*got 'ab'"),
        ({"sep": 5}, ValueError, r"`sep` must be one separator character.*got 5"),
        ({"sep": "\n"}, ValueError, r"`sep` must be one separator character"),
        ({"sample_sheet": 5}, TypeError, r"`sample_sheet` must be a path or a DataFrame, got int"),
        ({"gene_column": "nope"}, KeyError, r"gene column 'nope' not in the header of counts\.tsv"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, err, match):
    path = tmp_path / "counts.tsv"
    path.write_text(table_text())
    with pytest.raises(err, match=match):
        gdx.io.read_counts(path, **kwargs)


def test_bad_paths_are_named(tmp_path):
    with pytest.raises(TypeError, match=r"`path` must be a file path \(str or Path\), got int"):
        gdx.io.read_counts(5)
    with pytest.raises(ValueError, match="is a folder, not a count table"):
        gdx.io.read_counts(tmp_path)


def test_sample_sheet_dataframe_with_duplicated_columns(tmp_path):
    import pandas as pd

    path = tmp_path / "counts.tsv"
    path.write_text(table_text())
    sheet = pd.DataFrame([["a", "b"]] * 3, index=["S1", "S2", "S3"], columns=["group", "group"])
    with pytest.raises(ValueError, match=r"the sample sheet has duplicated column names \['group'\]"):
        gdx.io.read_counts(path, sample_sheet=sheet)


def test_unsplittable_header_names_the_file(tmp_path):
    path = tmp_path / "counts.tsv"
    path.write_bytes(b"gene\tS1\rX\tS2\ng1\t1\t2\n")  # a lone carriage return inside a field
    with pytest.raises(ValueError, match=r"^counts\.tsv: "):
        gdx.io.read_counts(path)

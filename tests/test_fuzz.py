"""Fuzzing (issue 14 item 5): malformed count tables and sample sheets thrown at `io.read_counts`, malformed
AnnData thrown at the validation layer and at the `pp` functions behind it. Every outcome is a result that
passes its invariants or a clear error (ValueError, KeyError or TypeError with a message); any other exception,
an empty message or an unexpected warning fails. Seeded random generation (hypothesis is not a dependency), so
a failure prints the seed and case that reproduce it."""

from __future__ import annotations

import bz2
import gzip
import warnings

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse

import gendex as gdx
from gendex import _validation as val

CLEAR_ERRORS = (ValueError, KeyError, TypeError)
N_TABLES = 400
N_SHEETS = 150
N_ADATA = 300

TOKENS = [
    "", " ", "NA", "nan", "NaN", "-1", "1.5", "1e3", "2.0", "inf", "-inf", "abc", '"', '"5"', "1,000", "0x10",
    "١٢", "é", "\t", ",", ";", "#", "None", "TRUE", "9" * 25, "-0", "+3", " 7 ", "1_000",
]  # fmt: skip
SEPARATORS = ["\t", ",", ";", " ", "|"]


def _valid_rows(rng):
    n_genes, n_samples = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    header = [str(rng.choice(["gene", "Geneid", "EntrezGeneID", "", "id"]))] + [f"S{i}" for i in range(n_samples)]
    if rng.random() < 0.2:
        header.insert(1, str(rng.choice(["Length", "length"])))
    if rng.random() < 0.1:
        header[1:1] = ["Chr", "Start", "End", "Strand", "Length"]
    rows = [header]
    for g in range(n_genes):
        rows.append([f"g{g}"] + [str(int(v)) for v in rng.integers(0, 50, size=len(header) - 1)])
    return rows


def _mutate_rows(rng, rows):
    rows = [list(r) for r in rows]
    for _ in range(int(rng.integers(0, 4))):
        i = int(rng.integers(0, len(rows)))
        kind = rng.integers(0, 7)
        if kind == 0 and rows[i]:
            rows[i][int(rng.integers(0, len(rows[i])))] = str(rng.choice(TOKENS))
        elif kind == 1 and rows[i]:
            del rows[i][int(rng.integers(0, len(rows[i])))]
        elif kind == 2:
            rows[i].append(str(rng.choice(TOKENS)))
        elif kind == 3:
            rows.insert(i, list(rows[i]))  # duplicated gene (or header) line
        elif kind == 4 and len(rows[0]) > 1:
            rows[0][-1] = rows[0][int(rng.integers(0, len(rows[0])))]  # duplicated column name
        elif kind == 5:
            rows.insert(i, [str(rng.choice(["# comment", "", "   "]))])
        elif kind == 6 and len(rows) > 1:
            del rows[i]
    return rows


def _table_bytes(rng):
    rows = _mutate_rows(rng, _valid_rows(rng)) if rng.random() < 0.8 else _valid_rows(rng)
    sep = str(rng.choice(SEPARATORS))
    text = "\n".join(sep.join(r) for r in rows) + ("\n" if rng.random() < 0.8 else "")
    if rng.random() < 0.1:
        text = text.replace("\n", "\r\n")
    data = text.encode(str(rng.choice(["utf-8", "utf-8", "latin-1", "utf-8-sig"])), errors="replace")
    kind = rng.random()
    if kind < 0.1:
        data = gzip.compress(data)
    elif kind < 0.15:
        data = bz2.compress(data)
    if rng.random() < 0.1:
        data = data[: int(rng.integers(0, len(data) + 1))]  # cut short anywhere
    if rng.random() < 0.03:
        data = rng.bytes(int(rng.integers(0, 200)))
    return data, sep


def _check_result(adata):
    assert isinstance(adata, AnnData)
    assert adata.X.dtype == np.int64 and (adata.X >= 0).all()
    np.testing.assert_array_equal(adata.X, adata.layers["counts"])
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    assert all(isinstance(n, str) for n in [*adata.obs_names, *adata.var_names])
    assert adata.n_obs > 0 and adata.n_vars > 0


class _Failed:
    """The outcome of a call that raised a clear error."""


FAILED = _Failed()


def _outcome(call, where):
    """Run `call`; return its result, or FAILED after a clear error. Anything else fails naming `where`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except CLEAR_ERRORS as err:
            message = str(err).strip("'\" ")
            assert message, f"{where}: {type(err).__name__} without a message"
            result = FAILED
        except Exception as err:  # noqa: BLE001 - that is what this test looks for
            pytest.fail(f"{where}: {type(err).__name__}: {err}")
    for w in caught:
        assert issubclass(w.category, UserWarning) and "is not UTF-8" in str(w.message), f"{where}: warning {w}"
    return result


@pytest.mark.parametrize("block", range(4))
def test_malformed_count_tables(tmp_path, block):
    results = 0
    for case in range(block * N_TABLES // 4, (block + 1) * N_TABLES // 4):
        rng = np.random.default_rng(case)
        data, sep = _table_bytes(rng)
        path = tmp_path / f"counts_{case}{rng.choice(['.tsv', '.csv', '.txt', '.gz', ''])}"
        path.write_bytes(data)
        kw = {"sep": sep} if rng.random() < 0.2 else {}
        adata = _outcome(lambda path=path, kw=kw: gdx.io.read_counts(path, **kw), f"table case {case} ({kw})")
        if adata is not FAILED:
            _check_result(adata)
            results += 1
    assert 0 < results < N_TABLES // 4  # the generator makes both kinds of outcome


def _sheet(rng, samples):
    names = list(samples)
    kind = rng.integers(0, 6)
    if kind == 0 and names:
        names.pop(int(rng.integers(0, len(names))))  # a sample missing
    elif kind == 1 and names:
        names.append(names[0])  # a sample twice
    elif kind == 2:
        names.append("extra")
    rows = [["sample", "group", "dose"]] + [
        [n, str(rng.choice(["a", "b", ""])), str(rng.choice(TOKENS))] for n in names
    ]
    if rng.random() < 0.2:
        rows[0][2] = "group"  # duplicated column
    if rng.random() < 0.1:
        rows = rows[:1]
    return rows


def test_malformed_sample_sheets(tmp_path):
    counts = tmp_path / "counts.tsv"
    samples = ["S0", "S1", "S2"]
    counts.write_text("gene\t" + "\t".join(samples) + "\ng1\t1\t2\t3\ng2\t4\t5\t6\n")
    results = 0
    for case in range(N_SHEETS):
        rng = np.random.default_rng(10_000 + case)
        rows = _sheet(rng, samples)
        if rng.random() < 0.5:
            sheet = tmp_path / f"sheet_{case}.{rng.choice(['tsv', 'csv'])}"
            sep = "," if sheet.suffix == ".csv" else "\t"
            sheet.write_text("\n".join(sep.join(r) for r in rows) + "\n")
        else:
            sheet = pd.DataFrame(rows[1:], columns=rows[0]).set_index("sample") if len(rows) > 1 else pd.DataFrame()
            if rng.random() < 0.2 and len(sheet):
                sheet.index = pd.Index(range(len(sheet)))  # integer sample names
        adata = _outcome(lambda sheet=sheet: gdx.io.read_counts(counts, sample_sheet=sheet), f"sheet case {case}")
        if adata is not FAILED:
            _check_result(adata)
            assert list(adata.obs_names) == samples
            results += 1
    assert 0 < results < N_SHEETS


def _random_adata(rng):
    n_obs, n_vars = int(rng.integers(0, 5)), int(rng.integers(0, 6))
    kind = rng.integers(0, 8)
    x = rng.poisson(5, size=(n_obs, n_vars)).astype(np.int64)
    if kind == 1:
        x = x.astype(np.float64) + rng.choice([0.0, 0.5], size=x.shape)
    elif kind == 2 and x.size:
        x = x.astype(np.float64)
        x.flat[int(rng.integers(0, x.size))] = rng.choice([np.nan, np.inf, -np.inf, -1.0])
    elif kind == 3:
        x = x.astype(rng.choice([np.float32, np.float16, np.int8, np.uint16, bool]))
    elif kind == 4:
        x = x.astype(np.complex128)
    elif kind == 5:
        x = x.astype(str).astype(object)
    elif kind == 6:
        x = np.zeros_like(x)
    adata = AnnData(np.zeros((n_obs, n_vars)))
    layer = x if kind != 7 or not x.size else sparse.csr_matrix(x)
    if rng.random() < 0.9:
        adata.layers["counts"] = layer
    if rng.random() < 0.3:
        adata.X = None
    if rng.random() < 0.15 and n_vars > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adata.var_names = ["g"] * n_vars
    if rng.random() < 0.1:
        adata.var.index = pd.Index(np.arange(n_vars))
    groups = rng.choice(["A", "B", None], size=n_obs)
    adata.obs["condition"] = pd.Categorical(groups) if rng.random() < 0.7 else groups.astype(object)
    adata.obs["sf"] = rng.choice([1.0, 0.0, -1.0, np.nan, 2.0], size=n_obs)
    return adata


VALIDATION_CALLS = {
    "get_counts": lambda a, rng: val.get_counts(a, str(rng.choice(["counts", "raw"]))),
    "get_counts(X)": lambda a, rng: val.get_counts(a, None),
    "check_groups": lambda a, rng: val.check_groups(a, str(rng.choice(["condition", "nope"])), ["A", "B"]),
    "check_positive_obs": lambda a, rng: val.check_positive_obs(a, str(rng.choice(["sf", "nope"]))),
    "pp.qc_metrics": lambda a, rng: gdx.pp.qc_metrics(a),
    "pp.size_factors": lambda a, rng: gdx.pp.size_factors(a),
    "pp.log_cpm": lambda a, rng: gdx.pp.log_cpm(a),
    "pp.filter_genes": lambda a, rng: gdx.pp.filter_genes(a),
    "pp.filter_by_expr": lambda a, rng: gdx.pp.filter_by_expr(a, group="condition"),
}


def test_malformed_anndata_at_the_validation_layer():
    outcomes = {"result": 0, "error": 0}
    for case in range(N_ADATA):
        rng = np.random.default_rng(20_000 + case)
        adata = _random_adata(rng)
        name = list(VALIDATION_CALLS)[case % len(VALIDATION_CALLS)]
        snapshot = (adata.obs.copy(), adata.var.copy(), list(adata.layers), list(adata.uns), list(adata.varm))
        result = _outcome(lambda a=adata, r=rng, n=name: VALIDATION_CALLS[n](a, r), f"adata case {case} ({name})")
        outcomes["error" if result is FAILED else "result"] += 1
        if result is FAILED:  # a failed call must not have written anything
            pd.testing.assert_frame_equal(adata.obs, snapshot[0])
            pd.testing.assert_frame_equal(adata.var, snapshot[1])
            after = (list(adata.layers), list(adata.uns), list(adata.varm))
            assert after == snapshot[2:], f"adata case {case} ({name}) wrote before failing"
    assert outcomes["error"] > 0 and outcomes["result"] > 0

"""The batched DESeq2 engine (``gendex.stats.deseq2_*``): R parity on GSE60450 and numerical edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import gendex as gdx
from gendex._design import design_matrix
from gendex.stats import deseq2_fit, deseq2_lrt, deseq2_wald, lowess
from gendex.stats._deseq2 import independent_filtering


def _two_group(n_per: int, n_genes: int = 300, seed: int = 0):
    ad = gdx.datasets.simulate_counts(n_samples=2 * n_per, n_genes=n_genes, random_state=seed)
    counts = np.asarray(ad.X).astype(np.int64)
    b = (ad.obs["condition"] == "B").to_numpy(float)
    design = np.column_stack([np.ones(b.size), b])
    return counts, design, ad


# ------------------------------------------------------------------------------------------------------------
# R parity on GSE60450 (../shared/reference/gse60450)
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gse_fits(_gse60450_session):
    ad = _gse60450_session.copy()
    gdx.pp.filter_genes(ad, min_total_count=10)
    obs = ad.obs.copy()
    obs["celltype"] = pd.Categorical(obs["celltype"], ["basal", "luminal"])
    obs["status"] = pd.Categorical(obs["status"], ["virgin", "pregnant", "lactate"])
    counts = np.asarray(ad.layers["counts"])
    full = design_matrix(obs, "~celltype + status")
    one = design_matrix(obs, "~celltype")
    fit = deseq2_fit(counts, full.to_numpy(), coef_names=list(full.columns))
    fit_ct = deseq2_fit(counts, one.to_numpy(), coef_names=list(one.columns))
    return {"names": list(ad.var_names), "obs": obs, "fit": fit, "fit_ct": fit_ct, "reduced": one.to_numpy()}


def _read_ref(reference_dir, name, genes):
    ref = pd.read_csv(reference_dir / name, index_col=0)
    ref.index = ref.index.astype(str)
    return ref.loc[genes]


def _parity(ours: pd.DataFrame, ref: pd.DataFrame) -> dict[str, float]:
    ok = np.isfinite(ours["log2FoldChange"]) & np.isfinite(ref["log2FoldChange"])
    d = np.abs(ours["log2FoldChange"][ok] - ref["log2FoldChange"][ok])
    return {
        "pearson": np.corrcoef(ours["log2FoldChange"][ok], ref["log2FoldChange"][ok])[0, 1],
        "share": float(np.mean(d < 0.01)),
        "calls": float(np.mean((ours["padj"] < 0.05) == (ref["padj"] < 0.05))),
        "na": float(np.mean(ours["padj"].isna() == ref["padj"].isna())),
        "finite": float(ok.mean()),
    }


def _assert_parity(ours, ref):
    m = _parity(ours, ref)
    assert m["finite"] > 0.99
    assert m["pearson"] >= 0.9999
    assert m["share"] >= 0.999
    assert m["calls"] >= 0.999
    assert m["na"] >= 0.995


# R's results() ran with its default alpha = 0.1 (see the reference scripts)
CONTRASTS = [
    ("celltype[T.luminal]", ("celltype", "luminal", "basal"), "deseq2_design_celltype_luminal_vs_basal.csv"),
    ("status[T.lactate]", ("status", "lactate", "virgin"), "deseq2_design_status_lactate_vs_virgin.csv"),
    ("status[T.pregnant]", ("status", "pregnant", "virgin"), "deseq2_design_status_pregnant_vs_virgin.csv"),
]


@pytest.mark.parametrize(("coef", "levels", "ref_file"), CONTRASTS)
def test_wald_matches_r(gse_fits, reference_dir, coef, levels, ref_file):
    obs = gse_fits["obs"]
    masks = ((obs[levels[0]] == levels[1]).to_numpy(), (obs[levels[0]] == levels[2]).to_numpy())
    ours = deseq2_wald(gse_fits["fit"], coef, alpha=0.1, contrast_samples=masks, gene_names=gse_fits["names"])
    ref = _read_ref(reference_dir, ref_file, gse_fits["names"])
    _assert_parity(ours, ref)
    # the same genes are significant, and p-values and padj agree closely where both are defined
    both = ours["padj"].notna() & ref["padj"].notna()
    # Dispersions agree with R's to rtol 1e-4 (both line searches stop once a step gains < 1e-6 in log
    # posterior, and which step that is depends on rounding, i.e. on the machine's BLAS kernels). A relative
    # error e in the dispersion moves the Wald z by about e/2 relative, so log(p) by about z^2 e / 2.
    z = np.abs(ref["stat"][both].to_numpy())
    tol = 1e-4 * (1.0 + z**2)
    floor = 1e-300  # p-values at the edge of underflow (R reports 0 where ours is 6e-307)
    log_p = (
        np.log(np.maximum(ours["pvalue"][both].to_numpy(), floor)),
        np.log(np.maximum(ref["pvalue"][both].to_numpy(), floor)),
    )
    assert np.all(np.abs(log_p[0] - log_p[1]) <= tol)
    # BH's padj at rank r is the minimum of p * m / rank over ranks >= r: where neighbouring p-values agree
    # within that tolerance their order can differ from R's, and the minimum then comes from the neighbour,
    # which moves padj by about 1 / rank more (seen: 2.7e-4 at rank ~3,700 with other BLAS kernels)
    rank = ref["pvalue"][both].rank(method="first").to_numpy()
    log_padj = (
        np.log(np.maximum(ours["padj"][both].to_numpy(), floor)),
        np.log(np.maximum(ref["padj"][both].to_numpy(), floor)),
    )
    assert np.all(np.abs(log_padj[0] - log_padj[1]) <= tol + 3.0 / rank)


def test_dispersions_match_r(gse_fits, reference_dir):
    fit = gse_fits["fit"]
    ref = _read_ref(reference_dir, "deseq2_design_dispersions.csv", gse_fits["names"])
    assert stats.spearmanr(ref["dispersion"], fit.dispersions).statistic >= 0.999
    np.testing.assert_allclose(fit.dispersions, ref["dispersion"], rtol=1e-4)
    np.testing.assert_allclose(fit.fitted_dispersions, ref["dispFit"], rtol=1e-6)
    np.testing.assert_array_equal(fit.disp_outlier, ref["dispOutlier"].to_numpy())
    params = pd.read_csv(reference_dir / "deseq2_design_dispfit_params.csv", header=None, index_col=0)[1]
    np.testing.assert_allclose(fit.trend_coeffs, [params["asymptDisp"], params["extraPois"]], rtol=1e-6)
    assert fit.prior_disp_var == pytest.approx(params["dispPriorVar"], rel=1e-6)


def test_lrt_matches_r(gse_fits, reference_dir):
    ours = deseq2_lrt(gse_fits["fit"], gse_fits["reduced"], alpha=0.1, gene_names=gse_fits["names"])
    ref = _read_ref(reference_dir, "deseq2_design_LRT_status.csv", gse_fits["names"])
    _assert_parity(ours, ref)
    assert int((ours["padj"] < 0.05).sum()) == pytest.approx(7207, abs=7)
    assert int(ours["padj"].isna().sum()) == pytest.approx(358, abs=4)
    ok = ref["stat"] > 1
    np.testing.assert_allclose(ours["stat"][ok], ref["stat"][ok], rtol=1e-4)


def test_dvsl_recipe_matches_r(gse_fits, reference_dir):
    obs = gse_fits["obs"]
    masks = ((obs["celltype"] == "luminal").to_numpy(), (obs["celltype"] == "basal").to_numpy())
    fit = gse_fits["fit_ct"]
    ours = deseq2_wald(fit, "celltype[T.luminal]", alpha=0.1, contrast_samples=masks, gene_names=gse_fits["names"])
    ref = _read_ref(reference_dir, "deseq2_DvsL_recipe.csv", gse_fits["names"])
    _assert_parity(ours, ref)
    # Cook's outliers: the same 5 genes lose their p-value
    assert set(ours.index[ours["pvalue"].isna()]) == set(ref.index[ref["pvalue"].isna()])
    assert (ours["na_reason"] == "cooks_outlier").sum() == 5
    disp = _read_ref(reference_dir, "deseq2_DvsL_recipe_dispersions.csv", gse_fits["names"])
    assert stats.spearmanr(disp["dispersion"], fit.dispersions).statistic >= 0.999
    # gene 20760 (zero in 10 of 12 samples): R's large finite LFC, not PyDESeq2's 6.1
    assert ours.loc["20760", "log2FoldChange"] == pytest.approx(ref.loc["20760", "log2FoldChange"], abs=0.05)
    assert ours.loc["20760", "log2FoldChange"] > 20


# ------------------------------------------------------------------------------------------------------------
# small synthetic edge cases
# ------------------------------------------------------------------------------------------------------------
def test_all_zero_gene_is_na():
    counts, design, _ = _two_group(4)
    counts[:, 5] = 0
    fit = deseq2_fit(counts, design)
    assert fit.all_zero[5] and fit.base_mean[5] == 0
    assert np.isnan(fit.beta[5]).all() and np.isnan(fit.dispersions[5])
    res = deseq2_wald(fit, 1)
    assert res.loc[5, "na_reason"] == "all_zero"
    assert np.isnan(res.loc[5, ["log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]].to_numpy(float)).all()
    assert np.isfinite(res.loc[~fit.all_zero, "log2FoldChange"]).all()


def test_one_group_all_zero_gives_large_finite_lfc():
    counts, design, _ = _two_group(4)
    counts[:4, 7] = 0
    counts[4:, 7] = [50, 80, 65, 40]
    fit = deseq2_fit(counts, design)
    res = deseq2_wald(fit, 1)
    lfc = res.loc[7, "log2FoldChange"]
    assert np.isfinite(lfc) and lfc > 5
    assert res.loc[7, "pvalue"] < 1e-3


def test_single_huge_count_flags_cooks_outlier():
    counts, design, _ = _two_group(4)
    counts[:, 9] = [100, 110, 95, 105, 98, 102, 20000, 101]
    fit = deseq2_fit(counts, design)
    res = deseq2_wald(fit, 1)
    assert fit.max_cooks[9] > fit.extras["cooks_cutoff"]
    assert np.isnan(res.loc[9, "pvalue"]) and res.loc[9, "na_reason"] == "cooks_outlier"
    assert not fit.replaced.any()  # 4 per group < min_replicates


def test_huge_count_is_replaced_with_seven_replicates():
    counts, design, _ = _two_group(8)
    counts[:, 9] = [100, 110, 95, 105, 98, 102, 97, 99, 101, 104, 96, 20000, 103, 100, 98, 102]
    fit = deseq2_fit(counts, design)
    assert fit.replaced[9] and fit.refitted[9]
    assert 9 in fit.replace_gene_idx
    used = fit.fitting_counts([9])[:, 0]
    assert used[11] < 1000 and fit.counts[11, 9] == 20000
    res = deseq2_wald(fit, 1)
    assert np.isfinite(res.loc[9, "pvalue"]) and res.loc[9, "pvalue"] > 0.01  # no spurious DE after refit
    assert np.isnan(fit.max_cooks).all()  # all samples replaceable: R sets maxCooks to NA


def test_deterministic():
    counts, design, _ = _two_group(4)
    a = deseq2_wald(deseq2_fit(counts, design), 1)
    b = deseq2_wald(deseq2_fit(counts, design), 1)
    pd.testing.assert_frame_equal(a, b)


def test_recovers_simulated_truth():
    counts, design, ad = _two_group(6, n_genes=1000)
    res = deseq2_wald(deseq2_fit(counts, design), 1)
    truth = ad.var["true_log2fc"].to_numpy()
    big = ad.var["true_base_mean"].to_numpy() > 50
    assert np.corrcoef(res["log2FoldChange"][big], truth[big])[0, 1] > 0.9
    called = (res["padj"] < 0.05).to_numpy()
    assert called[ad.var["is_de"].to_numpy()].mean() > 0.5
    assert called[~ad.var["is_de"].to_numpy()].mean() < 0.02


def test_torch_backend_matches_numpy():
    counts, design, _ = _two_group(4, n_genes=150)
    a = deseq2_fit(counts, design)
    b = deseq2_fit(counts, design, device="torch")
    np.testing.assert_allclose(a.dispersions, b.dispersions, rtol=1e-7)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-7, atol=1e-9)


def test_lrt_two_groups_close_to_wald():
    counts, design, _ = _two_group(6)
    fit = deseq2_fit(counts, design)
    lrt = deseq2_lrt(fit, design[:, :1])
    wald = deseq2_wald(fit, 1)
    ok = lrt["pvalue"].notna() & wald["pvalue"].notna() & (wald["baseMean"] > 20)
    assert stats.spearmanr(lrt["pvalue"][ok], wald["pvalue"][ok]).statistic > 0.97
    np.testing.assert_allclose(lrt["log2FoldChange"], wald["log2FoldChange"])


def test_numeric_contrast_and_lfc_threshold():
    counts, design, _ = _two_group(4)
    fit = deseq2_fit(counts, design, coef_names=["Intercept", "cond[T.B]"])
    by_name = deseq2_wald(fit, "cond[T.B]")
    by_vec = deseq2_wald(fit, [0.0, 1.0])
    pd.testing.assert_frame_equal(by_name, by_vec)
    flipped = deseq2_wald(fit, [0.0, -1.0])
    np.testing.assert_allclose(flipped["log2FoldChange"], -by_name["log2FoldChange"])
    thr = deseq2_wald(fit, 1, lfc_null=1.0)
    assert (thr["pvalue"].dropna() >= by_name["pvalue"][thr["pvalue"].notna()] - 1e-12).all()


def test_bad_inputs():
    counts, design, _ = _two_group(4, n_genes=20)
    with pytest.raises(ValueError, match="non-negative integers"):
        deseq2_fit(counts - 1000, design)
    with pytest.raises(ValueError, match="full column rank"):
        deseq2_fit(counts, np.column_stack([design, design[:, 1]]))
    with pytest.raises(ValueError, match="no replicates"):
        deseq2_fit(counts[[0, 4]], design[[0, 4]])
    fit = deseq2_fit(counts, design)
    with pytest.raises(KeyError, match="not in"):
        deseq2_wald(fit, "nope")
    with pytest.raises(ValueError, match="fewer columns"):
        deseq2_lrt(fit, design)


def test_lowess_and_filtering_helpers():
    from statsmodels.nonparametric.smoothers_lowess import lowess as sm_lowess

    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(0, 1, 60))
    y = np.sin(6 * x) + rng.normal(0, 0.3, 60)
    y[5] += 4  # an outlier for the robustness iterations
    ref = sm_lowess(y, x, frac=0.2, it=3, delta=0.01 * np.ptp(x))[:, 1]
    np.testing.assert_allclose(lowess(x, y, f=0.2)[1], ref, atol=1e-8)
    base_mean = rng.lognormal(3, 2, 2000)
    p = np.where(np.arange(2000) < 300, rng.uniform(0, 1e-4, 2000), rng.uniform(0, 1, 2000))
    padj, thr, theta, table = independent_filtering(base_mean, p, 0.1)
    assert table.shape == (50, 2) and 0 <= theta <= 0.95
    assert np.nanmin(base_mean[~np.isnan(padj)]) >= thr


# ------------------------------------------------------------------------------------------------------------
# PyDESeq2 adapter
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_batched_inference_in_pydeseq2_close_to_default():
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats

    ad = gdx.datasets.simulate_counts(n_samples=8, n_genes=150, random_state=3)
    counts = pd.DataFrame(np.asarray(ad.X), index=ad.obs_names, columns=ad.var_names)
    out = {}
    for name, inf in [("batched", gdx.tl.BatchedInference()), ("default", DefaultInference(n_cpus=1))]:
        dds = DeseqDataSet(
            counts=counts, metadata=ad.obs[["condition"]].copy(), design="~condition", inference=inf, quiet=True
        )
        dds.deseq2()
        ds = DeseqStats(dds, contrast=["condition", "B", "A"], inference=inf, quiet=True)
        ds.summary()
        res = ds.results_df.copy()
        ds.lfc_shrink(coeff="condition[T.B]")
        out[name] = (dds, res, ds.results_df.copy())
    (da, ra, sa), (db, rb, sb) = out["batched"], out["default"]
    ratio = np.log(da.var["dispersions"] / db.var["dispersions"]).dropna()
    assert np.median(np.abs(ratio)) < 0.05  # the trend fits differ slightly (R gamma GLM vs PyDESeq2)
    ok = ra["pvalue"].notna() & rb["pvalue"].notna()
    assert np.corrcoef(ra["log2FoldChange"][ok], rb["log2FoldChange"][ok])[0, 1] > 0.999
    assert stats.spearmanr(ra["pvalue"][ok], rb["pvalue"][ok]).statistic > 0.99
    assert np.mean((ra["padj"] < 0.05) == (rb["padj"] < 0.05)) > 0.97
    # apeGLM shrinkage: close to PyDESeq2's estimates and never further from 0 than the MLE (beyond noise)
    okk = sa["log2FoldChange"].notna() & sb["log2FoldChange"].notna()
    assert np.corrcoef(sa["log2FoldChange"][okk], sb["log2FoldChange"][okk])[0, 1] > 0.99
    assert (np.abs(sa["log2FoldChange"][okk]) <= np.abs(ra["log2FoldChange"][okk]) + 1e-3).mean() > 0.95


def test_threads_and_batches_do_not_change_results():
    counts, design, _ = _two_group(5, n_genes=400)
    a = deseq2_fit(counts, design, n_threads=1, chunk_size=64)
    b = deseq2_fit(counts, design, n_threads=2, chunk_size=64)
    np.testing.assert_array_equal(a.dispersions, b.dispersions)
    np.testing.assert_array_equal(a.beta, b.beta)
    c = deseq2_fit(counts, design, n_threads=1)  # one batch: only BLAS rounding may differ
    np.testing.assert_allclose(a.dispersions, c.dispersions, rtol=1e-10)
    np.testing.assert_allclose(a.beta, c.beta, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fit_type", ["mean", "local"])
def test_other_trend_types(fit_type):
    counts, design, _ = _two_group(4, n_genes=400)
    fit = deseq2_fit(counts, design, fit_type=fit_type)
    assert fit.fit_type == fit_type
    ok = ~fit.all_zero
    assert np.isfinite(fit.fitted_dispersions[ok]).all() and np.isfinite(fit.dispersions[ok]).all()
    if fit_type == "mean":
        assert np.unique(fit.fitted_dispersions[ok]).size == 1
    res = deseq2_wald(fit, 1)
    assert res["pvalue"].notna().sum() > 300


def test_small_residual_df_prior_variance():
    # 3 vs 2 samples: m - p = 3 uses the histogram-matching prior variance (R's Monte Carlo branch)
    ad = gdx.datasets.simulate_counts(n_samples=5, n_genes=1500, random_state=5, disp_scatter=1.5)
    counts = np.asarray(ad.X)
    design = np.column_stack([np.ones(5), [0, 0, 0, 1, 1]])
    fit = deseq2_fit(counts, design)
    # R DESeq2 1.38.3 gives dispPriorVar 1.666 on these data (its Monte Carlo estimate; checked with R locally)
    assert fit.prior_disp_var == pytest.approx(1.666, rel=0.08)
    from gendex.stats._deseq2._trend import prior_variance

    again = prior_variance(fit.genewise_dispersions, fit.fitted_dispersions, 5, 2, 1e-8)
    assert again[0] == fit.prior_disp_var


def test_distinct_count_sums_match_dense_sums(monkeypatch):
    # >= 40 samples with low counts: the line search and the GLM sum lgamma/digamma over the distinct counts
    # of each gene (and shrink those sums with the working set); dense per-sample sums must give the same fit.
    # This is the numpy reference path (the compiled line search at >= 40 samples has its own distinct-count sums,
    # compared with dense sums in test_deseq2_jit.py).
    from gendex.stats._deseq2 import _backend, _jit, _kernels

    monkeypatch.setattr(_jit, "ENABLED", False)

    rng = np.random.default_rng(5)
    group = np.repeat([0.0, 1.0], 30)
    mean = rng.gamma(1.0, 8.0, size=400) * np.exp(np.outer(group, rng.normal(0, 0.5, 400)))
    counts = rng.negative_binomial(5, 5 / (5 + mean))
    design = np.column_stack([np.ones(60), group])
    assert _kernels.count_sums(_backend.get_backend("cpu"), counts.T.astype(float)) is not None
    a = deseq2_fit(counts, design)
    calls = []
    monkeypatch.setattr(_kernels, "count_sums", lambda be, y: calls.append(1))
    b = deseq2_fit(counts, design)
    assert calls, "the fit no longer asks for distinct-count sums: this test compares nothing"
    # The two orders of summation differ by rounding (~1e-13 relative, more or less with the BLAS kernels the
    # machine picks). Where both line searches take the same steps, the estimates agree to that rounding times the
    # iterations (rtol 1e-8). Where a rounding-level difference flips a stopping test (log-posterior change < 1e-6
    # per accepted step), the searches stop one step apart: both are then converged estimates, which differ by
    # much less than a step (4e-8 relative seen with OPENBLAS_CORETYPE=Prescott); 1e-5 in log(alpha) bounds it.
    same = (a.genewise_iters == b.genewise_iters) & (a.map_iters == b.map_iters)
    assert same.mean() > 0.99
    np.testing.assert_allclose(a.genewise_dispersions[same], b.genewise_dispersions[same], rtol=1e-8)
    np.testing.assert_allclose(a.dispersions[same], b.dispersions[same], rtol=1e-8)
    np.testing.assert_allclose(a.beta[same], b.beta[same], rtol=1e-8, atol=1e-10)
    for name in ("genewise_dispersions", "dispersions"):
        la, lb = np.log(getattr(a, name)), np.log(getattr(b, name))
        np.testing.assert_allclose(la, lb, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=1e-9)

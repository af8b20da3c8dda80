"""Wall time of limma-voom (TMM + voom + lmFit + contrasts + eBayes) on GSE60450 against R's limma.

Usage: ``python benchmarks/limma_speed.py [--shared ../shared] [--repeats 7]``. Reads the data and R's timing
from the shared reference folder; R itself is not needed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

import gendex as gdx
from gendex._design import contrast_vector, design_matrix
from gendex.stats import calc_norm_factors_tmm, contrasts_fit, ebayes, lm_fit, top_table, voom

R_FIGURE_S = 1.1  # the figure for R (quiet 2-core machine), also stated in the reference README


def kernels(counts: np.ndarray, x: np.ndarray, vec: np.ndarray) -> pd.DataFrame:
    factors = calc_norm_factors_tmm(counts)
    v = voom(counts, x, lib_size=counts.sum(axis=1) * factors)
    fit = contrasts_fit(lm_fit(v.log_cpm, x, weights=v.weights), vec)
    return top_table(fit, ebayes(fit))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    adata = gdx.datasets.gse60450(args.shared / "data" / "gse60450")
    gdx.pp.filter_by_expr(adata, group="celltype")
    timings = pd.read_csv(args.shared / "reference" / "gse60450" / "timings_gse60450.csv").set_index("step")
    r_step = timings.loc["voom+lmFit+contrasts.fit+eBayes"]

    counts = np.asarray(adata.layers["counts"], dtype=np.float64)
    x = design_matrix(adata.obs, "~celltype")
    vec = contrast_vector(x, adata.obs, ["celltype", "luminal", "basal"])
    kernels(counts, x.to_numpy(), vec)  # warm-up (imports, caches)

    kernel_s, wrapper_s = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        kernels(counts, x.to_numpy(), vec)
        kernel_s.append(time.perf_counter() - t0)
        work = adata.copy()
        t0 = time.perf_counter()
        gdx.tl.limma_voom(work, design="~celltype", contrast=["celltype", "luminal", "basal"])
        wrapper_s.append(time.perf_counter() - t0)

    print(f"GSE60450 after filter_by_expr: {adata.n_obs} samples x {adata.n_vars} genes, {args.repeats} repeats")
    print(
        f"gendex kernels  TMM+voom+lmFit+contrasts+eBayes+topTable: median {statistics.median(kernel_s):.3f} s, "
        f"min {min(kernel_s):.3f} s"
    )
    print(
        f"gendex tl.limma_voom (validation, design, all of the above, storing): "
        f"median {statistics.median(wrapper_s):.3f} s, min {min(wrapper_s):.3f} s"
    )
    print(
        f"R limma 3.54 voom+lmFit+contrasts.fit+eBayes (reference timings file, busy machine): "
        f"user {r_step['user_s']:.3f} s, elapsed {r_step['elapsed_s']:.3f} s; issue figure incl. TMM {R_FIGURE_S} s"
    )
    ratio = R_FIGURE_S / statistics.median(wrapper_s)
    print(f"speed-up of tl.limma_voom over R's {R_FIGURE_S} s: {ratio:.1f}x")


if __name__ == "__main__":
    main()

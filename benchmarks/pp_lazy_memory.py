"""Peak memory and wall time of pp / limma / t-test on dask counts against the same calls in memory.

Usage: ``python benchmarks/pp_lazy_memory.py [--samples 2000] [--genes 20000] [--block-mb 32]``. Simulates
int32 counts into a zarr store (chunks of 500 samples x 2,000 genes, written block by block), then runs each
step in a fresh process twice: on the store opened lazily (``dask.array.from_zarr``, dask's
threaded scheduler, ``GENDEX_BLOCK_BYTES`` set from ``--block-mb``) and on the counts read into memory. Prints
one row per step: wall time and peak resident memory above the process's resident size just before the
step (Linux: the peak is reset through ``/proc/self/clear_refs``), lazy / in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = {
    "qc_metrics": "gdx.pp.qc_metrics(adata)",
    "filter_by_expr": "gdx.pp.filter_by_expr(adata, group='condition', subset=False)",
    "size_factors": "gdx.pp.size_factors(adata)",
    "log_cpm + write": "gdx.pp.log_cpm(adata); write(adata.layers['log_cpm'])",
    "vst + write": "gdx.pp.vst(adata); write(adata.layers['vst'])",
    "limma_voom": "gdx.tl.limma_voom(adata, design='~condition')",
    "ttest (log_cpm)": "gdx.pp.log_cpm(adata); gdx.tl.ttest(adata, contrast=['condition', 'B', 'A'], layer='log_cpm')",
}

RUNNER = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd, zarr, dask, dask.array as da, anndata as ad
import gendex as gdx

store, lazy, step, out = sys.argv[1], sys.argv[2] == "lazy", sys.argv[3], sys.argv[4]
group = zarr.open_group(store, mode="r")
obs = pd.read_csv(store + "/samples.csv", index_col=0)
counts = da.from_zarr(group["counts"]) if lazy else np.asarray(group["counts"][...])
adata = ad.AnnData(obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(counts.shape[1])]))
adata.layers["counts"] = counts


def status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


base = status_mb("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident size


def write(layer):
    if lazy:
        layer.to_zarr(out, overwrite=True)
    else:
        zarr.save_array(out, layer)


with dask.config.set(scheduler="threads"):
    t = time.perf_counter()
    exec(step)
    wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "base_mb": base, "peak_mb": status_mb("VmHWM:") - base}))
"""


def simulate(path: Path, n: int, g: int, seed: int = 0) -> None:
    """NB counts with a two-group design, written 500 samples at a time (never the whole matrix)."""
    import numpy as np
    import pandas as pd
    import zarr

    rng = np.random.default_rng(seed)
    means = np.exp(rng.normal(3.0, 1.8, g))
    de = rng.random(g) < 0.1
    fold = np.where(de, np.exp(rng.normal(0, 1, g)), 1.0)
    condition = np.where(np.arange(n) % 2, "B", "A")
    group = zarr.open_group(str(path), mode="w")
    arr = group.create_array("counts", shape=(n, g), chunks=(500, 2000), dtype="int32")
    for start in range(0, n, 500):
        rows = slice(start, min(start + 500, n))
        mu = means * np.where(condition[rows, None] == "B", fold, 1.0) * rng.lognormal(0, 0.2, (rows.stop - start, 1))
        arr[rows] = rng.negative_binomial(5, 5 / (5 + mu)).astype(np.int32)
    pd.DataFrame({"condition": condition}, index=[f"s{i}" for i in range(n)]).to_csv(path / "samples.csv")


def run(store: Path, mode: str, step: str, block_mb: int) -> dict:
    env = {**os.environ, "GENDEX_BLOCK_BYTES": str(block_mb * 2**20), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", RUNNER, str(store), mode, step, str(Path(tmp) / "out.zarr")]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--block-mb", type=int, default=32)
    parser.add_argument("--steps", nargs="*", default=list(STEPS))
    args = parser.parse_args()
    n, g = args.samples, args.genes
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "counts.zarr"
        t = time.perf_counter()
        simulate(store, n, g)
        print(f"{n:,} samples x {g:,} genes, int32 ({n * g * 4 / 2**20:,.0f} MB), zarr chunks 500 x 2,000; ")
        print(f"blocks of {args.block_mb} MB (GENDEX_BLOCK_BYTES); simulated in {time.perf_counter() - t:.1f} s\n")
        print("| step | lazy wall (s) | in-memory wall (s) | ratio | lazy peak (MB) | in-memory peak (MB) | ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name in args.steps:
            lazy = run(store, "lazy", STEPS[name], args.block_mb)
            mem = run(store, "memory", STEPS[name], args.block_mb)
            print(
                f"| {name} | {lazy['wall']:.2f} | {mem['wall']:.2f} | {lazy['wall'] / mem['wall']:.2f} | "
                f"{lazy['peak_mb']:.0f} | {mem['peak_mb']:.0f} | {lazy['peak_mb'] / max(mem['peak_mb'], 1):.2f} |",
                flush=True,
            )
        print("\npeak: resident memory above the process's size just before the step (in memory, the int32 counts")
        print("are part of that size).")


if __name__ == "__main__":
    main()

"""Out-of-core DESeq2: counts simulated into a zarr store, read lazily, size factors + ``tl.deseq2``.

Usage::

    python benchmarks/scale.py          # 10,000 x 20,000 (memory, dask, 2-worker cluster), 50,000 x 20,000 (dask)
    python benchmarks/scale.py --quick  # 2,000 x 2,000, every backend (a minute)
    python benchmarks/scale.py --sizes 10000x20000 --workdir /tmp/scale

Each size is simulated straight into a zarr store in blocks of 5,000 samples x 1,000 genes (int32, the whole
matrix is never in memory): negative binomial draws (gamma-Poisson) with log-normal gene means, the DESeq2-style
dispersion trend ``0.05 + 1.5 / mean`` with log-normal scatter, a two-level ``condition`` (10% of genes
changed), a three-level ``batch`` and log-normal size factors. Every measured run is a fresh Python process that
opens the store (``dask.array.from_zarr`` into an AnnData) and runs ``gdx.stats.size_factors_ratio`` and
``gdx.tl.deseq2(design="~condition + batch")``; it reports its wall times and its peak resident memory
(``getrusage(RUSAGE_SELF).ru_maxrss``; for the cluster also each worker's, asked from the worker process).

Backends: ``memory`` (the store loaded into a NumPy array first, the in-memory path), ``dask`` (the dask array,
the default threaded scheduler) and ``cluster`` (the dask array on a ``distributed.LocalCluster`` of 2 workers
x 1 thread). The dask and cluster results are compared with the in-memory run of the same store, value for value.

The table is printed and written to ``benchmarks/results/scale.md`` with the machine's load average (this
machine is shared: compare the ratios within a run); the rows are appended to ``scale_rows.jsonl`` beside it, and
the table is made from all rows there, so that sizes run by separate invocations share it (delete the file to
start afresh). The stores are deleted at the end (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BLOCK = (5000, 1000)  # zarr chunks: samples x genes
COLUMNS = ("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj", "dispersions", "genewise_dispersions")


# ----------------------------------------------------------------------------------------------------------------
# simulation into a zarr store, block by block
# ----------------------------------------------------------------------------------------------------------------
def _design(n: int, g: int, seed: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    rng = np.random.default_rng([seed, 0])
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(rng.permutation(np.arange(n) % 2), categories=[0, 1]).rename_categories(
                ["A", "B"]
            ),
            "batch": pd.Categorical(rng.integers(0, 3, n)).rename_categories(["b1", "b2", "b3"]),
        },
        index=[f"s{i}" for i in range(n)],
    )
    base = np.exp(rng.normal(np.log(150.0), 1.8, g))
    alpha = (0.05 + 1.5 / base) * np.exp(rng.normal(0.0, 0.4, g))
    lfc = np.where(rng.random(g) < 0.1, rng.choice([-1, 1], g) * (0.5 + rng.exponential(0.8, g)), 0.0)
    batch_eff = rng.normal(0.0, 0.3, (3, g))
    sf = np.exp(rng.normal(0.0, 0.25, n))
    return obs, {"base": base, "alpha": alpha, "lfc": lfc, "batch_eff": batch_eff, "sf": sf}


def simulate_store(path: Path, n: int, g: int, seed: int = 0) -> float:
    """Write an ``n x g`` int32 count matrix into a zarr store at ``path`` block by block; returns seconds taken."""
    import zarr

    t0 = time.perf_counter()
    obs, par = _design(n, g, seed)
    arr = zarr.create_array(
        store=str(path / "counts.zarr"), shape=(n, g), chunks=(min(BLOCK[0], n), min(BLOCK[1], g)), dtype="int32"
    )
    cond = (obs["condition"] == "B").to_numpy(float)
    batch = obs["batch"].cat.codes.to_numpy()
    for r in range(0, n, BLOCK[0]):
        rows = slice(r, min(r + BLOCK[0], n))
        for c in range(0, g, BLOCK[1]):
            cols = slice(c, min(c + BLOCK[1], g))
            rng = np.random.default_rng([seed, 1, r, c])
            log_mu = (
                np.log(par["base"][cols]) + cond[rows, None] * par["lfc"][cols] + par["batch_eff"][batch[rows], cols]
            )
            mu = par["sf"][rows, None] * np.exp(log_mu)
            alpha = par["alpha"][cols]
            arr[rows, cols] = rng.poisson(rng.gamma(1.0 / alpha, mu * alpha)).astype(np.int32)
    obs.to_csv(path / "obs.csv")
    return time.perf_counter() - t0


def _store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ----------------------------------------------------------------------------------------------------------------
# one measured run (a fresh process)
# ----------------------------------------------------------------------------------------------------------------
def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(store: Path, backend: str, out: Path) -> None:
    import dask.array as da
    from anndata import AnnData

    import gendex as gdx

    obs = pd.read_csv(store / "obs.csv", index_col=0)
    for col in ("condition", "batch"):
        obs[col] = pd.Categorical(obs[col])
    x = da.from_zarr(str(store / "counts.zarr"))
    client = cluster = None
    if backend == "memory":
        x = np.asarray(x.compute(scheduler="threads"))
    elif backend == "cluster":
        import distributed

        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
        )
        client = distributed.Client(cluster)
    var = pd.DataFrame(index=[f"g{j}" for j in range(x.shape[1])])
    adata = AnnData(X=x, obs=obs, var=var)
    rss_loaded = _peak_mb()
    t0 = time.perf_counter()
    adata.obs["size_factors"] = gdx.stats.size_factors_ratio(adata.X)
    t_sf = time.perf_counter() - t0
    t0 = time.perf_counter()
    gdx.tl.deseq2(adata, layer=None, design="~condition + batch", contrast=["condition", "B", "A"])
    t_de = time.perf_counter() - t0
    res = adata.varm["deseq2"]
    np.savez(
        out,
        size_factors=adata.obs["size_factors"].to_numpy(),
        fit_size_factors=np.asarray(adata.uns["deseq2"]["size_factors"]),
        **{c: res[c].to_numpy(dtype=np.float64) for c in COLUMNS},
    )
    report = {
        "wall_sf": t_sf,
        "wall_deseq2": t_de,
        "peak_mb": _peak_mb(),
        "peak_mb_after_load": rss_loaded,
        "n_sig": int((res["padj"] < 0.05).sum()),
        "n_refitted": int(adata.uns["deseq2"].get("n_refitted", 0)),
    }
    if client is not None:
        peaks = client.run(_peak_mb)
        report["worker_peak_mb"] = sorted(peaks.values())
        client.close()
        cluster.close()
    print("RESULT " + json.dumps(report), flush=True)


def _run_child(store: Path, backend: str, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "agg"}
    cmd = [sys.executable, __file__, "--child", backend, "--store", str(store), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{backend} run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    report = json.loads(line[len("RESULT ") :])
    report["wall_process"] = wall
    return report


def _compare(a: Path, b: Path) -> str:
    ra, rb = np.load(a), np.load(b)
    worst = 0.0
    for key in ra.files:
        x, y = ra[key], rb[key]
        if np.array_equal(x, y, equal_nan=True):
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.nanmax(np.abs(x - y) / np.maximum(np.abs(x), 1e-300))
        worst = max(worst, float(rel))
    return "identical (every value, bit for bit)" if worst == 0 else f"max relative difference {worst:.2e}"


# ----------------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        default="10000x20000:memory+dask+cluster,50000x20000:dask",
        help="samples x genes[:backend+backend...], comma-separated (backends: memory, dask, cluster)",
    )
    ap.add_argument("--quick", action="store_true", help="one small size (2000 x 2000), every backend")
    ap.add_argument("--workdir", default=None, help="where the stores go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the stores")
    ap.add_argument("--table", action="store_true", help="only remake scale.md from scale_rows.jsonl")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--store", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.store), args.child, Path(args.out))
        return
    if args.table:
        _table()
        return

    spec = "2000x2000:memory+dask+cluster" if args.quick else args.sizes
    sizes = []
    for item in spec.split(","):
        shape, _, names = item.partition(":")
        n, g = (int(v) for v in shape.split("x"))
        sizes.append((n, g, names.split("+") if names else ["dask"]))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gendex_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n, g, backends in sizes:
            need = n * g * 4
            free = shutil.disk_usage(work).free
            if free < 2 * need:
                print(f"skipping {n} x {g}: {free / 1e9:.1f} GB free in {work}, the raw counts are {need / 1e9:.1f} GB")
                continue
            store = work / f"counts_{n}x{g}"
            store.mkdir(exist_ok=True)
            t_sim = simulate_store(store, n, g)
            disk = _store_bytes(store)
            print(f"{n} x {g}: simulated in {t_sim:.0f} s, {disk / 1e9:.2f} GB on disk ({need / 1e9:.2f} GB raw int32)")
            outs = {}
            for backend in backends:
                load = os.getloadavg()[0]
                outs[backend] = work / f"res_{n}x{g}_{backend}.npz"
                rep = _run_child(store, backend, outs[backend])
                rep.update(
                    size=f"{n:,} x {g:,}",
                    backend=backend,
                    load_start=load,
                    load_end=os.getloadavg()[0],
                    disk=disk,
                    command=" ".join(sys.argv[1:]),
                )
                if backend != "memory" and "memory" in outs:
                    rep["equal"] = _compare(outs["memory"], outs[backend])
                    mem = next(r for r in rows if r["size"] == rep["size"] and r["backend"] == "memory")
                    rep["ratio"] = rep["wall_deseq2"] / mem["wall_deseq2"]
                print(json.dumps(rep), flush=True)
                rows.append(rep)
            if not args.keep:
                shutil.rmtree(store)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.quick:
        _write(rows, quick=True)
        return
    # runs of several invocations (e.g. the big size in parallel with the others) gather in one table
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "scale_rows.jsonl").open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    _table()


def _table() -> None:
    lines = (RESULTS / "scale_rows.jsonl").read_text().splitlines()
    _write([json.loads(line) for line in lines if line.strip()], quick=False)


def _write(rows: list[dict], *, quick: bool) -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    lines = [
        "# Out-of-core DESeq2: zarr counts through size factors + tl.deseq2(design='~condition + batch')",
        "",
        f"Machine: {platform.platform()}, {cpus} CPUs, {ram:.0f} GiB;"
        f" written {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/scale.py` (each row's arguments below)."
        " The machine is shared by several engineers: the load average (1 minute, at the start and end of each"
        " run) says how busy it was; compare ratios within a run.",
        "",
        "Peak memory is the peak resident set of the fresh process of each run (`ru_maxrss`): imports, the AnnData,"
        " and for `memory` the whole count matrix (int32 as loaded, plus the int64 copy `tl.deseq2` validates);"
        " `cluster` also lists each worker process's peak. Wall times exclude imports and opening the store.",
        "",
        "| samples x genes | backend | on disk GB | size factors s | tl.deseq2 s | vs memory | peak memory MB"
        " | workers' peak MB | results vs in-memory | refitted | padj<0.05 | load | arguments |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        workers = ", ".join(f"{v:.0f}" for v in r.get("worker_peak_mb", [])) or ""
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        equal = r.get("equal", "(reference)" if r["backend"] == "memory" else "not compared")
        lines.append(
            f"| {r['size']} | {r['backend']} | {r['disk'] / 1e9:.2f} | {r['wall_sf']:.1f} | {r['wall_deseq2']:.1f}"
            f" | {ratio} | {r['peak_mb']:.0f} | {workers} | {equal}"
            f" | {r['n_refitted']} | {r['n_sig']} | {r['load_start']:.1f} -> {r['load_end']:.1f}"
            f" | `{r.get('command', '')}` |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "scale.md").write_text(text)


if __name__ == "__main__":
    main()

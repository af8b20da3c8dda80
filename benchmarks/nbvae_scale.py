"""NB-VAE past one process and past memory: one epoch from a lazy zarr store, and DDP against one process.

Usage::

    python benchmarks/nbvae_scale.py [--parts scale,ddp,profile] [--samples 100000] [--genes 20000]
        [--peer-samples 10000] [--workdir /tmp] [--store PATH] [--md benchmarks/results/nbvae_scale.md]
    python benchmarks/nbvae_scale.py --child write --path PATH --samples 100000 --genes 20000  # a store only

Parts:

- ``scale``: a child process simulates ``--samples`` x ``--genes`` negative-binomial counts (int32; two
  groups, 10% of genes changed; log-normal size factors, stored in ``obs["size_factors"]``; dispersion
  ``0.05 + 1 / mean``; exact gamma-Poisson draws below a mean of 10, rounded normals with the same mean and
  variance above) block by block
  (1,000 samples x all genes per block, a dask array) into a zarr store, never holding more than a few blocks.
  A fresh child opens it with ``anndata.experimental.read_lazy`` and runs ``gdx.tl.nbvae(design="~condition",
  n_latent=2, max_epochs=1, batch_size=256)``: the blockwise count check, the initialisation on 1,000 evenly
  spaced samples, one epoch of minibatches read in shuffled row blocks, the dispersion fit and the latent codes
  of all samples. It reports the wall time of each phase, its peak resident memory (the kernel's high-water
  mark ``VmHWM``) and the peak of each stage (:class:`StagePeaks`). The peer, in the same run: the first
  ``--peer-samples`` samples trained the same way from the store and from memory (the counts loaded into the
  process). The store is deleted at the end; with ``--store`` an existing one is used and kept.
- ``profile``: the stage profile of the lazy child on the first ``--peer-samples`` samples of ``--store``.
- ``ddp``: ``simulate_counts`` 200 samples x 2,000 genes, ``tl.nbvae(design="~condition", n_latent=1)``, full
  batch, 300 epochs without early stopping: one process (seeds 0 and 1) and Lightning's DDP on CPU
  (``strategy="ddp_spawn"``, ``devices=2``, gloo), then ``tl.generative_de`` B vs A. Measures: the mean
  negative log-likelihood per sample of the counts at the latent posterior means (reconstruction), the
  correlation of the log2 fold changes with the one-process model (seed 0) and with the truth, wall time.
  DDP should agree with one process as closely as two seeds of one process do.

Figures, never timed tests.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import shutil
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

BLOCK = 1000


#: Below this mean a count is an exact gamma-Poisson (negative-binomial) draw; above it a rounded normal with the
#: negative binomial's mean and variance (three times faster to simulate, and as good for these means).
EXACT_BELOW = 10.0


def _simulate_block(block_id, n_genes, seed, base, lfc, sf):
    """Counts of one block of samples (rows), int32, from its own seeded generator (see ``EXACT_BELOW``)."""
    i = int(block_id)
    rng = np.random.default_rng([seed, i])
    rows = np.arange(i * BLOCK, min((i + 1) * BLOCK, len(sf)))
    group_b = (rows % 2 == 1)[:, None]
    mu = (sf[rows, None] * base[None, :] * np.where(group_b, 2.0 ** lfc[None, :], 1.0)).astype(np.float32)
    alpha = (0.05 + 1.0 / base).astype(np.float32)
    sd = np.sqrt(mu + alpha * mu * mu)
    counts = np.rint(np.maximum(mu + sd * rng.standard_normal(mu.shape, dtype=np.float32), 0.0)).astype(np.int32)
    low = mu < EXACT_BELOW
    shape = np.broadcast_to(1.0 / alpha, mu.shape)[low]
    counts[low] = rng.poisson(rng.standard_gamma(shape) * (mu[low] / shape)).astype(np.int32)
    return counts


def write_store(path: str, n: int, g: int, seed: int = 0) -> dict:
    """Simulate ``n`` x ``g`` counts into a zarr store through a dask array, block by block."""
    import anndata
    import dask
    import dask.array as da

    rng = np.random.default_rng(seed)
    base = np.exp(rng.normal(np.log(150.0), 1.8, g)).clip(0.05, 1e5)
    lfc = np.where(rng.random(g) < 0.1, rng.choice([-1.0, 1.0], g) * (0.5 + rng.exponential(0.8, g)), 0.0)
    sf = np.exp(rng.normal(0.0, 0.25, n))
    sf /= np.exp(np.mean(np.log(sf)))
    n_blocks = int(np.ceil(n / BLOCK))
    blocks = [
        da.from_delayed(
            dask.delayed(_simulate_block)(b, g, seed, base, lfc, sf),
            shape=(min(BLOCK, n - b * BLOCK), g),
            dtype=np.int32,
        )
        for b in range(n_blocks)
    ]
    x = da.concatenate(blocks, axis=0).rechunk((BLOCK, g))
    obs = pd.DataFrame(
        {"condition": pd.Categorical(np.where(np.arange(n) % 2 == 1, "B", "A")), "size_factors": sf},
        index=[f"s{i}" for i in range(n)],
    )
    var = pd.DataFrame({"true_log2fc": lfc}, index=[f"g{j}" for j in range(g)])
    t0 = time.perf_counter()
    with warnings.catch_warnings(), dask.config.set(scheduler="threads", num_workers=2):
        warnings.simplefilter("ignore")
        anndata.AnnData(X=x, obs=obs, var=var).write_zarr(path)
    return {"write_s": time.perf_counter() - t0, "peak_rss_gb": _peak_rss_gb()}


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def _status_gb(field: str) -> float:
    """A memory line of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in GiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    raise KeyError(field)


class StagePeaks:
    """Resident-memory high-water mark of each stage of ``tl.nbvae``, by wrapping the functions that run it.

    Entering a stage records the resident set and resets the kernel's high-water mark (``VmHWM``, by writing 5
    to ``/proc/self/clear_refs``); leaving it reads the mark. Stages nest (``fit_dispersions/latent codes``):
    an outer stage's peak is the largest mark read while it ran. Each stage appears once per call path, with
    its calls counted and its largest peak kept. The reset resets ``ru_maxrss`` too, so the peak of the process
    is :meth:`peak`: the largest mark read, the one before the first reset included.
    """

    def __init__(self) -> None:
        self.stack: list[list] = []  # [path, running peak]
        self.rows: dict[str, dict] = {}
        self.top = _status_gb("VmHWM")
        try:
            self._reset()
            self.resettable = True
        except OSError:
            self.resettable = False

    @staticmethod
    def _reset() -> None:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")

    def peak(self) -> float:
        """The peak resident memory of the process so far, GiB."""
        self._mark()
        return self.top

    def _mark(self) -> None:
        hwm = _status_gb("VmHWM")
        self.top = max(self.top, hwm)
        for entry in self.stack:
            entry[1] = max(entry[1], hwm)

    @contextmanager
    def stage(self, name: str):
        self._mark()
        path = f"{self.stack[-1][0]}/{name}" if self.stack else name
        before = _status_gb("VmRSS")
        if self.resettable:
            self._reset()
        entry = [path, before]
        self.stack.append(entry)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._mark()
            self.stack.pop()
            row = self.rows.setdefault(path, {"stage": path, "calls": 0, "rss_before_gb": before, "peak_gb": 0.0})
            row["calls"] += 1
            row["peak_gb"] = max(row["peak_gb"], entry[1])
            row["rss_after_gb"] = _status_gb("VmRSS")
            row["seconds"] = row.get("seconds", 0.0) + time.perf_counter() - t0

    def wrap(self, owner: object, attr: str, name: str) -> None:
        """Replace ``owner.attr`` (a function, method or classmethod) by one that runs as stage ``name``."""
        raw = vars(owner)[attr] if isinstance(owner, type) else getattr(owner, attr)
        func = raw.__func__ if isinstance(raw, classmethod) else raw

        @functools.wraps(func)
        def staged(*args, **kwargs):
            with self.stage(name):
                return func(*args, **kwargs)

        setattr(owner, attr, classmethod(staged) if isinstance(raw, classmethod) else staged)

    def table(self) -> list[dict]:
        return list(self.rows.values())


def staged_nbvae() -> StagePeaks:
    """Wrap the stages of ``tl.nbvae`` (see :class:`StagePeaks`)."""
    from scvi.model.base import UnsupervisedTrainingMixin

    from gendex.model import NBVAE, _data, _init

    prof = StagePeaks()
    prof.wrap(_data, "scan_counts", "count check")
    prof.wrap(NBVAE, "setup_anndata", "setup_anndata")
    prof.wrap(_init, "initial_parameters_from_manager", "start")
    prof.wrap(_init, "initial_parameters", "fits")
    prof.wrap(UnsupervisedTrainingMixin, "train", "epoch")
    prof.wrap(NBVAE, "_refresh_orthogonalisation", "orthogonalisation refresh")
    prof.wrap(NBVAE, "_adjust_for_confounding", "confounding")
    prof.wrap(NBVAE, "fit_dispersions", "dispersion fit")
    prof.wrap(NBVAE, "get_latent_representation", "latent codes")
    return prof


def train_from_store(path: str, n_obs: int | None, *, in_memory: bool) -> dict:
    """One minibatch epoch of ``tl.nbvae`` from the store (or from memory), phases timed, peak RSS."""
    import anndata
    import torch
    from lightning.pytorch import Callback

    import gendex as gdx

    torch.set_num_threads(2)

    class Timer(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.epoch_s = time.perf_counter() - self.t0

        def on_fit_start(self, trainer, pl_module):
            self.fit0 = time.perf_counter()

        def on_fit_end(self, trainer, pl_module):
            self.fit_s = time.perf_counter() - self.fit0

    t0 = time.perf_counter()
    lazy = anndata.experimental.read_lazy(path)
    n_obs = lazy.n_obs if n_obs is None else n_obs
    x = lazy.X[:n_obs]
    adata = anndata.AnnData(
        X=x.compute() if in_memory else x, obs=lazy.obs.to_memory().iloc[:n_obs], var=lazy.var.to_memory()
    )
    load_s = time.perf_counter() - t0
    timer = Timer()
    prof = staged_nbvae()
    baseline = _status_gb("VmRSS")
    t1 = time.perf_counter()
    with warnings.catch_warnings(), prof.stage("tl.nbvae"):
        warnings.simplefilter("ignore")
        gdx.tl.nbvae(
            adata,
            layer=None,
            design="~condition",
            n_latent=2,
            max_epochs=1,
            batch_size=256,
            early_stopping=False,
            accelerator="cpu",
            train_kwargs={"callbacks": [timer]},
        )
    total = time.perf_counter() - t1
    lfc = adata.var["true_log2fc"].to_numpy()
    return {
        "samples": int(adata.n_obs),
        "genes": int(adata.n_vars),
        "backend": "in memory (int32)" if in_memory else "lazy zarr (read_lazy)",
        "load_s": load_s,
        "nbvae_s": total,
        "fit_s": timer.fit_s,
        "epoch_s": timer.epoch_s,
        "peak_rss_gb": prof.peak(),
        "de_genes": int((lfc != 0).sum()),
        "rss_before_nbvae_gb": baseline,
        "stages": prof.table(),
    }


def _child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False, env=_child_env()
    )
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child_env() -> dict:
    import os

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def part_scale(n: int, g: int, peer: int, workdir: Path, store: Path | None = None) -> pd.DataFrame:
    """The peers and the large run; ``store``: an existing store of ``n`` x ``g`` counts, reused and kept."""
    keep = store is not None
    store = store if keep else workdir / f"nbvae_scale_{n}x{g}.zarr"
    rows = []
    try:
        if keep:
            w = {"write_s": float("nan")}
        else:
            shutil.rmtree(store, ignore_errors=True)
            w = _child(["--child", "write", "--path", str(store), "--samples", str(n), "--genes", str(g)])
            print(f"store written in {w['write_s']:.0f} s (peak RSS {w['peak_rss_gb']:.2f} GB)")
        disk_gb = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**30
        for n_obs, mem in ((peer, True), (peer, False), (n, False)):
            r = _child(
                ["--child", "train", "--path", str(store), "--n-obs", str(n_obs)] + (["--memory"] if mem else [])
            )
            print({k: v for k, v in r.items() if k != "stages"}, flush=True)
            print(stage_table(r).to_string(index=False), flush=True)
            rows.append(r)
    finally:
        if not keep:
            shutil.rmtree(store, ignore_errors=True)
    df = pd.DataFrame(rows)
    df.attrs["store"] = {"write_s": w["write_s"], "disk_gb": disk_gb, "raw_gb": n * g * 4 / 2**30}
    ref = df.iloc[0]
    df["epoch_vs_in_memory"] = df["epoch_s"] / ref["epoch_s"] * ref["samples"] / df["samples"]
    return df


def stage_table(row: dict) -> pd.DataFrame:
    """The per-stage memory profile of one training child (see :class:`StagePeaks`), GiB and seconds."""
    df = pd.DataFrame(row["stages"])
    df["peak_over_before_gb"] = df["peak_gb"] - df["rss_before_gb"]
    cols = ["stage", "calls", "rss_before_gb", "peak_gb", "peak_over_before_gb", "rss_after_gb", "seconds"]
    return df[cols].round(3)


def reconstruction_nll(model, adata) -> float:
    from scipy import stats

    x = adata.layers["counts"]
    mu = model.get_decoded_means() * adata.obs["size_factors"].to_numpy()[:, None]
    size = np.exp(-model.module.log_disp.detach().double().numpy())
    return float(-stats.nbinom.logpmf(x, size, size / (size + mu)).sum(1).mean())


def part_ddp() -> pd.DataFrame:
    import torch

    import gendex as gdx

    torch.set_num_threads(1)
    adata = gdx.datasets.simulate_counts(n_samples=200, n_genes=2000, random_state=11)
    gdx.pp.size_factors(adata)
    truth = adata.var["true_log2fc"].to_numpy()
    kw = {"design": "~condition", "n_latent": 1, "max_epochs": 300, "early_stopping": False, "accelerator": "cpu"}
    runs = {
        "1 process, seed 0": {},
        "1 process, seed 1": {"random_state": 1},
        "DDP 2 processes (ddp_spawn, gloo), seed 0": {"devices": 2, "train_kwargs": {"strategy": "ddp_spawn"}},
    }
    rows, ref = [], None
    for name, extra in runs.items():
        a = adata.copy()
        t0 = time.perf_counter()
        model = gdx.tl.nbvae(a, **kw, **extra)
        wall = time.perf_counter() - t0
        gdx.tl.generative_de(a, model, contrast=["condition", "B", "A"])
        lfc = a.varm["nbvae_de"]["log2FoldChange"].to_numpy()
        ref = lfc if ref is None else ref
        rows.append(
            {
                "run": name,
                "train_s": wall,
                "epochs": len(a.uns["X_nbvae"]["history"]),
                "recon_nll_per_sample": reconstruction_nll(model, a),
                "lfc_corr_vs_1proc_seed0": float(np.corrcoef(ref, lfc)[0, 1]),
                "lfc_corr_vs_truth": float(np.corrcoef(truth, lfc)[0, 1]),
                "is_de_calls": int(a.varm["nbvae_de"]["is_de"].sum()),
            }
        )
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    df["nll_diff_vs_1proc_seed0"] = df["recon_nll_per_sample"] - df["recon_nll_per_sample"].iloc[0]
    return df


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="scale,ddp")
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--peer-samples", type=int, default=10_000)
    p.add_argument("--workdir", default="/tmp")
    p.add_argument("--md", default=None)
    p.add_argument("--store", default=None, help="an existing store to reuse (kept); default: simulate one")
    p.add_argument("--child", choices=["write", "train"], default=None)
    p.add_argument("--path")
    p.add_argument("--n-obs", type=int, default=None)
    p.add_argument("--memory", action="store_true")
    a = p.parse_args()
    if a.child == "write":
        print(json.dumps(write_store(a.path, a.samples, a.genes)))
        return
    if a.child == "train":
        print(json.dumps(train_from_store(a.path, a.n_obs, in_memory=a.memory)))
        return
    parts = a.parts.split(",")
    md = ["# NB-VAE at scale: one epoch from a lazy store, and DDP against one process", ""]
    md.append(f"`python benchmarks/nbvae_scale.py --parts {a.parts} --samples {a.samples} --genes {a.genes}`")
    md.append("(2-core machine shared with other jobs; `OMP_NUM_THREADS=2` in the children).")
    store = None if a.store is None else Path(a.store)
    if "profile" in parts:  # the stage profile of one lazy child on an existing store
        if store is None:
            raise SystemExit("--parts profile needs --store (write one with --child write --path P)")
        r = _child(["--child", "train", "--path", str(store), "--n-obs", str(a.peer_samples)])
        print({k: v for k, v in r.items() if k != "stages"})
        print(stage_table(r).to_string(index=False))
    if "scale" in parts:
        df = part_scale(a.samples, a.genes, a.peer_samples, Path(a.workdir), store)
        st = df.attrs["store"]
        md += [
            "",
            "## One epoch from a lazy zarr store",
            "",
            f"Store: {a.samples:,} x {a.genes:,} int32 ({st['raw_gb']:.1f} GB raw, {st['disk_gb']:.2f} GB "
            + (
                f"compressed zarr, written block by block in {st['write_s']:.0f} s). "
                if np.isfinite(st["write_s"])
                else f"compressed zarr, the existing store {a.store}). "
            )
            + "`tl.nbvae` = count check + "
            "initialisation + 1 epoch (batch 256) + dispersion fit + latent codes; `epoch_vs_in_memory` = "
            "seconds per sample per epoch against the in-memory peer of the first row.",
            "",
            df.drop(columns="stages").round(3).to_markdown(index=False),
        ]
        for _, row in df.iterrows():
            md += ["", f"Stages, {row['samples']:,} samples, {row['backend']}:", ""]
            md.append(stage_table(row.to_dict()).to_markdown(index=False))
        print(df.drop(columns="stages").round(3).to_string())
    if "ddp" in parts:
        df = part_ddp()
        md += [
            "",
            "## DDP (2 CPU processes, gloo) against one process",
            "",
            "`simulate_counts` 200 x 2,000, `design='~condition'`, `n_latent=1`, full batch, 300 epochs; "
            "`recon_nll_per_sample` = mean negative log-likelihood per sample at the latent posterior means.",
            "",
            df.round(6).to_markdown(index=False),
        ]
        print(df.round(6).to_string())
    if a.md:
        Path(a.md).write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()

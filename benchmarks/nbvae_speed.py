"""NB-VAE speed beside ``gdx.tl.deseq2`` and scvi-tools' SCVI on the same data, and minibatch training at scale.

Usage::

    python benchmarks/nbvae_speed.py [--parts gse60450,sim100] [--shared ../shared] [--threads 2]
        [--modes conditional,unsupervised] [--md benchmarks/results/nbvae_speed.md]
        [--scale-samples 10000] [--scale-genes 18000] [--scale-epochs 3]

Parts (``scale`` only when asked):

- ``gse60450``: 12 samples (``filter_genes(min_total_count=10)``, ``size_factors``), design ``~celltype +
  status``, contrast luminal vs basal;
- ``sim100``: ``simulate_counts`` 100 samples x 20,000 genes (50 vs 50; ``--sim-samples``, ``--sim-genes``),
  design ``~condition``;
- ``scale``: ``simulate_counts`` ``--scale-samples`` x ``--scale-genes`` written to an h5ad by a child process;
  a fresh child reads it and trains ``--scale-epochs`` minibatch epochs (batch 256), reporting the epoch time
  and the peak resident memory of that process (``ru_maxrss``, which includes the int64 counts).

For ``gse60450`` and ``sim100``, in one run on the same AnnData: ``gdx.tl.deseq2`` (the design above, the
batched engine), then for each mode ``gdx.tl.nbvae`` with its defaults (``conditional``: ``design=`` the same
design, on a version without ``design`` its factors as ``categorical_covariate_keys``; ``unsupervised``: no
labels) and ``gdx.tl.generative_de`` for the contrast, then ``scvi.model.SCVI`` with the same size factors,
latent size, covariates, full batch (as ours up to 512 samples) and as many epochs (Adam lr 1e-2, eps 1e-8, no
early stopping). Epoch times come from one Lightning callback timing every training epoch of both models (the
median is reported). Ratios are against ``tl.deseq2`` (training + generative DE) and against SCVI (per epoch).
Before any timing, ``tl.deseq2``, ``tl.nbvae`` and ``tl.generative_de`` run once on a tiny simulated data set,
so that one-off costs (imports of scvi-tools and Lightning, first calls) count for no method, and
``tl.deseq2`` runs once untimed on each data set (its just-in-time kernels are compiled for that data's shapes
by then). Then ``tl.deseq2`` and each NB-VAE mode run ``--repeats`` times (3), and the median run is reported
(``runs_total_s``: the range of the runs' wall times): on a shared machine one run of a few seconds moves by
a quarter from one run to the next. Each time is
given as wall time and as CPU time of the process (``*_cpu_s``; with one torch thread the two agree on an idle
machine, and CPU time is the steadier one on a busy machine); the load average before each part is printed.
Figures, never timed tests.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def epoch_timer():
    """A Lightning callback recording the wall time of every training epoch."""
    from lightning.pytorch import Callback

    class EpochTimer(Callback):
        def __init__(self):
            self.times: list[float] = []
            self._t0 = 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            self._t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.times.append(time.perf_counter() - self._t0)

    return EpochTimer()


def load(part: str, shared: Path, sim_shape: tuple[int, int] = (100, 20_000)):
    import gendex as gdx

    if part == "gse60450":
        adata = gdx.datasets.gse60450(shared / "data" / "gse60450")
        gdx.pp.filter_genes(adata, min_total_count=10)
        design, contrast = "~celltype + status", ["celltype", "luminal", "basal"]
    elif part == "sim100":
        adata = gdx.datasets.simulate_counts(n_samples=sim_shape[0], n_genes=sim_shape[1], random_state=0)
        design, contrast = "~condition", ["condition", "B", "A"]
    else:
        raise ValueError(f"unknown part {part!r}")
    gdx.pp.size_factors(adata)
    return adata, design, contrast


def factors(design: str) -> list[str]:
    return [t.strip() for t in design.lstrip("~").split("+") if t.strip()]


def time_nbvae(adata, mode: str, design: str, contrast: list[str], accelerator: str) -> dict:
    import gendex as gdx

    timer = epoch_timer()
    kw = {"accelerator": accelerator, "enable_progress_bar": False, "train_kwargs": {"callbacks": [timer]}}
    if mode == "conditional":
        if "design" in inspect.signature(gdx.tl.nbvae).parameters:
            kw["design"] = design
        else:
            kw["categorical_covariate_keys"] = factors(design)
    t0, c0 = time.perf_counter(), time.process_time()
    model = gdx.tl.nbvae(adata, **kw)
    t1, c1 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the separation warning, if any
        if "contrast" in inspect.signature(gdx.tl.generative_de).parameters:
            gdx.tl.generative_de(adata, model, contrast=contrast)
        else:
            gdx.tl.generative_de(adata, model, groupby=contrast[0], group1=contrast[1], group2=contrast[2])
    t2, c2 = time.perf_counter(), time.process_time()
    params = adata.uns["X_nbvae"]["params"]
    return {
        "train_s": t1 - t0,
        "de_s": t2 - t1,
        "total_s": t2 - t0,
        "total_cpu_s": c2 - c0,
        "train_cpu_s": c1 - c0,
        "epochs": len(timer.times),
        "n_latent": int(params["n_latent"]),
        "s_per_epoch": float(np.median(timer.times)),
        "gradient_phase_s": float(np.sum(timer.times)),
    }


def time_scvi(adata, covariates: list[str], n_latent: int, epochs: int, accelerator: str) -> dict:
    import scvi

    timer = epoch_timer()
    ref = adata.copy()
    scvi.model.SCVI.setup_anndata(
        ref, layer="counts", size_factor_key="size_factors", categorical_covariate_keys=covariates or None
    )
    model = scvi.model.SCVI(ref, n_latent=n_latent, gene_likelihood="nb")
    t0 = time.perf_counter()
    model.train(
        max_epochs=epochs,
        accelerator=accelerator,
        train_size=1.0,
        batch_size=min(ref.n_obs, 512),
        plan_kwargs={"lr": 1e-2, "eps": 1e-8},
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[timer],
    )
    wall = time.perf_counter() - t0
    return {"train_s": wall, "epochs": len(timer.times), "s_per_epoch": float(np.median(timer.times))}


def compare(
    part: str, shared: Path, modes: list[str], accelerator: str, sim_shape: tuple[int, int], repeats: int = 3
) -> list[dict]:
    import gendex as gdx

    adata, design, contrast = load(part, shared, sim_shape)
    print(f"{part}: load average {os.getloadavg()[0]:.1f}", flush=True)
    gdx.tl.deseq2(adata, design=design, contrast=contrast)  # untimed: compiled kernels for these shapes
    runs = []
    for _ in range(repeats):  # the median of `repeats` runs, as for the NB-VAE below
        t0, c0 = time.perf_counter(), time.process_time()
        gdx.tl.deseq2(adata, design=design, contrast=contrast)
        runs.append((time.perf_counter() - t0, time.process_time() - c0))
    deseq2_s, deseq2_cpu = (float(np.median(v)) for v in zip(*runs, strict=True))
    label = f"{part} ({adata.n_obs} x {adata.n_vars})"
    rows = [
        {
            "data": label,
            "method": f"gdx.tl.deseq2 {design}",
            "total_s": deseq2_s,
            "total_cpu_s": deseq2_cpu,
            "runs_total_s": _spread([r[0] for r in runs]),
        }
    ]
    for mode in modes:
        trials = [time_nbvae(adata, mode, design, contrast, accelerator) for _ in range(repeats)]
        order = np.argsort([t["total_s"] for t in trials])
        res = dict(trials[int(order[len(order) // 2])])  # the run of median total time
        res["runs_total_s"] = _spread([t["total_s"] for t in trials])
        covs = factors(design) if mode == "conditional" else []
        ref = time_scvi(adata, covs, res["n_latent"], res["epochs"], accelerator)
        rows.append(
            {
                "data": label,
                "method": f"NB-VAE {mode} (train + generative DE)",
                **res,
                "ratio_vs_deseq2": res["total_s"] / deseq2_s,
                "cpu_ratio_vs_deseq2": res["total_cpu_s"] / deseq2_cpu,
                "scvi_s_per_epoch": ref["s_per_epoch"],
                "ratio_per_epoch_vs_scvi": res["s_per_epoch"] / ref["s_per_epoch"],
            }
        )
        rows.append(
            {
                "data": label,
                "method": f"scvi SCVI ({'covariates ' + '+'.join(covs) if covs else 'no covariates'}, same epochs)",
                "train_s": ref["train_s"],
                "epochs": ref["epochs"],
                "s_per_epoch": ref["s_per_epoch"],
            }
        )
    return rows


def _spread(values: list[float]) -> str:
    """``min-max`` of repeated timings, for the table."""
    return f"{min(values):.2f}-{max(values):.2f}"


def warm_up(accelerator: str) -> None:
    """Run every timed function once on a tiny data set: imports and first-call costs count for none of them."""
    import gendex as gdx

    adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=200, random_state=1)
    gdx.pp.size_factors(adata)
    gdx.tl.deseq2(adata, design="~condition", contrast=["condition", "B", "A"])
    for design in (None, "~condition"):
        model = gdx.tl.nbvae(adata, design=design, max_epochs=3, accelerator=accelerator, enable_progress_bar=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            gdx.tl.generative_de(adata, model, contrast=["condition", "B", "A"], n_draws=20)
    time_scvi(adata, [], 1, 2, accelerator)


def _child_train(path: str, epochs: int, accelerator: str, threads: int | None) -> None:
    """Run in a fresh process: read the h5ad, build and train the model, print JSON figures."""
    import resource

    import anndata as ad
    import scvi
    import torch

    from gendex.model import NBVAE

    if threads:
        torch.set_num_threads(threads)
    adata = ad.read_h5ad(path)
    scvi.settings.seed = 0
    t0 = time.perf_counter()
    NBVAE.setup_anndata(adata)
    model = NBVAE(adata)
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.train(
        max_epochs=epochs, early_stopping=False, fit_dispersions=False, accelerator=accelerator,
        enable_progress_bar=False,
    )  # fmt: skip
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.fit_dispersions()
    t_disp = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    out = {
        "samples": adata.n_obs,
        "genes": adata.n_vars,
        "init_s": t_init,
        "epochs": epochs,
        "s_per_epoch": t_train / epochs,
        "fit_dispersions_s": t_disp,
        "peak_rss_gib": peak,
        "device": str(model.device),
    }
    print("RESULT " + json.dumps(out), flush=True)


def scale(samples: int, genes: int, epochs: int, accelerator: str, threads: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "sim.h5ad")
        make = (
            "import gendex as gdx; a = gdx.datasets.simulate_counts("
            f"n_samples={samples}, n_genes={genes}, random_state=0); gdx.pp.size_factors(a); "
            f"a.X = None; a.write_h5ad({path!r})"
        )
        subprocess.run([sys.executable, "-c", make], check=True)
        cmd = [sys.executable, __file__, "--child", path, "--scale-epochs", str(epochs), "--accelerator", accelerator]
        if threads:
            cmd += ["--threads", str(threads)]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        return json.loads(line[len("RESULT ") :])


def markdown(table: pd.DataFrame) -> str:
    cols = [c for c in table.columns if table[c].notna().any()]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table[cols].iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if pd.isna(v):
                cells.append("")
            elif c in ("epochs", "n_latent"):
                cells.append(str(int(v)))
            elif isinstance(v, float):
                cells.append(f"{v * 1000:.1f} ms" if c.endswith("per_epoch") else f"{v:.2f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="gse60450,sim100")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    parser.add_argument("--modes", default="conditional,unsupervised")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--md", default=None, help="write the table as markdown here")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed runs of tl.deseq2 and of each NB-VAE mode (the median is reported)",
    )
    parser.add_argument("--sim-samples", type=int, default=100, help="samples of the sim100 part")
    parser.add_argument("--sim-genes", type=int, default=20_000, help="genes of the sim100 part")
    parser.add_argument("--scale-samples", type=int, default=10_000)
    parser.add_argument("--scale-genes", type=int, default=18_000)
    parser.add_argument("--scale-epochs", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child_train(args.child, args.scale_epochs, args.accelerator, args.threads)
        return
    import torch

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    rows = []
    if [p for p in parts if p != "scale"]:
        warm_up(args.accelerator)
    for part in [p for p in parts if p != "scale"]:
        rows += compare(
            part,
            args.shared,
            args.modes.split(","),
            args.accelerator,
            (args.sim_samples, args.sim_genes),
            repeats=args.repeats,
        )
        print(pd.DataFrame(rows).round(3).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    text = markdown(table) if rows else ""
    if "scale" in parts:
        res = scale(args.scale_samples, args.scale_genes, args.scale_epochs, args.accelerator, args.threads)
        text += (
            f"\nMinibatch training, simulate_counts {res['samples']} x {res['genes']} (batch 256, "
            f"{res['epochs']} epochs): {res['s_per_epoch']:.1f} s/epoch, peak memory {res['peak_rss_gib']:.2f} GiB\n"
        )
    print("\n" + text)
    if args.md:
        Path(args.md).write_text(text)


if __name__ == "__main__":
    main()

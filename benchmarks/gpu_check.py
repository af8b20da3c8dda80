"""GPU paths in one prepared run (issue #15 item 4): the DESeq2 engine on CUDA and NB-VAE training on a GPU.

Usage, on a machine where torch sees a CUDA device (about 6-9 minutes on one H200 with 16 CPU cores)::

    python benchmarks/gpu_check.py                      # everything, results in benchmarks/results/gpu.md
    python benchmarks/gpu_check.py --out $OUT --quick   # 1,000 x 18,000 engine only + the gpu tests

What it measures:

* the engine (``stats.deseq2_fit`` + ``stats.deseq2_wald``, ``~condition``) on ``simulate_counts`` 1,000 x 18,000
  and 10,000 x 20,000: wall seconds on the CPU (numpy, the default), on the CPU through torch (``device="torch"``,
  the algorithm CUDA runs) and on ``device="cuda"``, and the largest relative differences of the dispersions and
  coefficients (genes with baseMean > 10) and of the log2 fold changes and p-values, CUDA against both CPU runs.
  CUDA and torch-on-CPU run the same float64 operations, so they agree to rounding (target 1e-8); the numpy
  default uses compiled line searches from 40 samples on, which stop ~1% of genes one Armijo step apart;
* ``tl.nbvae(design="~condition", n_latent=2, batch_size=256)`` on 10,000 x 18,000: seconds per epoch on the GPU
  (3 epochs, the first one apart: it holds CUDA's start-up) and on the CPU (1 epoch);
* ``pytest -m gpu tests/test_gpu.py``.

Each part runs in a fresh child process with a time limit; a part that fails or runs out of time is a row that says
so, and the others still run. The machine's facts (GPU, torch, CPU count) head the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def engine(n_samples: int, n_genes: int, *, torch_cpu: bool) -> dict:
    import numpy as np

    import gendex as gdx
    from gendex.stats import deseq2_fit, deseq2_wald

    t0 = time.perf_counter()
    ad = gdx.datasets.simulate_counts(n_samples=n_samples, n_genes=n_genes, n_groups=2, random_state=0)
    counts = np.asarray(ad.layers["counts"])
    counts = counts.astype(np.int32) if counts.max() < 2**31 else counts
    cond = ad.obs["condition"].to_numpy()
    design = np.column_stack([np.ones(n_samples), (cond == ad.obs["condition"].cat.categories[1]).astype(float)])
    sim_s = time.perf_counter() - t0

    def run(device: str) -> tuple[float, object, object]:
        deseq2_wald(deseq2_fit(counts[:, :50], design, device=device), 1)  # warm-up: compile / CUDA context
        _sync()
        t = time.perf_counter()
        fit = deseq2_fit(counts, design, device=device)
        res = deseq2_wald(fit, 1)
        _sync()
        return time.perf_counter() - t, fit, res

    def rel(a, b, mask=None) -> float:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if mask is not None:
            a, b = a[mask], b[mask]
        ok = np.isfinite(a) & np.isfinite(b)
        return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-300))) if ok.any() else float("nan")

    out: dict = {"samples": n_samples, "genes": n_genes, "simulate_s": sim_s}
    out["cpu_s"], fit_np, res_np = run("cpu")
    out["cuda_s"], fit_cu, res_cu = run("cuda")
    big = fit_np.base_mean > 10
    refs = [("numpy", fit_np, res_np)]
    if torch_cpu:
        out["torch_cpu_s"], fit_tc, res_tc = run("torch")
        refs.insert(0, ("torch_cpu", fit_tc, res_tc))
    for name, fit, res in refs:
        out[f"disp_vs_{name}"] = rel(fit_cu.dispersions, fit.dispersions, big)
        out[f"beta_vs_{name}"] = rel(fit_cu.beta[:, 1], fit.beta[:, 1], big & (np.abs(fit.beta[:, 1]) > 1e-3))
        out[f"lfc_vs_{name}"] = rel(res_cu["log2FoldChange"], res["log2FoldChange"], big)
        out[f"pvalue_vs_{name}"] = rel(res_cu["pvalue"], res["pvalue"], big & (res["pvalue"].to_numpy() > 1e-300))
        out[f"na_agree_vs_{name}"] = bool((res_cu["padj"].isna() == res["padj"].isna()).all())
        out[f"calls_agree_vs_{name}"] = float(((res_cu["padj"] < 0.05) == (res["padj"] < 0.05)).mean())
    out["speedup_vs_cpu"] = out["cpu_s"] / out["cuda_s"]
    return out


def nbvae(n_samples: int, n_genes: int, accelerator: str, epochs: int) -> dict:
    import warnings

    from lightning.pytorch import Callback

    import gendex as gdx

    class Timer(Callback):
        def __init__(self):
            self.epoch_s: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module):
            _sync()
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            _sync()
            self.epoch_s.append(time.perf_counter() - self.t0)

    ad = gdx.datasets.simulate_counts(n_samples=n_samples, n_genes=n_genes, n_groups=2, random_state=0)
    gdx.pp.size_factors(ad)
    timer = Timer()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gdx.tl.nbvae(
            ad,
            design="~condition",
            n_latent=2,
            max_epochs=epochs,
            batch_size=256,
            early_stopping=False,
            accelerator=accelerator,
            enable_progress_bar=False,
            train_kwargs={"callbacks": [timer]},
        )
    steady = timer.epoch_s[1:] or timer.epoch_s
    return {
        "samples": n_samples,
        "genes": n_genes,
        "accelerator": accelerator,
        "epochs": len(timer.epoch_s),
        "first_epoch_s": timer.epoch_s[0],
        "s_per_epoch": sum(steady) / len(steady),
        "nbvae_s": time.perf_counter() - t0,
    }


def _child(part: str, kwargs: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", part, "--kwargs", json.dumps(kwargs)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"part": part, **kwargs, "error": f"stopped after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"part": part, **kwargs, "error": " | ".join(tail)[:300]}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["part"], row["child_s"] = part, time.perf_counter() - t0
    return row


def _facts() -> dict:
    import torch

    facts = {"torch": torch.__version__, "cuda": torch.version.cuda, "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if (abs(v) < 1e-2 and v != 0) else f"{v:.2f}"
    return str(v)


def _table(rows: list[dict]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for gpu.md and gpu.json")
    parser.add_argument("--quick", action="store_true", help="1,000 x 18,000 engine and the gpu tests only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fn = {"engine": engine, "nbvae": nbvae}[args.child]
        print(json.dumps(fn(**json.loads(args.kwargs))))
        return

    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_check: torch sees no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine")
    t_start = time.perf_counter()
    facts = _facts()
    engine_rows = [_child("engine", {"n_samples": 1000, "n_genes": 18000, "torch_cpu": True}, 150)]
    nbvae_rows: list[dict] = []
    if not args.quick:
        engine_rows.append(_child("engine", {"n_samples": 10000, "n_genes": 20000, "torch_cpu": False}, 200))
        for acc, epochs, limit in (("gpu", 3, 110), ("cpu", 1, 150)):
            nbvae_rows.append(
                _child("nbvae", {"n_samples": 10000, "n_genes": 18000, "accelerator": acc, "epochs": epochs}, limit)
            )
        ok = [r for r in nbvae_rows if "s_per_epoch" in r]
        if len(ok) == 2:
            nbvae_rows[0]["cpu_over_gpu"] = ok[1]["s_per_epoch"] / ok[0]["s_per_epoch"]
    t0 = time.perf_counter()
    tests = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "gpu",
            "-p",
            "no:cacheprovider",
            str(ROOT / "tests" / "test_gpu.py"),
        ],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
        cwd=ROOT,
    )
    test_line = (tests.stdout.strip().splitlines() or ["(no output)"])[-1]
    text = [
        "# GPU paths (issue #15 item 4)",
        "",
        f"`python benchmarks/gpu_check.py{' --quick' if args.quick else ''}`; machine: {facts}; "
        f"whole run {time.perf_counter() - t_start:.0f} s.",
        "",
        "## DESeq2 engine, `~condition`: CUDA against the CPU",
        "",
        "Relative differences: largest over genes with baseMean > 10 (the coefficient where |beta| > 1e-3, the p-value",
        "where it is above 1e-300). `torch_cpu` runs the same float64 operations as CUDA; `numpy` is the CPU default.",
        "",
        _table(engine_rows),
        "",
    ]
    if nbvae_rows:
        text += ["## NB-VAE training, 10,000 x 18,000, `batch_size=256`", "", _table(nbvae_rows), ""]
    text += [f"## `pytest -m gpu tests/test_gpu.py` ({time.perf_counter() - t0:.0f} s)", "", f"`{test_line}`", ""]
    if tests.returncode != 0:
        text += ["```", tests.stdout[-3000:], "```", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.md").write_text("\n".join(text))
    (args.out / "gpu.json").write_text(
        json.dumps({"facts": facts, "engine": engine_rows, "nbvae": nbvae_rows}, indent=1)
    )
    print("\n".join(text))


if __name__ == "__main__":
    main()

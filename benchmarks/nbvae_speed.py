"""NB-VAE speed and memory: GSE60450 against scvi-tools' SCVI, and minibatch training at 10,000 samples.

Usage::

    python benchmarks/nbvae_speed.py [--parts gse60450,scale] [--shared ../shared] [--threads 2]
        [--scale-samples 10000] [--scale-genes 18000] [--scale-epochs 3] [--accelerator cpu]

``gse60450``: default NB-VAE training (``filter_genes(min_total_count=10)``, ``size_factors``, ``NBVAE`` with
default ``train()``): wall time split into initialisation (PCA, GLM and dispersion start), gradient phase and
the final dispersion fit, epochs and seconds per epoch of the gradient phase; then ``scvi.model.SCVI`` with the
same size factors, ``n_latent``, full-batch size and number of epochs (NB likelihood, Adam lr 1e-2/eps 1e-8 like
ours, no early stopping), and the ratios.

``scale``: ``simulate_counts`` with ``--scale-samples`` x ``--scale-genes`` is written to a temporary h5ad by a
child process; a fresh child process reads it, builds the model and trains ``--scale-epochs`` minibatch epochs
(batch 256); it reports the epoch time and the peak resident memory of that process (``ru_maxrss``), which
includes the counts (int64) held by AnnData. Figures, never timed tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def gse60450(shared: Path, accelerator: str) -> dict:
    import scvi

    import gendex as gdx

    adata = gdx.datasets.gse60450(shared / "data" / "gse60450")
    gdx.pp.filter_genes(adata, min_total_count=10)
    gdx.pp.size_factors(adata)
    from gendex.model import NBVAE

    work = adata.copy()
    scvi.settings.seed = 0
    t0 = time.perf_counter()
    NBVAE.setup_anndata(work)
    model = NBVAE(work)
    t1 = time.perf_counter()
    model.train(accelerator=accelerator, enable_progress_bar=False, fit_dispersions=False)
    t2 = time.perf_counter()
    model.fit_dispersions()
    t3 = time.perf_counter()
    epochs = len(model.history["elbo_train"])
    out = {
        "genes": adata.n_vars,
        "nbvae_wall_s": t3 - t0,
        "nbvae_init_s": t1 - t0,
        "nbvae_gradient_phase_s": t2 - t1,
        "nbvae_fit_dispersions_s": t3 - t2,
        "nbvae_epochs": epochs,
        "nbvae_s_per_epoch": (t2 - t1) / epochs,
    }

    scvi.settings.seed = 0
    ref = adata.copy()
    scvi.model.SCVI.setup_anndata(ref, layer="counts", size_factor_key="size_factors")
    svi = scvi.model.SCVI(ref, n_latent=2, gene_likelihood="nb")
    t0 = time.perf_counter()
    svi.train(
        max_epochs=epochs,
        accelerator=accelerator,
        train_size=1.0,
        batch_size=ref.n_obs,
        plan_kwargs={"lr": 1e-2, "eps": 1e-8},
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    swall = time.perf_counter() - t0
    out.update({"scvi_wall_s": swall, "scvi_s_per_epoch": swall / epochs})
    out["ratio_nbvae_over_scvi_per_epoch"] = out["nbvae_s_per_epoch"] / (swall / epochs)
    out["ratio_nbvae_over_scvi_wall"] = out["nbvae_wall_s"] / swall
    return out


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="gse60450,scale")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--scale-samples", type=int, default=10_000)
    parser.add_argument("--scale-genes", type=int, default=18_000)
    parser.add_argument("--scale-epochs", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child_train(args.child, args.scale_epochs, args.accelerator, args.threads)
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    if "gse60450" in parts:
        res = gse60450(args.shared, args.accelerator)
        print(f"GSE60450 (12 x {res['genes']} genes), default NB-VAE training vs SCVI with the same epochs:")
        for k, v in res.items():
            print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    if "scale" in parts:
        res = scale(args.scale_samples, args.scale_genes, args.scale_epochs, args.accelerator, args.threads)
        print(f"Minibatch training, simulate_counts {res['samples']} x {res['genes']} (batch 256):")
        for k, v in res.items():
            print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
        print(f"  peak memory <= 8 GiB: {res['peak_rss_gib'] <= 8}")


if __name__ == "__main__":
    main()

"""The demo's NB-VAE steps: training, generative DE (with the comparison to DESeq2) and the latent path."""

from __future__ import annotations

from ._state import ALPHA, Demo
from ._steps import compare


def step_nbvae(demo: Demo) -> None:
    """Train the NB-VAE on the raw counts (size factors as offsets); training curve and latent space."""
    import numpy as np

    import gendex as gdx

    if demo.args.no_nbvae:
        demo.note("NB-VAE skipped (`--no-nbvae`).")
        return
    adata, key = demo.data, "X_nbvae"
    kwargs = {} if demo.args.epochs is None else {"max_epochs": demo.args.epochs}
    # a progress bar only in a terminal: a log file gets the step lines alone
    demo.model = gdx.tl.nbvae(adata, enable_progress_bar=demo.terminal, key_added=key, **kwargs)
    demo.latent_key = key
    history = adata.uns[key]["history"]
    demo.note(
        f"`tl.nbvae`: {adata.obsm[key].shape[1]}-D latent space, {len(history)} training epochs, final "
        f"training ELBO {float(history['elbo_train'].iloc[-1]):.5g}."
    )
    demo.figure("nbvae_training", "NB-VAE training curve", gdx.pl.training_curve(adata, key))
    demo.figure("nbvae_latent", "NB-VAE latent space", gdx.pl.latent(adata, basis=key, color=demo.color))
    factor = demo.contrast[0]
    labels = adata.obs[factor].astype(str).to_numpy()
    sizes = np.unique(labels, return_counts=True)[1]
    if 2 <= sizes.size < adata.n_obs and sizes.min() >= 2:
        from sklearn.metrics import silhouette_score

        score = silhouette_score(adata.obsm[key], labels)
        demo.finding(f"NB-VAE latent space (learnt without labels): silhouette by `{factor}` {score:.2f}.")


def step_generative_de(demo: Demo) -> None:
    """Generative DE from the NB-VAE posterior; DESeq2 vs NB-VAE; the genes DESeq2 leaves NA."""
    import gendex as gdx

    if demo.model is None:
        demo.note("No NB-VAE was trained: generative DE skipped.")
        return
    adata, key = demo.data, "nbvae_de"
    factor, test, ref = demo.contrast
    gdx.tl.generative_de(adata, demo.model, groupby=factor, group1=test, group2=ref, fdr_target=ALPHA, key_added=key)
    demo.results[key] = "NB-VAE"
    res = gdx.get.de_results(adata, key)
    demo.table("nbvae_de_results", "NB-VAE generative DE results", res)
    is_de = res["is_de"].astype(bool)
    up, down = int((is_de & (res["log2FoldChange"] > 0)).sum()), int((is_de & (res["log2FoldChange"] < 0)).sum())
    demo.finding(
        f"NB-VAE generative DE ({test} vs {ref} in `{factor}`): {int(is_de.sum()):,} genes at q-value <= {ALPHA} "
        f"({up:,} up, {down:,} down)."
    )
    summary = compare(demo, "deseq2", key)
    n_na = int(summary["n_finite_only2"])
    if n_na:
        demo.note(f"{n_na:,} genes DESeq2 leaves without a call get a generative estimate, with its interval.")
    else:
        demo.note("DESeq2 gives every gene a call here; the plot shows the generative estimates of the tested genes.")
    demo.figure(
        "na_genes",
        "NB-VAE log2FC (and interval width) of the genes DESeq2 tested or left NA",
        gdx.pl.na_genes(adata, f"compare_deseq2_vs_{key}"),
    )


def step_latent_path(demo: Demo) -> None:
    """Decoded expression of the top generative DE genes along the latent path from reference to test group."""
    import gendex as gdx

    if demo.model is None:
        demo.note("No NB-VAE was trained: latent path skipped.")
        return
    adata, key = demo.data, "latent_path"
    factor, test, ref = demo.contrast
    stat = adata.varm["nbvae_de"]["stat"].dropna().sort_values()
    genes = list(dict.fromkeys([*stat.index[::-1][:3], *stat.index[:3]]))
    gdx.tl.latent_path(adata, demo.model, start=(factor, ref), end=(factor, test), genes=genes, key_added=key)
    demo.note(
        f"A straight line in the latent space from the centroid of the {ref} samples to that of the {test} samples "
        "(`tl.latent_path`); the curves are the decoded normalised expression of the three most up- and "
        "down-regulated genes (largest |stat| of the generative DE)."
    )
    demo.figure(
        "latent_path_genes", f"Decoded expression from {ref} to {test}", gdx.pl.latent_genes(adata, key, logy=True)
    )

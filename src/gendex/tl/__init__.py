"""Tools: differential expression (classical and generative), comparison, enrichment, evaluation."""

from ._nbvae import generative_de, latent_path, nbvae

__all__: list[str] = ["generative_de", "latent_path", "nbvae"]

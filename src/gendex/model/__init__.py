"""The NB-VAE, a scvi-tools model for bulk counts (imports torch; loaded lazily by ``gendex``)."""

from ._model import NBVAE
from ._module import NBVAEModule

__all__ = ["NBVAE", "NBVAEModule"]

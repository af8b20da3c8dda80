"""The NB-VAE, a scvi-tools model for bulk counts (imports torch; loaded lazily by ``gendex``)."""

__all__: list[str] = []

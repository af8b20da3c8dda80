import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """NB-VAE tests train tiny models: one torch thread avoids oversubscribing a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

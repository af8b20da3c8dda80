"""A thin array backend: numpy (+ scipy.special) on ``device="cpu"``, torch float64 on any other device.

The kernels are written once against this interface. On the CPU numpy is used because the work is many
small vector operations, where numpy's per-call cost is lower and does not depend on a thread pool; torch is
used for accelerators (``"cuda"``, ``"cuda:1"``, ``"mps"`` where float64 is supported).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
from scipy import special


class NumpyBackend:
    """Numpy float64 backend."""

    name = "numpy"
    float64 = np.float64

    def __init__(self) -> None:
        self.xp = np
        self.device = "cpu"

    # creation / conversion
    def asarray(self, a: Any) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(a, dtype=np.float64))

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def zeros(self, shape) -> np.ndarray:
        return np.zeros(shape)

    def full(self, shape, value: float) -> np.ndarray:
        return np.full(shape, value, dtype=np.float64)

    def zeros_int(self, n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.int64)

    def arange(self, n: int) -> np.ndarray:
        return np.arange(n)

    def index(self, a: Any) -> np.ndarray:
        return np.asarray(a, dtype=np.int64)

    def copy(self, a: np.ndarray) -> np.ndarray:
        return a.copy()

    def stack(self, arrays, axis: int = 0) -> np.ndarray:
        return np.stack(arrays, axis)

    def rows(self, a: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """``a[idx]`` for integer row indices (``np.take`` copies rows ~3x faster than fancy indexing)."""
        return np.take(a, idx, axis=0)

    def rowsum(self, a: np.ndarray) -> np.ndarray:
        """Row sums of a ``(G, n)`` array.

        numpy's own reduction, not a BLAS product with a vector of ones: the latter is ~25% faster on GSE60450
        but its summation order depends on the BLAS kernel the machine picks, and DESeq2's Armijo line search
        accepts or rejects a step on the last bit of these sums (one gene of GSE60450's VST subsample moved 5%
        from R's dispersion with OPENBLAS_CORETYPE=SkylakeX and not with Prescott). numpy's pairwise sum gives
        the same bits with every BLAS and SIMD level tried.
        """
        return a.sum(1)

    # math
    def lgamma(self, a):
        return special.gammaln(a)

    def digamma(self, a):
        return special.digamma(a)

    def clip(self, a, lo=None, hi=None):
        return np.clip(a, lo, hi)

    def where(self, cond, a, b):
        return np.where(cond, a, b)

    def flatnonzero(self, mask) -> np.ndarray:
        return np.flatnonzero(mask)

    def amax(self, a, axis: int):
        return a.max(axis)

    def take_along(self, a, idx):
        return np.take_along_axis(a, idx[:, None], 1)[:, 0]

    def linspace(self, lo: float, hi: float, n: int):
        return np.linspace(lo, hi, n)

    def __getattr__(self, name: str):  # log, exp, log1p, sqrt, abs, isnan, isfinite, ...
        return getattr(np, name)


class TorchBackend:
    """Torch float64 backend on a given device."""

    name = "torch"

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.xp = torch
        self.device = torch.device(device)
        self.float64 = torch.float64

    def asarray(self, a: Any):
        t = self.torch
        if isinstance(a, t.Tensor):
            return a.to(device=self.device, dtype=t.float64)
        return t.as_tensor(np.ascontiguousarray(np.asarray(a, dtype=np.float64)), device=self.device)

    def to_numpy(self, a: Any) -> np.ndarray:
        if isinstance(a, self.torch.Tensor):
            return a.detach().cpu().numpy()
        return np.asarray(a)

    def zeros(self, shape):
        return self.torch.zeros(shape, dtype=self.torch.float64, device=self.device)

    def full(self, shape, value: float):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return self.torch.full(shape, float(value), dtype=self.torch.float64, device=self.device)

    def zeros_int(self, n: int):
        return self.torch.zeros(n, dtype=self.torch.int64, device=self.device)

    def arange(self, n: int):
        return self.torch.arange(n, device=self.device)

    def index(self, a: Any):
        if isinstance(a, self.torch.Tensor):
            return a.to(device=self.device, dtype=self.torch.int64)
        return self.torch.as_tensor(np.asarray(a, dtype=np.int64), device=self.device)

    def copy(self, a):
        return a.clone()

    def stack(self, arrays, axis: int = 0):
        return self.torch.stack(list(arrays), axis)

    def rows(self, a, idx):
        return a[idx]

    def rowsum(self, a):
        return a.sum(1)

    def lgamma(self, a):
        return self.torch.lgamma(a)

    def digamma(self, a):
        return self.torch.digamma(a)

    def clip(self, a, lo=None, hi=None):
        return self.torch.clamp(a, min=lo, max=hi)

    def where(self, cond, a, b):
        t = self.torch
        if not isinstance(a, t.Tensor):
            a = t.as_tensor(a, dtype=t.float64, device=self.device)
        if not isinstance(b, t.Tensor):
            b = t.as_tensor(b, dtype=a.dtype, device=self.device)
        return t.where(cond, a, b)

    def flatnonzero(self, mask):
        return self.torch.nonzero(mask).ravel()

    def amax(self, a, axis: int):
        return self.torch.amax(a, dim=axis)

    def take_along(self, a, idx):
        return self.torch.gather(a, 1, idx[:, None])[:, 0]

    def linspace(self, lo: float, hi: float, n: int):
        return self.torch.linspace(lo, hi, n, dtype=self.torch.float64, device=self.device)

    def __getattr__(self, name: str):
        return getattr(self.torch, name)


def single_threaded_blas():
    """Context limiting BLAS to one thread: the products here are thin, and threads only add overhead."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def get_backend(device: str | Any = "cpu"):
    """Numpy for ``"cpu"``; torch for ``"torch"`` (torch on the CPU) and any torch device (``"cuda"``, ...)."""
    dev = str(device)
    if dev == "cpu":
        return NumpyBackend()
    if dev in ("torch", "torch:cpu"):
        return TorchBackend("cpu")
    return TorchBackend(dev)


def check_device(device: str | Any) -> None:
    """Raise a ``ValueError`` naming the way out unless ``device`` is usable here.

    Usable: ``"cpu"``, ``"torch"`` or a torch device that exists and is available (``"cuda"``, ``"cuda:1"``,
    ``"mps"``).
    """
    dev = str(device)
    if dev in ("cpu", "torch", "torch:cpu"):
        return
    import torch

    try:
        tdev = torch.device(dev)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(
            f"`device` must be 'cpu' or a torch device such as 'cuda', 'cuda:0' or 'mps'; got {device!r}"
        ) from err
    if tdev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"`device={device!r}`: torch sees no CUDA GPU here (torch.cuda.is_available() is False); use 'cpu'"
        )
    if tdev.type == "cuda" and tdev.index is not None and tdev.index >= torch.cuda.device_count():
        raise ValueError(f"`device={device!r}`: there are only {torch.cuda.device_count()} CUDA devices")
    if tdev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"`device={device!r}`: the MPS backend is not available here; use 'cpu'")
    if tdev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"`device={device!r}` is not supported: use 'cpu', 'cuda' or 'mps'")

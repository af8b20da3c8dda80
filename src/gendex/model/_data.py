"""Data paths of the NB-VAE beyond one process and beyond memory.

* **Several processes** (Lightning's DDP, e.g. ``strategy="ddp_spawn"``, ``accelerator="cpu", devices=2``): the
  strategy strings of the DDP family become :class:`QuietDDPStrategy`, which keeps the started processes as quiet
  as the training process and gives every rank its own random stream. The data-driven initialisation is
  computed once, in the process that builds the model: ``spawn``/``fork`` hand that module to every rank, and
  with ``popen`` (``"ddp"``, the script re-run per rank) every rank computes the same deterministic start; in
  every case DDP broadcasts rank 0's parameters and buffers before the first step.
* **Counts on disk** (a backed AnnData, ``anndata.read_h5ad(path, backed="r")``, or a lazy one whose counts are a
  dask array, ``anndata.experimental.read_lazy``): the counts stay a dask array on the model's private AnnData;
  the initialisation reads only its evenly spaced samples, and training reads minibatches through
  :class:`BlockSampler` and :class:`BlockDataset`: contiguous row blocks (the store's row chunks), shuffled in
  groups of a few blocks per epoch, each block read once per epoch.
"""

from __future__ import annotations

import math
import multiprocessing
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from scvi import REGISTRY_KEYS
from scvi.dataloaders import DataSplitter
from torch.utils.data import DataLoader, Dataset, Sampler

from .._lazy import BLOCK_BYTES, is_dask
from .._validation import check_no_empty_samples, get_counts, get_matrix, is_sparse, scan_counts

if TYPE_CHECKING:
    from anndata import AnnData

#: Largest row block read at once (bytes of the stored dtype); larger row chunks are read in slices.
MAX_BLOCK_BYTES = BLOCK_BYTES
#: A shuffle group (a "fetch") holds at least this many minibatches' rows.
FETCH_BATCHES = 8
#: At most this many bytes of row blocks are cached at once (one fetch: the blocks of one shuffle group).
MAX_CACHE_BYTES = 1024 * 2**20

#: Counts on disk larger than this (bytes as float64) are never loaded whole (see check_counts_fit_in_memory).
IN_MEMORY_LIMIT = 2 * 2**30

_VALIDATED: set[str] = set()


# ---------------------------------------------------------------------------------------------------------- DDP
class QuietDDPStrategy(DDPStrategy):
    """Lightning's :class:`~lightning.pytorch.strategies.DDPStrategy`, quiet in the processes it starts.

    In a process started by the launcher (``spawn``/``fork``), Lightning's and scvi-tools' banners are silenced
    and each rank continues from its own random stream (``seed + rank`` of one draw from the inherited stream,
    so that the Monte-Carlo noise of the ranks is independent and a seeded run is reproducible).
    """

    def setup_environment(self) -> None:
        started = multiprocessing.parent_process() is not None
        if started:  # a process of ours: silence it for its whole life (it ends with the training)
            silence_process()
        super().setup_environment()
        if started:
            seed = int(torch.randint(0, 2**62, (1,)))
            torch.manual_seed(seed + self.global_rank)


def silence_process() -> None:
    """Lightning and scvi-tools loggers to WARNING and their noise warnings off, for this whole process."""
    import logging

    from ._model import _QUIET_LOGGERS, QUIET_WARNINGS

    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message, category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def distributed_strategy(strategy: Any) -> tuple[Any, bool]:
    """``(strategy to pass to Lightning, whether it is distributed data parallel)``.

    Strings of Lightning's DDP family (``"ddp"``, ``"ddp_spawn"``, ``"ddp_fork"``, ``"ddp_notebook"`` and their
    ``find_unused_parameters`` variants) become a :class:`QuietDDPStrategy` with the same settings; a
    ``DDPStrategy`` instance is kept as it is.
    """
    if isinstance(strategy, str) and strategy in StrategyRegistry:
        entry = StrategyRegistry[strategy]
        if entry["strategy"] is DDPStrategy:
            return QuietDDPStrategy(**entry["init_params"]), True
    return strategy, isinstance(strategy, DDPStrategy)


# ---------------------------------------------------------------------------------------------------------- lazy
def is_lazy(x: object) -> bool:
    """Whether ``x`` is a count matrix that stays on disk: a dask array, an h5py dataset, a backed sparse one."""
    if is_dask(x) or type(x).__module__.split(".")[0] == "h5py":  # h5py.Dataset: a backed dense X
        return True
    from anndata.abc import CSCDataset, CSRDataset

    return isinstance(x, CSRDataset | CSCDataset)


def training_counts(adata: AnnData, layer: str | None) -> Any:
    """The validated raw counts of ``adata`` for the NB-VAE: the stored matrix, or a dask array if on disk.

    In-memory counts are checked as :func:`gendex._validation.get_counts` checks them (a backed AnnData's
    in-memory layers too). Counts on disk (a backed ``X``, dask arrays) are checked in one blockwise pass by
    :func:`gendex._validation.scan_counts` (integers, non-negative, finite, no all-zero sample) and returned as a
    dask array, never loaded; an array already checked is remembered by its dask name (the model's private
    AnnData holds the same array).
    """
    x = get_matrix(adata, layer, lazy=True)
    if not is_dask(x):
        return get_counts(adata, layer, dense=False, lazy=True)
    if x.name not in _VALIDATED:
        x = scan_counts(adata, layer).x
        _VALIDATED.add(x.name)
    return x


def on_disk_source(adata: AnnData, obs: pd.DataFrame, layer: str | None) -> AnnData:
    """An in-memory AnnData shell of a backed or lazy ``adata``: its ``obs`` (in memory), names and counts.

    The counts are :func:`training_counts` (a dask array when they are on disk); nothing is loaded or copied.
    """
    from anndata import AnnData as _AnnData

    counts = training_counts(adata, layer)
    if not is_lazy(counts):
        check_no_empty_samples(counts, adata.obs_names)
    shell = _AnnData(obs=obs.copy(), var=pd.DataFrame(index=pd.Index(adata.var_names.copy())))
    if layer is None:
        shell.X = counts
    else:
        shell.layers[layer] = counts
    return shell


def check_counts_fit_in_memory(adata_manager, what: str) -> None:
    """Raise, naming the way out, if ``what`` would load counts on disk over ``IN_MEMORY_LIMIT`` (float64)."""
    x = adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
    need = int(x.shape[0]) * int(x.shape[1]) * 8
    if is_dask(x) and need > IN_MEMORY_LIMIT:
        raise ValueError(
            f"{what} needs the counts of all {x.shape[0]:,} samples in memory ({need / 2**30:.1f} GB as float64), "
            "and the model's counts are on disk: train with the compared factor in the design "
            "(`gdx.tl.nbvae(adata, design='~factor')`; counterfactual DE reads no counts), or load the counts "
            "into memory before training (`adata.to_memory()`)"
        )


def row_blocks(x: Any) -> np.ndarray:
    """Boundaries ``(n_blocks + 1,)`` of the row blocks of a dask array that are read at once.

    The blocks are its row chunks, cut to at most ``MAX_BLOCK_BYTES`` (a larger chunk is then read per slice).
    """
    row_bytes = max(1, int(x.shape[1]) * np.dtype(x.dtype).itemsize)
    cap = max(1, MAX_BLOCK_BYTES // row_bytes)
    bounds = [0]
    for size in x.chunks[0]:
        start = bounds[-1]
        bounds.extend(start + min(int(size), sub + cap) for sub in range(0, int(size), cap))
    return np.asarray(bounds, dtype=np.int64)


def read_block(x: Any, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the counts ``x`` (a dask array or in memory) as a dense NumPy array, stored dtype."""
    part = x[int(start) : int(stop)]
    part = part.compute() if hasattr(part, "compute") else part
    return part.toarray() if is_sparse(part) else np.asarray(part)


def group_rows(n_genes: int, n_arrays: int = 8) -> int:
    """Samples per group of :func:`iter_rows`: ``n_arrays`` float32 arrays of a group fit in ``MAX_BLOCK_BYTES``."""
    return max(1, MAX_BLOCK_BYTES // max(1, int(n_genes) * 4 * int(n_arrays)))


def iter_rows(x: Any, rows: np.ndarray, size: int):
    """The counts of ``rows`` in consecutive groups of at most ``size``: yields ``(where in rows, counts)``.

    ``counts`` is dense, of the stored dtype. Counts on disk (a dask array) are read by whole row blocks
    (:func:`row_blocks`, the store's row chunks): the block of the current rows is kept until the rows move
    past it, so for sorted ``rows`` each block is read once and only one block and one group are in memory
    (fancy indexing the dask array instead holds every chunk it touches). In-memory counts are indexed. The
    groups do not depend on where the counts are, so whatever is computed per group is the same for both.
    """
    rows = np.asarray(rows, dtype=np.int64)
    bounds = row_blocks(x) if is_dask(x) else None
    held: tuple[int, np.ndarray | None] = (-1, None)
    for start in range(0, len(rows), int(size)):
        where = slice(start, min(start + int(size), len(rows)))
        sel = rows[where]
        if bounds is None:
            part = x[sel]
            yield where, part.toarray() if is_sparse(part) else np.asarray(part)
            continue
        blocks = np.searchsorted(bounds, sel, side="right") - 1
        out = None
        for b in _runs(blocks):
            if held[0] != b:
                held = (-1, None)  # free the previous block before reading the next
                held = (b, read_block(x, bounds[b], bounds[b + 1]))
            assert held[1] is not None
            if out is None:
                out = np.empty((len(sel), held[1].shape[1]), dtype=held[1].dtype)
            take = blocks == b
            out[take] = held[1][sel[take] - bounds[b]]
        assert out is not None  # a group has at least one row
        yield where, out


def _runs(blocks: np.ndarray) -> list[int]:
    """The distinct values of ``blocks`` in order of first appearance."""
    _, first = np.unique(blocks, return_index=True)
    return [int(blocks[i]) for i in np.sort(first)]


def read_rows(x: Any, rows: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
    """The counts of ``rows`` as one dense ``dtype`` array, read as :func:`iter_rows` reads them."""
    out = np.empty((len(rows), int(x.shape[1])), dtype=dtype)
    for where, part in iter_rows(x, rows, group_rows(int(x.shape[1]))):
        out[where] = part
    return out


class BlockDataset(Dataset):
    """Minibatches of a model's registered data whose counts are on disk, read in contiguous row blocks.

    ``dataset[rows]`` returns scvi-tools' tensor dictionary for the rows (in the given order). The counts come
    from whole row blocks (``row_blocks``), kept in a small least-recently-used cache, so a sampler that visits
    the blocks of a shuffle group together (:class:`BlockSampler`) reads each block once per epoch. The other
    registered fields (size factors, covariates) are in memory.
    """

    def __init__(self, adata_manager, cache_blocks: int):
        super().__init__()
        self.adata_manager = adata_manager
        reg = adata_manager.data_registry
        self.others = adata_manager.create_torch_dataset(
            data_and_attributes=[k for k in reg if k != REGISTRY_KEYS.X_KEY]
        )
        x = adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        self.bounds = row_blocks(x)
        self.cache_blocks = max(1, int(cache_blocks))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def _block(self, b: int) -> np.ndarray:
        if b in self._cache:
            self._cache.move_to_end(b)
            return self._cache[b]
        while len(self._cache) >= self.cache_blocks:  # make room before reading: at most cache_blocks held
            self._cache.popitem(last=False)
        x = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        part = read_block(x, self.bounds[b], self.bounds[b + 1])
        self._cache[b] = part
        return part

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Counts of ``rows`` (any order) as float32, ``(len(rows), n_genes)``."""
        rows = np.asarray(rows, dtype=np.int64)
        blocks = np.searchsorted(self.bounds, rows, side="right") - 1
        out = None
        # the blocks already held first: a minibatch that ends one shuffle group and starts the next takes the
        # old group's rows before the new group's blocks push them out, so a cache of one group reads each once
        needed = np.unique(blocks)
        for b in sorted(needed.tolist(), key=lambda b: b not in self._cache):
            sel = np.flatnonzero(blocks == b)
            part = self._block(int(b))
            if out is None:
                out = np.empty((len(rows), part.shape[1]), dtype=np.float32)
            out[sel] = part[rows[sel] - self.bounds[b]]
            del part  # a block the cache drops is freed before the next is read
        assert out is not None  # a minibatch has at least one row
        return out

    def __getitem__(self, rows) -> dict[str, np.ndarray]:
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        data = self.others[rows]
        data[REGISTRY_KEYS.X_KEY] = self.read_rows(rows)
        return data


def inference_loader(adata_manager, indices: Sequence[int] | None, batch_size: int | None) -> DataLoader:
    """Minibatches of ``indices`` (all samples if None), in order, for a model whose counts are on disk.

    The counts come from :class:`BlockDataset` with one row block held: for sorted indices each block is read
    once. ``batch_size`` defaults to :func:`group_rows` samples.
    """
    x = adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
    rows = np.arange(int(x.shape[0])) if indices is None else np.asarray(indices, dtype=np.int64).ravel()
    size = int(batch_size) if batch_size else group_rows(int(x.shape[1]))
    batches = [rows[i : i + size].tolist() for i in range(0, len(rows), size)]
    dataset = BlockDataset(adata_manager, cache_blocks=1)
    return DataLoader(dataset, sampler=batches, batch_size=None, num_workers=0)


class BlockSampler(Sampler):
    """Minibatches of row indices for counts on disk: shuffle groups of row blocks, shuffled rows within.

    Each epoch the blocks are put in random order and taken in groups ("fetches") of at least
    ``FETCH_BATCHES`` minibatches' rows; the rows of a fetch are shuffled and cut into minibatches. A fetch
    covering all rows (full-batch training) is one random permutation: with ``train_order`` (the in-memory
    data splitter's order) and one process, this is exactly ``BatchSampler(RandomSampler)`` of the in-memory
    loader, including the draws from torch's global generator, so training is the in-memory training.

    With ``num_replicas > 1`` (DDP), every rank builds the same epoch order from ``seed + epoch`` and takes its
    contiguous share (padded by wrapping round, as ``DistributedSampler`` pads), so each rank reads about
    ``1 / num_replicas`` of the blocks and all ranks take the same number of steps.
    """

    def __init__(
        self,
        bounds: np.ndarray,
        batch_size: int,
        *,
        train_order: np.ndarray | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        drop_last: bool = False,
    ):
        self.bounds = np.asarray(bounds, dtype=np.int64)
        self.n = int(self.bounds[-1])
        self.batch_size = int(batch_size)
        self.train_order = None if train_order is None else np.asarray(train_order, dtype=np.int64)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self.per_rank = math.ceil(self.n / self.num_replicas)
        sizes = np.diff(self.bounds)
        self.fetch_blocks = self.blocks_per_fetch(sizes, self.batch_size * self.num_replicas)

    @staticmethod
    def blocks_per_fetch(sizes: np.ndarray, rows_per_step: int) -> int:
        """Blocks per shuffle group: at least ``FETCH_BATCHES`` steps' rows (all blocks if they are fewer)."""
        target = FETCH_BATCHES * rows_per_step
        mean = max(1.0, float(np.mean(sizes)))
        return int(min(len(sizes), max(1, math.ceil(target / mean))))

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before each epoch (the distributed order depends on it)."""
        self.epoch = int(epoch)

    def epoch_order(self) -> np.ndarray:
        """All rows in this epoch's order."""
        if self.num_replicas == 1:  # the draw RandomSampler makes, from the global generator
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
        else:
            seed = self.seed + self.epoch
        gen = torch.Generator().manual_seed(seed)
        n_blocks = len(self.bounds) - 1
        if self.fetch_blocks >= n_blocks:
            perm = torch.randperm(self.n, generator=gen).numpy()
            return perm if self.train_order is None else self.train_order[perm]
        order = torch.randperm(n_blocks, generator=gen).numpy()
        parts = []
        for start in range(0, n_blocks, self.fetch_blocks):
            rows = np.concatenate(
                [np.arange(self.bounds[b], self.bounds[b + 1]) for b in order[start : start + self.fetch_blocks]]
            )
            parts.append(rows[torch.randperm(len(rows), generator=gen).numpy()])
        return np.concatenate(parts)

    def _rank_rows(self) -> np.ndarray:
        order = self.epoch_order()
        if self.num_replicas == 1:
            return order
        total = self.per_rank * self.num_replicas
        if total > len(order):  # pad by wrapping round
            order = np.concatenate([order, order[: total - len(order)]])
        return order[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]

    def __iter__(self):
        rows = self._rank_rows()
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch.tolist()

    def __len__(self) -> int:
        n = self.per_rank if self.num_replicas > 1 else self.n
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


class BlockDataSplitter(DataSplitter):
    """scvi-tools' :class:`~scvi.dataloaders.DataSplitter` whose training loader reads counts on disk in blocks.

    Only the training loader differs (all samples train; the NB-VAE has no validation split). The sampler's
    shared seed of the distributed order is drawn here, in the process that builds the model, from torch's
    global generator.
    """

    def __init__(self, adata_manager, *args: Any, distributed_sampler: bool = False, **kwargs: Any):
        kwargs.pop("load_sparse_tensor", None)
        super().__init__(adata_manager, *args, **kwargs)
        self.distributed = bool(distributed_sampler)
        # one process: no draw here, so that the stream is the in-memory loader's (see BlockSampler)
        self.shared_seed = int(torch.randint(0, 2**62, (1,))) if self.distributed else 0

    def train_dataloader(self):
        """Minibatches of contiguous row blocks (:class:`BlockSampler`, :class:`BlockDataset`)."""
        batch_size = int(self.data_loader_kwargs.get("batch_size") or 128)
        replicas, rank = 1, 0
        if self.distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
            replicas, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        x = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        bounds = row_blocks(x)
        sampler = BlockSampler(
            bounds,
            batch_size,
            train_order=np.asarray(self.train_idx),
            num_replicas=replicas,
            rank=rank,
            seed=self.shared_seed,
            drop_last=self.drop_last,
        )
        block_bytes = int(np.max(np.diff(bounds))) * int(x.shape[1]) * np.dtype(x.dtype).itemsize
        cache = min(sampler.fetch_blocks, max(1, MAX_CACHE_BYTES // max(1, block_bytes)))
        dataset = BlockDataset(self.adata_manager, cache_blocks=cache)
        return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=0)

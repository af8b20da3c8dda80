"""Thread-pool helpers for the array kernels: numpy releases the GIL in its loops, so gene blocks run in parallel."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def default_threads(n_entries: int, *, min_entries: int = 2_000_000, max_threads: int = 4) -> int:
    """Threads worth using for an array of ``n_entries``: the CPUs available (at most ``max_threads``), else 1."""
    if n_entries < min_entries:
        return 1
    # the CPUs this process may run on (Linux); all CPUs where the platform cannot tell
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(max_threads, cpus))


def parallel_for(fn: Callable[[Any], None], items: Iterable, n_threads: int) -> None:
    """Call ``fn`` on every item, in a pool of ``n_threads`` threads when that is more than one."""
    items = list(items)
    if n_threads <= 1 or len(items) <= 1:
        for it in items:
            fn(it)
        return
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        for _ in pool.map(fn, items):  # consuming the results re-raises the first error
            pass

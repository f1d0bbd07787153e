"""An ordered, bounded process-pool map for dataset generation.

Results come back in input order with at most `ahead` items in flight, so a fast producer never
piles up a split's audio in memory while tfds writes. Processes are spawned, not forked: the
caller may already run JAX's threads, which a fork would copy mid-flight.
"""
from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def default_workers(total_seconds: float, min_seconds_per_worker: float = 300.0) -> int:
    """Worker processes worth starting for `total_seconds` of audio (0 = generate inline)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(cores or 1, 16, int(total_seconds // min_seconds_per_worker))
    return workers if workers >= 2 else 0


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int,
                ahead: int | None = None) -> Iterator[Any]:
    """`map(fn, items)` over `workers` spawned processes (inline when workers < 2)."""
    if workers < 2:
        yield from map(fn, items)
        return
    ahead = ahead or 4 * workers
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

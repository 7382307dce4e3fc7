"""How ``n`` rows are split into ``K`` contiguous shards, and a batch into ``K`` parts.

Every data source and the engine split rows the same way, so a data set gives the same
rows for any K: shard ``k`` is rows ``[k n / K, (k + 1) n / K)``.
"""

from __future__ import annotations

from ._validation import check_int


def shard_bounds(n: int, k: int, K: int) -> tuple[int, int]:
    """Row range ``[start, stop)`` of shard ``k`` when ``n`` rows are split ``K`` ways."""
    K = check_int("K", K, minimum=1)
    k = check_int("k", k, minimum=0, maximum=K - 1)
    if K > n:
        raise ValueError(f"cannot split n={n} rows into K={K} shards: "
                         f"need K <= n")
    return k * n // K, (k + 1) * n // K


def split_evenly(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` integers that differ by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]

"""Where shards come from: the data sources :func:`ray_relu.fit` accepts.

:func:`as_source` turns what a user passes into a :class:`DataSource`:

==================================  ===============================================
given                               source
==================================  ===============================================
``PlantedReLU``, ``Planted(...)``   itself: each actor generates its own rows
``(X, y)`` numpy arrays             :class:`ArrayData` (module ``arrays``)
a pandas DataFrame                  :class:`FrameData` (module ``frame``)
a path or URI of Parquet data       :class:`ParquetData` (module ``parquet``)
a ``ray.data.Dataset``              :class:`RayDatasetData` (module ``ray_dataset``)
any :class:`DataSource`             itself
==================================  ===============================================

The contract (what a source of your own implements):

``d``, ``n``
    The number of features and of rows.
``w_star``
    The true parameters if known (a vector), else None: a fit then stops on the
    relative change of ``w`` instead of ``||w - w*|| / ||w*||``.
``shard(k, K) -> (X, y)``
    The rows of shard ``k`` of ``K``: ``X`` of shape ``(rows, d)`` in float64 or
    float32 (widened exactly as it is read, so a float32 shard fits as its float64
    copy would, in half the memory), ``y`` of shape ``(rows,)`` in float64. Every
    shipped source returns rows
    :func:`ray_relu.shards.shard_bounds` ``(n, k, K)``, so a data set gives the same
    rows, and the same fit, for any K and any container.
``feature_dtype`` (optional)
    The dtype of ``X`` (float64 when absent): the memory check sizes shards by it.
``spec() -> dict``
    JSON-serializable; identifies the data set in checkpoints and results.
``for_workers(K) -> list`` (optional)
    What each of the K actors receives in place of the source, each item with
    ``shard(k, K)`` and ``w_star``; the source keeps these objects alive while it
    lives (a restarted actor rebuilds its shard from them). Without it every actor
    receives the source itself, which must then be small to pickle (parameters, a
    path). In-memory sources use it to put each shard in the object store once and
    send each actor a reference to its rows only; Ray Datasets to send each actor its
    split's block references.

pandas and Ray Data are imported only when such an object is given (a DataFrame
cannot exist unless pandas is imported). More in ``docs/data.md``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..models import Planted
from .arrays import ArrayData
from .frame import FrameData
from .parquet import ParquetData, write_parquet
from .ray_dataset import RayDatasetData

__all__ = ["DataSource", "as_source", "worker_sources", "ArrayData", "FrameData",
           "ParquetData", "RayDatasetData", "write_parquet"]

ACCEPTED = ("a planted problem (PlantedReLU, Planted), numpy arrays (X, y), a pandas "
            "DataFrame, a path or URI of Parquet data, a ray.data.Dataset, or a "
            "DataSource (ArrayData, FrameData, ParquetData, RayDatasetData)")


@runtime_checkable
class DataSource(Protocol):
    """Anything a :class:`~ray_relu.worker.ShardWorker` can build its shard from
    (the contract is in the module docstring)."""

    d: int
    n: int

    @property
    def w_star(self) -> np.ndarray | None: ...

    def shard(self, k: int, K: int) -> tuple[np.ndarray, np.ndarray]: ...

    def spec(self) -> dict: ...


def as_source(data: Any) -> DataSource:
    """The :class:`DataSource` for ``data`` (see the table in the module docstring)."""
    if isinstance(data, (str, os.PathLike)):
        return ParquetData(data)
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"data as a tuple must be (X, y), got {len(data)} items; for "
                             f"a known w* use ArrayData(X, y, w_star)")
        return ArrayData(*data)
    if _is(data, "pandas", "DataFrame"):
        return FrameData(data)
    if _is(data, "ray.data", "Dataset"):
        return RayDatasetData(data)
    if isinstance(data, np.ndarray):
        raise TypeError(f"data is one array of shape {data.shape}; pass the features and "
                        f"the labels as a tuple (X, y)")
    if isinstance(data, Planted) or isinstance(data, DataSource):
        return data
    raise TypeError(f"data must be {ACCEPTED}; got {type(data).__name__}")


def _is(value: Any, module: str, name: str) -> bool:
    """``isinstance(value, module.name)`` without importing ``module``: if it is not
    imported, nothing can be an instance of its classes."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(value, getattr(loaded, name))


def worker_sources(source: DataSource, K: int) -> list:
    """What each of ``K`` actors receives: ``source.for_workers(K)``, else ``source``."""
    ship = getattr(source, "for_workers", None)
    return list(ship(K)) if ship is not None else [source] * K

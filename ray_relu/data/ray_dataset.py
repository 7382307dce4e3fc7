"""Ray Datasets as data: each actor materializes only its own shard.

The dataset is executed once, in order (``preserve_order``), into blocks in the object
store (:meth:`ray.data.Dataset.materialize`; blocks stay on the nodes that made them).
For K actors, :meth:`~ray.data.Dataset.split_at_indices` cuts it at the row bounds of
:func:`ray_relu.shards.shard_bounds`, the split every other source uses; each actor
receives its split (block references, not rows) and fetches just those blocks. So the
rows per worker do not depend on Ray's block layout, and a fit equals the fit on the
same rows as arrays, for any K.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..shards import shard_bounds
from .arrays import check_w_star
from .columns import Columns, find_columns, to_arrays


class RayDatasetData:
    """A ``ray.data.Dataset`` as a data source.

    Parameters
    ----------
    dataset : the dataset; its columns follow :mod:`ray_relu.data.columns` (``x`` as a
        list or tensor column, or ``x0..x{d-1}``, plus ``y``; or ``features``/``label``).
    w_star : the true parameters if known, as for
        :class:`~ray_relu.data.arrays.ArrayData`.

    Building one executes the dataset (its rows must fit in the cluster's object store);
    a lazy pipeline is executed in order, so the rows come in the order the dataset
    defines whatever Ray's scheduling. The check for NaN and for the rows' types runs
    where the rows are read: on the actors.
    """

    def __init__(self, dataset: Any, *, features: str | Sequence[str] | None = None,
                 label: str = "y", w_star: Any = None) -> None:
        import ray.data
        if not isinstance(dataset, ray.data.Dataset):
            raise TypeError(f"dataset must be a ray.data.Dataset, got "
                            f"{type(dataset).__name__}")
        self.dataset = _materialize_in_order(dataset)
        schema = self.dataset.schema()
        if schema is None:
            raise ValueError("the Ray Dataset has no rows")
        for name, t in zip(schema.names, schema.types):
            if not isinstance(t, pa.DataType):
                raise ValueError(f"Ray Dataset: column {name!r} has type {t}; expected a "
                                 f"floating type (or a list of floats for the features)")
        columns = find_columns(pa.schema(list(zip(schema.names, schema.types))),
                               "Ray Dataset", features, label)
        self.n = self.dataset.count()
        if self.n < 1:
            raise ValueError("the Ray Dataset has no rows")
        if columns.d is None:
            columns = columns.with_width(
                _read(self.dataset.limit(1).materialize(), columns, "Ray Dataset")[0]
                .shape[1])
        self.columns, self.d = columns, columns.d
        self.w_star = check_w_star(w_star)
        self._splits: tuple[int, list] | None = None

    def __repr__(self) -> str:
        return f"RayDatasetData(n={self.n}, d={self.d})"

    def spec(self) -> dict:
        """Size and columns (not the values: hashing them would read every row here)."""
        return {"kind": "ray_dataset", "n": self.n, "d": self.d,
                "columns": self.columns.names}

    def shard(self, k: int, K: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``shard_bounds(n, k, K)``, read here."""
        return self.for_workers(K)[k].shard(k, K)

    def for_workers(self, K: int) -> list["DatasetSplit"]:
        """The K splits at the shard bounds (made once per K and kept while this
        source lives, so that a restarted actor reads its split again)."""
        if self._splits is None or self._splits[0] != K:
            self._splits = None
            bounds = [shard_bounds(self.n, k, K)[0] for k in range(1, K)]
            parts = self.dataset.split_at_indices(bounds) if bounds else [self.dataset]
            self._splits = (K, [DatasetSplit(p, k, K, self.columns, self.w_star,
                                             shard_bounds(self.n, k, K)[0])
                                for k, p in enumerate(parts)])
        return self._splits[1]


class DatasetSplit:
    """One actor's split of a :class:`RayDatasetData`: block references."""

    def __init__(self, part: Any, k: int, K: int, columns: Columns,
                 w_star: np.ndarray | None, first_row: int) -> None:
        self.part, self.k, self.K, self.columns, self.w_star = part, k, K, columns, w_star
        self.first_row = first_row

    def shard(self, k: int, K: int) -> tuple[np.ndarray, np.ndarray]:
        """The split's rows as float64 ``(X, y)``."""
        if (k, K) != (self.k, self.K):
            raise ValueError(f"this is shard {self.k} of {self.K}, not {k} of {K}")
        return _read(self.part, self.columns, f"Ray Dataset shard {k} of {K}",
                     self.first_row)


def _read(dataset: Any, columns: Columns, where: str,
          first_row: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a materialized ``dataset``, fetched block by block into this process.

    No Ray Data operator runs here (an operator's tasks would wait for CPUs that the
    shard actors hold): the blocks are fetched as they are, and a pandas block is
    converted in this process.
    """
    import ray
    tables = []
    for block in ray.get(dataset.get_internal_block_refs()):
        if not isinstance(block, pa.Table):
            block = pa.Table.from_pandas(block, preserve_index=False)
        tables.append(block.select(columns.names))
    return to_arrays(pa.concat_tables(tables), columns, where, first_row)


def _materialize_in_order(dataset: Any) -> Any:
    """``dataset`` executed with ``preserve_order`` (then restored on its context)."""
    options = dataset.context.execution_options
    kept = options.preserve_order
    options.preserve_order = True
    try:
        return dataset.materialize()
    finally:
        options.preserve_order = kept

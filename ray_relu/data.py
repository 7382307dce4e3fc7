"""Where shards come from: the planted problem (generated on the worker) or Parquet.

Parquet schema (one file, or a directory of ``*.parquet`` files read in name order):

- ``layout="list"`` (default of :func:`write_parquet`): a column ``x`` of type
  ``fixed_size_list<double>[d]`` and a column ``y`` of type ``double``;
- ``layout="columns"``: columns ``x0 .. x{d-1}`` and ``y``, all ``double``.

:func:`write_parquet` also stores the problem's parameters and ``w_star`` in the schema
metadata (key ``ray_relu``), so a fit on the file can still report ``rel_error``. A file
without that metadata has no known ``w*``: the fit then stops on the relative change
of ``w``. Workers read only the row groups that overlap their shard.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._validation import check_choice, check_int
from .models import Planted, PlantedReLU
from .shards import shard_bounds

_META_KEY = b"ray_relu"


@runtime_checkable
class DataSource(Protocol):
    """Anything a :class:`~ray_relu.worker.ShardWorker` can build its shard from."""

    d: int
    n: int

    @property
    def w_star(self) -> np.ndarray | None: ...

    def shard(self, k: int, K: int) -> tuple[np.ndarray, np.ndarray]: ...

    def spec(self) -> dict: ...


def write_parquet(problem: PlantedReLU, path: str | os.PathLike, *,
                  layout: str = "list", row_group_size: int = 4096) -> Path:
    """Write ``problem``'s rows to one Parquet file, block by block (bounded memory).

    Returns the path written. See the module docstring for the schema.
    """
    layout = check_choice("layout", layout, ("list", "columns"))
    row_group_size = check_int("row_group_size", row_group_size, minimum=1)
    path = Path(path)
    meta = {"problem": problem.spec(), "w_star": problem.w_star.tolist()}
    schema = _schema(problem.d, layout).with_metadata({_META_KEY: json.dumps(meta)})
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, problem.n, row_group_size):
            X, y = problem.rows(start, min(problem.n, start + row_group_size))
            writer.write_table(_to_table(X, y, layout, schema))
    return path


def _schema(d: int, layout: str) -> pa.Schema:
    if layout == "list":
        return pa.schema([("x", pa.list_(pa.float64(), d)), ("y", pa.float64())])
    return pa.schema([(f"x{j}", pa.float64()) for j in range(d)] + [("y", pa.float64())])


def _to_table(X: np.ndarray, y: np.ndarray, layout: str, schema: pa.Schema) -> pa.Table:
    if layout == "list":
        x = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])
        return pa.Table.from_arrays([x, pa.array(y)], schema=schema)
    return pa.Table.from_arrays([pa.array(X[:, j]) for j in range(X.shape[1])]
                                + [pa.array(y)], schema=schema)


class ParquetData:
    """A data set stored as Parquet on storage every worker can read.

    Opening reads metadata only (row counts, schema); :meth:`shard` reads the row groups
    that overlap the shard's rows.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        p = Path(path)
        if p.is_dir():
            files = sorted(str(f) for f in p.glob("*.parquet"))
            if not files:
                raise FileNotFoundError(f"no *.parquet files in directory {self.path}")
        elif p.is_file():
            files = [str(p)]
        else:
            raise FileNotFoundError(f"Parquet data not found: {self.path}")
        self.files = files
        try:
            metas = [pq.read_metadata(f) for f in files]
            schema = pq.read_schema(files[0])
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"cannot read Parquet data {self.path}: {exc}") from None
        self.layout, self.d = _layout_of(schema, self.path)
        for f in files[1:]:
            other = pq.read_schema(f)
            if _layout_of(other, f) != (self.layout, self.d):
                raise ValueError(f"{f} has a different schema from {files[0]}")
        # (file index, row group index, first global row, rows) for every row group.
        self._groups = []
        start = 0
        for fi, meta in enumerate(metas):
            for gi in range(meta.num_row_groups):
                rows = meta.row_group(gi).num_rows
                self._groups.append((fi, gi, start, rows))
                start += rows
        self.n = start
        if self.n < 1:
            raise ValueError(f"Parquet data {self.path} has no rows")
        self._meta = _read_meta(schema)

    def __repr__(self) -> str:
        return f"ParquetData({self.path!r}, d={self.d}, n={self.n})"

    @property
    def w_star(self) -> np.ndarray | None:
        """The planted ``w*`` if the file was written by :func:`write_parquet`, else None."""
        if self._meta and "w_star" in self._meta:
            return np.asarray(self._meta["w_star"], dtype=np.float64)
        return None

    def spec(self) -> dict:
        return {"kind": "parquet", "path": os.path.abspath(self.path), "d": self.d,
                "n": self.n}

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start:stop`` as float64 ``(X, y)``."""
        start = check_int("start", start, minimum=0, maximum=self.n)
        stop = check_int("stop", stop, minimum=start, maximum=self.n)
        X = np.empty((stop - start, self.d))
        y = np.empty(stop - start)
        handles: dict[int, pq.ParquetFile] = {}
        for fi, gi, first, count in self._groups:
            lo, hi = max(start, first), min(stop, first + count)
            if lo >= hi:
                continue
            pf = handles.setdefault(fi, pq.ParquetFile(self.files[fi]))
            table = pf.read_row_group(gi).slice(lo - first, hi - lo)
            Xg, yg = self._to_numpy(table)
            X[lo - start:hi - start], y[lo - start:hi - start] = Xg, yg
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
            raise ValueError(f"Parquet data {self.path} has NaN or inf in rows "
                             f"{start}:{stop}")
        return X, y

    def shard(self, k: int, K: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows of shard ``k`` of ``K`` (same split as :meth:`PlantedReLU.shard`)."""
        return self.rows(*shard_bounds(self.n, k, K))

    def _to_numpy(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        y = table.column("y").to_numpy().astype(np.float64)
        if self.layout == "list":
            flat = table.column("x").combine_chunks().flatten()
            X = flat.to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, self.d)
        else:
            X = np.column_stack([table.column(f"x{j}").to_numpy() for j in range(self.d)])
        return X, y


def _layout_of(schema: pa.Schema, where: str) -> tuple[str, int]:
    expected = ("expected either a column 'x' of fixed_size_list<double>[d] and a "
                "column 'y' of double, or columns x0..x{d-1} and y")
    if "y" not in schema.names:
        raise ValueError(f"{where}: no column 'y'; {expected}")
    if "x" in schema.names:
        t = schema.field("x").type
        if not pa.types.is_fixed_size_list(t) or not pa.types.is_floating(t.value_type):
            raise ValueError(f"{where}: column 'x' has type {t}; {expected}")
        return "list", t.list_size
    d = 0
    while f"x{d}" in schema.names:
        d += 1
    if d == 0:
        raise ValueError(f"{where}: no feature columns; {expected}")
    return "columns", d


def _read_meta(schema: pa.Schema) -> dict | None:
    raw = (schema.metadata or {}).get(_META_KEY)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def as_source(data: object) -> DataSource:
    """Accept a PlantedReLU, a ParquetData, or a path to Parquet data."""
    if isinstance(data, (str, os.PathLike)):
        return ParquetData(data)
    if isinstance(data, (Planted, ParquetData)):
        return data
    raise TypeError("problem must be a planted problem (PlantedReLU, Planted), a "
                    "ParquetData or a path to Parquet "
                    f"data; got {type(data).__name__}")

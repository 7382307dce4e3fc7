"""Parquet data: one file or a directory of ``*.parquet`` files (read in name order),
on a local path or a URI (``file://``, ``s3://``, whatever ``pyarrow.fs`` resolves,
through :func:`ray_relu.storage.resolve_location`).

Columns: the one schema of :mod:`ray_relu.data.columns`. :func:`write_parquet` writes
``layout="list"`` (a column ``x`` of ``fixed_size_list<double>[d]``, the default) or
``layout="columns"`` (``x0 .. x{d-1}``), plus ``y``, and stores the problem's
parameters and ``w_star`` in the schema metadata (key ``ray_relu``), so a fit on the
file can still report ``rel_error``. A file without that metadata has no known ``w*``:
the fit then stops on the relative change of ``w``.

Opening reads metadata only; each worker reads the row groups that overlap its shard,
and of those only the feature and label columns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .._validation import check_choice, check_int
from ..models import Planted
from ..shards import shard_bounds
from ..storage import describe, resolve_location
from .columns import find_columns, rows_dtype, to_arrays

_META_KEY = b"ray_relu"


def write_parquet(problem: Planted, path: str | os.PathLike, *,
                  layout: str = "list", row_group_size: int = 4096) -> Path:
    """Write ``problem``'s rows to one local Parquet file, block by block (bounded
    memory). Returns the path written. See the module docstring for the schema; the
    features are stored in the problem's dtype (float for a ``dtype="float32"``
    problem, double otherwise)."""
    layout = check_choice("layout", layout, ("list", "columns"))
    row_group_size = check_int("row_group_size", row_group_size, minimum=1)
    path = Path(path)
    meta = {"problem": problem.spec(), "w_star": problem.w_star.tolist()}
    schema = _schema(problem.d, layout, pa.from_numpy_dtype(problem.feature_dtype)
                     ).with_metadata({_META_KEY: json.dumps(meta)})
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, problem.n, row_group_size):
            X, y = problem.rows(start, min(problem.n, start + row_group_size))
            writer.write_table(_to_table(X, y, layout, schema))
    return path


def _schema(d: int, layout: str, features: pa.DataType) -> pa.Schema:
    if layout == "list":
        return pa.schema([("x", pa.list_(features, d)), ("y", pa.float64())])
    return pa.schema([(f"x{j}", features) for j in range(d)] + [("y", pa.float64())])


def _to_table(X: np.ndarray, y: np.ndarray, layout: str, schema: pa.Schema) -> pa.Table:
    if layout == "list":
        x = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])
        return pa.Table.from_arrays([x, pa.array(y)], schema=schema)
    return pa.Table.from_arrays([pa.array(X[:, j]) for j in range(X.shape[1])]
                                + [pa.array(y)], schema=schema)


class ParquetData:
    """A data set stored as Parquet where every worker can read it.

    Parameters
    ----------
    location : a file or a directory of ``*.parquet`` files: a local path or a URI
        (``file://``, ``s3://``, ``gs://``, ...).
    filesystem : a ``pyarrow.fs.FileSystem`` (credentials, an endpoint); ``location``
        is then a path on it.
    features, label : the columns, if they are not ``x``/``x0..`` and ``y``
        (:mod:`ray_relu.data.columns`).

    A ``file://`` URI and the plain path are the same source (same rows, same
    :meth:`spec`, so a checkpoint of one resumes with the other).
    """

    def __init__(self, location: str | os.PathLike, filesystem: pafs.FileSystem | None = None,
                 *, features: str | Sequence[str] | None = None, label: str = "y") -> None:
        self.filesystem, root = resolve_location(location, filesystem)
        self.path = describe(self.filesystem, root)
        self.files = _files(self.filesystem, root, self.path)
        try:
            metas = [pq.read_metadata(self._open(i)) for i in range(len(self.files))]
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"cannot read Parquet data {self.path}: {exc}") from None
        schemas = [m.schema.to_arrow_schema() for m in metas]
        self.columns = find_columns(schemas[0], self.path, features, label)
        for f, schema in zip(self.files[1:], schemas[1:]):
            if find_columns(schema, f, features, label) != self.columns:
                raise ValueError(f"{f} has different columns from {self.files[0]}")
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
        if self.columns.d is None:      # list<double>: the width is the first row's
            self.columns = self.columns.with_width(self._read(*self._groups[0][:2], 0, 1)[0]
                                                   .shape[1])
        self.d = self.columns.d
        # Files may differ in float width: the widest one sets the rows' dtype.
        self.feature_dtype = max((rows_dtype(schema, self.columns) for schema in schemas),
                                 key=lambda dtype: dtype.itemsize)
        self._meta = _read_meta(schemas[0])

    def __repr__(self) -> str:
        return f"ParquetData({self.path!r}, d={self.d}, n={self.n})"

    @property
    def w_star(self) -> np.ndarray | None:
        """The planted ``w*`` if the file was written by :func:`write_parquet`, else None."""
        if self._meta and "w_star" in self._meta:
            return np.asarray(self._meta["w_star"], dtype=np.float64)
        return None

    def spec(self) -> dict:
        """The location (as :func:`ray_relu.storage.describe` writes it) and the size."""
        return {"kind": "parquet", "path": self.path, "d": self.d, "n": self.n}

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start:stop`` as ``(X, y)``: ``X`` in :attr:`feature_dtype` (float32
        where every file stores float32 or float16 features, else float64), ``y`` in
        float64."""
        start = check_int("start", start, minimum=0, maximum=self.n)
        stop = check_int("stop", stop, minimum=start, maximum=self.n)
        X = np.empty((stop - start, self.d), dtype=self.feature_dtype)
        y = np.empty(stop - start)
        for fi, gi, first, count in self._groups:
            lo, hi = max(start, first), min(stop, first + count)
            if lo < hi:
                X[lo - start:hi - start], y[lo - start:hi - start] = \
                    self._read(fi, gi, lo - first, hi - lo, lo)
        return X, y

    def shard(self, k: int, K: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows of shard ``k`` of ``K`` (same split as :meth:`Planted.shard`)."""
        return self.rows(*shard_bounds(self.n, k, K))

    def _open(self, fi: int) -> Any:
        return self.filesystem.open_input_file(self.files[fi])

    def _read(self, fi: int, gi: int, offset: int, count: int,
              first_row: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``count`` rows from ``offset`` of row group ``gi`` of file ``fi`` (the data
        set's row ``first_row`` onwards)."""
        with self._open(fi) as f:
            table = pq.ParquetFile(f).read_row_group(gi, columns=self.columns.names)
        where = f"{describe(self.filesystem, self.files[fi])} (row group {gi})"
        return to_arrays(table.slice(offset, count), self.columns, where, first_row)


def _files(filesystem: pafs.FileSystem, root: str, shown: str) -> list[str]:
    info = filesystem.get_file_info(root)
    if info.type == pafs.FileType.Directory:
        found = filesystem.get_file_info(pafs.FileSelector(root, recursive=False))
        files = sorted(i.path for i in found
                       if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
        if not files:
            raise FileNotFoundError(f"no *.parquet files in directory {shown}")
        return files
    if info.type == pafs.FileType.File:
        return [root]
    raise FileNotFoundError(f"Parquet data not found: {shown}")


def _read_meta(schema: pa.Schema) -> dict | None:
    raw = (schema.metadata or {}).get(_META_KEY)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None

"""Which columns of a table are the features and the label, and the table as ``(X, y)``.

Parquet files, pandas DataFrames and Ray Datasets share one schema, checked on their
Arrow schema:

- a list column ``x`` (``fixed_size_list<double>[d]``, ``list<double>`` whose rows all
  have d values, or a Ray Data tensor column of shape ``(d,)``) and a column ``y``;
- or columns ``x0 .. x{d-1}`` and ``y``;
- or the columns named by ``features=``: one name for a list column, a list of names
  for scalar columns (in that order); ``label=`` names the label column (``"y"``).

Values must be floating (float16, float32 or float64) and finite. Features of float16
or float32 type become float32 rows (every feature column must be; otherwise float64),
labels float64 (:func:`ray_relu.data.arrays.feature_dtype`).
Every error names the column, the type found and the type expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import feature_dtype

SCHEMA = ("a list column 'x' (fixed_size_list<double>[d] or list<double>) and a column "
          "'y', or columns x0..x{d-1} and y, or features=[...] and label=...")


@dataclass(frozen=True)
class Columns:
    """The feature and label columns of a table (see the module docstring)."""

    features: tuple[str, ...]     # scalar feature columns, or the one list column
    label: str
    listed: bool                  # whether ``features`` is a single list column
    d: int | None                 # None: a list<...> column; width read from the rows

    @property
    def names(self) -> list[str]:
        """The columns to read."""
        return [*self.features, self.label]

    def with_width(self, d: int) -> "Columns":
        """These columns with the list column's width known."""
        return Columns(self.features, self.label, self.listed, d)


def find_columns(schema: pa.Schema, where: str, features: str | Sequence[str] | None = None,
                 label: str = "y") -> Columns:
    """The :class:`Columns` of ``schema``; a ValueError naming what is missing or wrong."""
    names = list(schema.names)
    if not isinstance(label, str):
        raise TypeError(f"label must be a column name (str), got {type(label).__name__}")
    _require(schema, label, where)
    _check_scalar(schema, label, where)
    if features is None:
        if "x" in names:
            features = "x"
        else:
            features = []
            while f"x{len(features)}" in names:
                features.append(f"x{len(features)}")
            if not features:
                raise ValueError(f"{where}: no feature columns among {names}; expected "
                                 f"{SCHEMA}")
    if isinstance(features, str):
        _require(schema, features, where)
        return Columns((features,), label, True, _list_width(schema, features, where))
    features = tuple(features)
    if not features or not all(isinstance(f, str) for f in features):
        raise TypeError(f"features must be a column name or a non-empty list of column "
                        f"names, got {features!r}")
    if label in features or len(set(features)) < len(features):
        raise ValueError(f"{where}: features {list(features)} repeat a column or include "
                         f"the label {label!r}")
    for name in features:
        _require(schema, name, where)
        _check_scalar(schema, name, where)
    return Columns(features, label, False, len(features))


def _require(schema: pa.Schema, name: str, where: str) -> None:
    if name not in schema.names:
        raise ValueError(f"{where}: no column {name!r}; the columns are "
                         f"{list(schema.names)}; expected {SCHEMA}")


def _check_scalar(schema: pa.Schema, name: str, where: str) -> None:
    t = schema.field(name).type
    if not pa.types.is_floating(t):
        raise ValueError(f"{where}: column {name!r} has type {t}; expected a floating type "
                         f"(double or float): convert the column to float")


def _list_width(schema: pa.Schema, name: str, where: str) -> int | None:
    t = schema.field(name).type
    shape = getattr(t, "shape", None)            # a Ray Data tensor column
    storage = t.storage_type if isinstance(t, pa.ExtensionType) else t
    if not (pa.types.is_list(storage) or pa.types.is_large_list(storage)
            or pa.types.is_fixed_size_list(storage)) \
            or not pa.types.is_floating(storage.value_type) \
            or (shape is not None and len(shape) != 1):
        raise ValueError(f"{where}: column {name!r} has type {t}; expected a list of "
                         f"floats per row (fixed_size_list<double>[d] or list<double>)")
    if shape is not None:
        return int(shape[0])
    return storage.list_size if pa.types.is_fixed_size_list(storage) else None


def to_arrays(table: pa.Table, columns: Columns, where: str,
              first_row: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``table``'s rows as ``(X, y)`` (float32 or float64 ``X``, float64 ``y``; module
    doc), checked finite, shapes ``(rows, d)``; ``first_row`` is the data set's row
    number of the table's first row (for errors)."""
    rows = table.num_rows
    y = _values(table.column(columns.label), where, columns.label)
    if columns.listed:
        name = columns.features[0]
        X = _list_values(table.column(name), rows, columns.d, where, name)
    else:
        X = np.empty((rows, len(columns.features)), dtype=rows_dtype(table.schema, columns))
        for j, name in enumerate(columns.features):
            X[:, j] = _values(table.column(name), where, name, X.dtype)
    _check_finite(y, where, columns.label, first_row)
    if columns.listed:
        _check_finite(X, where, columns.features[0], first_row)
    else:
        for j, name in enumerate(columns.features):
            _check_finite(X[:, j], where, name, first_row)
    return X, y


def _values(column: pa.ChunkedArray, where: str, name: str,
            dtype: np.dtype = np.dtype(np.float64)) -> np.ndarray:
    if column.null_count:
        raise ValueError(f"{where}: column {name!r} has {column.null_count} missing "
                         f"values (null, or NaN that became null); every value must be "
                         f"a finite float")
    return column.to_numpy().astype(dtype, copy=False)


def _list_values(column: pa.ChunkedArray, rows: int, d: int | None, where: str,
                 name: str) -> np.ndarray:
    array = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if array.null_count:
        raise ValueError(f"{where}: column {name!r} has {array.null_count} missing rows")
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    width = d if d is not None else (int(lengths[0]) if rows else 0)
    bad = np.flatnonzero(lengths != width)
    if bad.size:
        raise ValueError(f"{where}: column {name!r} has rows of different lengths (row "
                         f"{bad[0]} has {lengths[bad[0]]} values, expected {width})")
    flat = array.flatten().to_numpy(zero_copy_only=False)
    return flat.astype(feature_dtype(flat.dtype), copy=False).reshape(rows, width)


def rows_dtype(schema: pa.Schema, columns: Columns) -> np.dtype:
    """The dtype of the rows ``X`` read from ``columns`` of ``schema`` (module doc)."""
    bits = []
    for name in columns.features:
        t = schema.field(name).type
        if columns.listed:
            t = (t.storage_type if isinstance(t, pa.ExtensionType) else t).value_type
        bits.append(t.bit_width)
    return np.dtype(np.float32 if max(bits) <= 32 else np.float64)


def _check_finite(values: np.ndarray, where: str, name: str, first_row: int) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row = first_row + int(np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))[0])
        raise ValueError(f"{where}: column {name!r} has NaN or inf (first at row {row}); "
                         f"every value must be finite")

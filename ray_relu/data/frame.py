"""pandas DataFrames as data. pandas is imported only by a caller that has one: this
module never imports it, it reads the frame through pyarrow."""

from __future__ import annotations

from typing import Any, Sequence

import pyarrow as pa

from .arrays import ArrayData
from .columns import find_columns, to_arrays


class FrameData(ArrayData):
    """A pandas DataFrame as a data source: ``FrameData(df, features=None, label="y")``.

    The columns follow the one schema of :mod:`ray_relu.data.columns`: ``x0..x{d-1}``
    and ``y``, a list column ``x`` (each cell an array of d floats) and ``y``, or the
    ``features`` and ``label`` named here. The frame is read once, into float64 arrays
    (then it is an :class:`~ray_relu.data.arrays.ArrayData`: the same shards, the same
    fit as those arrays, and each actor receives only its own rows). Column names are
    compared as strings; the index is ignored.
    """

    def __init__(self, frame: Any, features: str | Sequence[str] | None = None,
                 label: str = "y", w_star: Any = None) -> None:
        table = _arrow(frame)
        columns = find_columns(table.schema, "DataFrame", features, label)
        X, y = to_arrays(table.select(columns.names), columns, "DataFrame")
        super().__init__(X, y, w_star)
        self.columns = columns


def _arrow(frame: Any) -> pa.Table:
    """``frame``'s columns as an Arrow table, one column at a time so that an error
    names the column."""
    arrays, names = [], []
    for name in frame.columns:
        try:
            arrays.append(pa.array(frame[name], from_pandas=False))
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise ValueError(f"DataFrame: column {str(name)!r} (dtype "
                             f"{frame[name].dtype}) cannot be read as numbers: "
                             f"{exc}") from None
        names.append(str(name))
    return pa.Table.from_arrays(arrays, names=names)

"""Small helpers for the experiments' Arrow tables: columns, tags, stacking.

- :func:`column`: a column as a numpy array;
- :func:`tagged` / :func:`stack`: long-format tables with configuration columns.

Plain-text rendering is :func:`ray_relu.tables.text_table`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa


def tagged(table: pa.Table, columns: Sequence[str] | None = None, **tags: Any) -> pa.Table:
    """``table`` (restricted to ``columns`` if given) with constant columns ``tags`` first."""
    if columns is not None:
        table = table.select(list(columns))
    n = table.num_rows
    tag_table = pa.table({k: pa.array([v] * n) for k, v in tags.items()})
    return pa.Table.from_arrays(tag_table.columns + table.columns,
                                names=tag_table.column_names + table.column_names)


def stack(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate tables with equal column names (types unified, e.g. null -> int)."""
    if not tables:
        raise ValueError("nothing to stack: no tables")
    return pa.concat_tables(tables, promote_options="default")


def column(table: pa.Table, name: str) -> np.ndarray:
    """A column as a numpy array."""
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))

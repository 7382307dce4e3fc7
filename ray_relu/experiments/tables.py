"""Small helpers for the experiments' Arrow tables: columns, tags, stacking, text.

- :func:`column`: a column as a numpy array;
- :func:`tagged` / :func:`stack`: long-format tables with configuration columns;
- :func:`text_table`: an aligned plain-text rendering (notebooks and logs, no pandas).
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


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.{digits}g}"
    return "" if value is None else str(value)


def text_table(table: pa.Table, columns: Sequence[str] | None = None, *,
               digits: int = 4) -> str:
    """``table`` (or its ``columns``) as aligned text, floats to ``digits`` significant
    digits."""
    if columns is not None:
        table = table.select(list(columns))
    cells = [table.column_names] + [[_cell(v, digits) for v in row.values()]
                                    for row in table.to_pylist()]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

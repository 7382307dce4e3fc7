"""Plain-text tables: the one renderer behind the CLI, the demo, the notebooks and the
benchmarks.

Rows are an Arrow table or a sequence of dicts; cells are right-aligned under a dashed
rule, floats to ``digits`` significant digits unless a column has its own format::

    >>> print(text_table([{"codec": "fp32", "rel_error": 1.5e-7}], formats={"rel_error": ".1e"}))
    codec  rel_error
    -----  ---------
     fp32    1.5e-07

Depends on nothing else in ray_relu (pyarrow only), so every layer may use it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence, Union

import pyarrow as pa

Rows = Union[pa.Table, Sequence[Mapping[str, Any]]]

__all__ = ["text_table", "format_cell"]


def format_cell(value: Any, spec: str | None = None, *, digits: int = 4) -> str:
    """One cell: ``format(value, spec)`` when ``spec`` is given, else floats to ``digits``
    significant digits; None is an empty cell, NaN is ``nan``."""
    if value is None:
        return ""
    if spec is not None:
        try:
            return format(value, spec)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"format {spec!r} does not apply to {value!r} of type "
                             f"{type(value).__name__}: {exc}") from None
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def text_table(rows: Rows, columns: Sequence[str] | None = None, *,
               formats: Mapping[str, str] | None = None, digits: int = 4) -> str:
    """``rows`` as aligned plain text, one line per row under a header and a rule.

    Parameters
    ----------
    rows : a pyarrow Table, or a sequence of dicts (a key missing from a row is an empty
        cell).
    columns : the columns to show, in order; default all (for dicts, the first row's
        keys).
    formats : per-column format specs for :func:`format`, e.g. ``{"rel_error": ".2e",
        "total_bytes": ","}``; other columns use :func:`format_cell`'s default.
    digits : significant digits of floats without a format.

    A sequence of no dicts renders as ``(no rows)``.
    """
    digits = int(digits)
    if digits < 1:
        raise ValueError(f"digits must be an integer >= 1, got {digits}")
    if isinstance(rows, pa.Table):
        table = rows if columns is None else rows.select(list(columns))
        names, records = table.column_names, table.to_pylist()
    elif isinstance(rows, Sequence) and all(isinstance(r, Mapping) for r in rows):
        if not rows and columns is None:
            return "(no rows)"
        names = list(columns) if columns is not None else list(rows[0])
        records = rows
    else:
        raise TypeError(f"rows must be a pyarrow Table or a sequence of dicts, got "
                        f"{type(rows).__name__}")
    formats = dict(formats or {})
    cells = [list(names)] + [[format_cell(r.get(c), formats.get(c), digits=digits)
                              for c in names] for r in records]
    widths = [max(len(row[i]) for row in cells) for i in range(len(names))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

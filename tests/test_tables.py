"""The one plain-text table renderer, and the fit-summary table built on it."""

import pyarrow as pa
import pytest

from ray_relu.result import summary_table
from ray_relu.tables import format_cell, text_table


def test_dicts_and_arrow_tables_render_alike():
    rows = [{"k": 1, "err": 0.000123456, "name": "qsgd"}, {"k": 10, "err": 2.0, "name": None}]
    text = text_table(rows)
    assert text.splitlines() == [" k        err  name",
                                 "--  ---------  ----",
                                 " 1  0.0001235  qsgd",
                                 "10          2      "]
    assert text_table(pa.Table.from_pylist(rows)) == text


def test_columns_select_and_order_and_missing_keys_are_empty():
    rows = [{"a": 1, "b": 2}, {"a": 3}]
    assert text_table(rows, ["b", "a"]).splitlines() == ["b  a", "-  -", "2  1", "   3"]
    table = pa.table({"a": [1], "b": [2.5]})
    assert text_table(table, ["b"]).splitlines() == ["  b", "---", "2.5"]


def test_per_column_formats_and_digits():
    rows = [{"bytes": 1234567.0, "err": 3.14159e-7, "x": 3.14159}]
    text = text_table(rows, formats={"bytes": ",.0f", "err": ".2e"}, digits=2)
    assert text.splitlines()[-1] == "1,234,567  3.14e-07  3.1"
    assert format_cell(float("nan")) == "nan" and format_cell(None, ".2e") == ""


def test_no_rows():
    assert text_table([]) == "(no rows)"
    assert text_table([], ["a", "bb"]).splitlines() == ["a  bb", "-  --"]


def test_bad_input_says_what_was_wrong():
    with pytest.raises(TypeError, match="rows must be a pyarrow Table or a sequence of "
                                        "dicts, got int"):
        text_table(3)
    with pytest.raises(TypeError, match="sequence of dicts"):
        text_table([1, 2])
    with pytest.raises(ValueError, match=r"format '\.2e' does not apply to 'fp32'"):
        text_table([{"codec": "fp32"}], formats={"codec": ".2e"})
    with pytest.raises(ValueError, match="digits must be an integer >= 1, got 0"):
        text_table([{"a": 1.0}], digits=0)


def test_summary_table_formats_headline_columns_then_comparisons():
    row = {"codec": "qsgd(levels=4)", "converged": True, "iterations": 12,
           "rel_error": 9.87e-7, "bytes_per_iteration": 12345.6, "total_bytes": 148147,
           "wall_s": 0.4567, "replica_divergence": 0.0, "stopping_rule": "rel_error",
           "vs_fp32_bytes": "0.125x"}
    header, rule, line = summary_table([row]).splitlines()
    assert header.split() == ["codec", "converged", "iterations", "rel_error",
                              "bytes_per_iteration", "total_bytes", "wall_s",
                              "replica_divergence", "vs_fp32_bytes"]
    assert line.split() == ["qsgd(levels=4)", "True", "12", "9.87e-07", "12,346", "148,147",
                            "0.46", "0.0e+00", "0.125x"]
    with pytest.raises(ValueError, match="at least one summary row"):
        summary_table([])

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
           "rel_error": 9.87e-7, "startup_bytes": 3282, "bytes_per_iteration": 12345.6,
           "total_bytes": 151429,
           "wall_s": 0.4567, "replica_divergence": 0.0, "stopping_rule": "rel_error",
           "vs_fp32_bytes": "0.125x"}
    header, rule, line = summary_table([row]).splitlines()
    assert header.split() == ["codec", "converged", "iterations", "rel_error",
                              "startup_bytes", "bytes_per_iteration", "total_bytes", "wall_s",
                              "replica_divergence", "vs_fp32_bytes"]
    assert line.split() == ["qsgd(levels=4)", "True", "12", "9.87e-07", "3,282", "12,346", "151,429",
                            "0.46", "0.0e+00", "0.125x"]
    with pytest.raises(ValueError, match="at least one summary row"):
        summary_table([])


def _result(bytes_rows):
    """A FitResult whose history has these (up, down, peer) byte rows."""
    import numpy as np

    from ray_relu.result import FitResult, history_table
    rows = [{"iteration": t, "loss": 0.0, "rel_error": 0.0, "rel_change": 0.0,
             "bytes_up": up, "bytes_down": down, "bytes_peer": peer, "compute_s": 0.0,
             "encode_s": 0.0, "comm_s": 0.0, "wall_s": 0.0}
            for t, (up, down, peer) in enumerate(bytes_rows)]
    return FitResult(w=np.zeros(2), w_star=None, converged=True,
                     iterations=len(rows) - 1, replica_divergence=0.0,
                     history=history_table(rows), stopping_rule="rel_change", step_size=1.0)


def test_summary_names_the_startup_exchange():
    """total_bytes = startup_bytes + iterations x bytes_per_iteration, exactly; the
    start-up row is in the total only (issue 16: 158.6 per iteration vs 172.2 total/T)."""
    r = _result([(100, 50, 0), (10, 20, 0), (10, 20, 1)])
    s = r.summary()
    assert (s["startup_bytes"], s["bytes_per_iteration"], s["total_bytes"]) == (150, 30.5, 211)
    assert s["total_bytes"] == s["startup_bytes"] + s["iterations"] * s["bytes_per_iteration"]
    assert "(+150 at start-up)" in repr(r)
    header = summary_table([{"codec": "x", **s}]).splitlines()[0].split()
    assert header.index("startup_bytes") + 1 == header.index("bytes_per_iteration")
    # No iteration ran: nothing per iteration, everything at start-up.
    s0 = _result([(100, 50, 0)]).summary()
    assert (s0["startup_bytes"], s0["bytes_per_iteration"], s0["total_bytes"]) == \
        (150, 0.0, 150)

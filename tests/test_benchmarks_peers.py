"""The peer benchmarks' (peers, loopback) parts that need neither torch nor a cluster."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import peers
from benchmarks._links import LinkSampler

REPO = Path(__file__).resolve().parent.parent


def test_without_torch_it_prints_the_install_hint(monkeypatch, capsys):
    monkeypatch.setattr(peers, "torch_missing", lambda: True)
    assert peers.main([]) == {}
    assert "make install-peers" in capsys.readouterr().out


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                    reason="torch installed: this would run the whole benchmark")
def test_make_bench_path_exits_0_without_torch():
    out = subprocess.run([sys.executable, "-m", "benchmarks", "peers", "--quick"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert peers.INSTALL_HINT in out.stdout


def test_link_window_interpolates_between_samples():
    sampler = LinkSampler(cluster=None)
    sampler.times = [10.0, 11.0, 12.0]
    sampler.samples = [{"rr-node0": (0, 0)}, {"rr-node0": (100, 50)},
                       {"rr-node0": (300, 50)}]
    assert sampler.between(10.5, 11.5) == {"rr-node0": {"in": 150.0, "out": 25.0}}


def test_per_round_bytes_splits_head_and_workers():
    links = {"rr-node0": {"in": 600, "out": 300},
             "rr-node1": {"in": 30, "out": 60}, "rr-node2": {"in": 90, "out": 60}}
    b = peers.per_round_bytes(links, rounds=3)
    assert (b["head_in"], b["head_out"]) == (200, 100)
    assert b["worker_in"] == 20 and b["worker_in_range"] == [10, 30]


def test_our_candidates_cover_both_modes_and_downlinks():
    labels = [s["label"] for s in peers.ours_settings(10000, quick=False)]
    assert len(labels) == 18 == len(set(labels))
    assert {"ours qsgd s=400 master down=fp32", "ours qsgd s=141 master down=exact"} <= set(labels)
    assert {f"ours qsgd s=141 all-to-all {route}" for route in ("p2p", "relay", "push")} \
        <= set(labels)
    assert {s["dtype"] for s in peers.ours_settings(10000, quick=False)} == {"float32"}


def test_rates_are_a_checked_subset_in_the_given_order(capsys):
    assert peers.parse_rates("1gbit, 100mbit") == ["1gbit", "100mbit"]
    for bad in ("", "100mbit,100mbit", "5mbit"):
        with pytest.raises(ValueError, match="expected distinct rates from 10mbit"):
            peers.parse_rates(bad)
    with pytest.raises(SystemExit):
        peers.main(["--rates", "5mbit"])
    assert "--rates '5mbit'" in capsys.readouterr().err


def test_iteration_counts_are_reused_only_for_the_same_d_and_settings(tmp_path):
    relay = {"label": "ours a", "mode": "all-to-all", "s": 3, "route": "relay"}
    push = dict(relay, label="ours a push", route="push")
    other = dict(relay, label="ours b", s=5)
    path = tmp_path / "peers.json"
    counts = {"ours a": {"iterations": 7, "converged": True},
              "DDP fp32": {"iterations": 9, "converged": True},
              "ours other": {"iterations": 1, "converged": True}}
    path.write_text(json.dumps({"d": 100, "iterations": counts, "ours_rows": peers.ROWS,
                                "trajectories": peers.by_trajectory([relay], counts)}))
    # A new route of a counted setting reuses its trajectory's count; s = 5 is new.
    assert peers.load_iterations(path, 100, [relay, push], ["fp32"]) == {
        "ours a": counts["ours a"], "ours a push": counts["ours a"],
        "DDP fp32": counts["DDP fp32"]}
    with pytest.raises(ValueError, match="counted at d = 100, this run has d = 200"):
        peers.load_iterations(path, 200, [relay], ["fp32"])
    with pytest.raises(ValueError, match="no iteration count for ours b, DDP fp16$"):
        peers.load_iterations(path, 100, [relay, other], ["fp32", "fp16"])
    # Counts of float64 rows (runs before ours_rows was recorded) are another data set.
    path.write_text(json.dumps({"d": 100, "iterations": counts}))
    with pytest.raises(ValueError, match="our counts are for float64 rows, this run "
                                         "fits float32 rows"):
        peers.load_iterations(path, 100, [relay], ["fp32"])


def test_loopback_without_torch_prints_the_install_hint(monkeypatch, capsys):
    from benchmarks import loopback
    monkeypatch.setattr(loopback, "torch_missing", lambda: True)
    assert loopback.main([]) == {}
    assert "make install-peers" in capsys.readouterr().out


def test_loopback_candidates_are_fp32_and_qsgd_in_both_modes():
    from benchmarks import loopback
    settings = loopback.ours_settings(10000)
    assert set(settings) == {"ours fp32 master", "ours fp32 all-to-all",
                             "ours qsgd s=200 master", "ours qsgd s=200 all-to-all"}
    assert settings["ours qsgd s=200 master"]["codec_options"] == {"levels": 200}


def _row(setting, family, mode, round_s):
    return {"setting": setting, "family": family, "mode": mode, "round_s": round_s,
            "window": [0.0, round_s * 10], "window_rounds": 10}


def test_confirmation_alternates_the_sides_and_decides_by_the_median(monkeypatch):
    rows = [_row("a2a fast", "ours", "all-to-all", 1.0), _row("a2a slow", "ours",
            "all-to-all", 2.0), _row("m", "ours", "master", 3.0),
            _row("DDP fp32", "ddp", "fp32", 4.0)]
    counts = {r["setting"]: {"iterations": 100, "converged": True} for r in rows}
    rows = peers.with_targets(rows, counts)
    assert peers.finalists(rows) == ["m", "a2a fast"]
    calls, times = [], iter([5.0, 7.0, 9.0, 6.0, 8.0, 1.0])   # ours, ddp, ddp, ours...

    def ours(cluster, d, settings, rounds):
        calls.append(("ours", [s["label"] for s in settings], rounds))
        return [_row(s["label"], "ours", "x", 0.0) | {"window": [0.0, 10 * next(times)]}
                for s in settings[:1]]

    def ddp(cluster, d, hooks, rounds, allreduce=True):
        calls.append(("ddp", hooks, rounds, allreduce))
        return [_row("DDP fp32", "ddp", "fp32", 0.0) | {"window": [0.0, 10 * next(times)]}]

    monkeypatch.setattr(peers, "_ours_rows", ours)
    monkeypatch.setattr(peers, "_ddp_rows", ddp)
    settings = [{"label": label} for label in ("a2a fast", "a2a slow", "m")]
    peers.confirm(None, 100, rows, settings, ["fp32"], rounds=30, repeats=3)
    assert calls == [("ours", ["a2a fast", "m"], 30), ("ddp", ["fp32"], 30, False),
                     ("ddp", ["fp32"], 30, False), ("ours", ["a2a fast", "m"], 30),
                     ("ours", ["a2a fast", "m"], 30), ("ddp", ["fp32"], 30, False)]
    by = {r["setting"]: r for r in peers.with_targets(rows, counts)}
    assert by["a2a fast"]["round_s_runs"] == [5.0, 6.0, 8.0]
    assert by["a2a fast"]["round_s"] == 6.0 and by["a2a fast"]["first_pass_round_s"] == 1.0
    assert by["DDP fp32"]["round_s"] == 7.0
    # The unconfirmed a2a row keeps its first pass and no longer competes.
    assert by["a2a slow"]["round_s"] == 2.0
    assert [g["ours_best"] for g in peers.goals({"100mbit": rows})] == ["a2a fast"]
    assert peers.goals({"100mbit": rows})[0]["speedup"] == pytest.approx(7.0 / 6.0)


def test_repeats_must_not_be_negative(capsys):
    with pytest.raises(SystemExit):
        peers.main(["--repeats", "-1"])
    assert "--repeats -1: expected 0 or more" in capsys.readouterr().err

"""The experiments package: analysis helpers, specs, runners, each experiment on tiny
sizes, ``reproduce`` and its command line. (The claims themselves: test_science.py.)"""

import inspect
import json

import matplotlib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_relu.cli import main
from ray_relu.experiments import (EXPERIMENTS, PROFILES, ExperimentResult, communication,
                                  compressors, convergence, noise, quantization,
                                  read_metadata, reproduce, sample_complexity)
from ray_relu.experiments import analysis
from ray_relu.codecs import available_codecs
from ray_relu.experiments.codec_specs import parse_codec, parse_codecs
from ray_relu.experiments.sample_complexity import run_grid_point
from ray_relu.experiments.runs import batch_rows, derived_seed, history, parallel_map
from ray_relu.experiments.tables import stack, tagged
from ray_relu.tables import text_table
from ray_relu.models import PlantedReLU

matplotlib.use("Agg")


# -- analysis --------------------------------------------------------------------------
def test_geometric_rate_of_an_exact_geometric_curve():
    t = np.arange(60)
    fit = analysis.geometric_rate(t, 0.5 * 0.9 ** t)
    assert fit.rate == pytest.approx(0.9)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.rate_first_half == pytest.approx(0.9)
    assert fit.rate_second_half == pytest.approx(0.9)
    assert fit.half_mismatch == pytest.approx(0.0, abs=1e-9)
    assert fit.iterations_per_decade == pytest.approx(-1 / np.log10(0.9))
    # The phase stops one decade above the lowest error (the default factor 10).
    assert fit.start == 0 and 0.5 * 0.9 ** fit.stop <= 10 * 0.5 * 0.9 ** 59
    assert 0.5 * 0.9 ** (fit.stop - 1) > 10 * 0.5 * 0.9 ** 59


def test_geometric_rate_ignores_a_plateau_and_accepts_a_known_floor():
    t = np.arange(100)
    err = np.maximum(0.8 ** t, 1e-6) * (1 + 0.01 * np.sin(t))
    assert analysis.geometric_rate(t, err).rate == pytest.approx(0.8, rel=0.01)
    fit = analysis.geometric_rate(t, err, until=2e-6)
    assert fit.rate == pytest.approx(0.8, rel=0.01) and fit.stop < 62


def test_geometric_rate_of_too_short_or_empty_curves_is_nan():
    assert np.isnan(analysis.geometric_rate([0, 1], [1.0, 0.5]).rate)
    assert np.isnan(analysis.geometric_rate([0, 1, 2], [0.0, 0.0, 0.0]).rate)
    with pytest.raises(ValueError, match="same length"):
        analysis.geometric_rate([0, 1, 2], [1.0, 0.5])


def test_crossings_floors_and_slopes():
    assert analysis.first_crossing([1, 2, 3], [0.0, 0.25, 1.0], 0.5) == pytest.approx(2 + 1 / 3)
    assert analysis.first_crossing([1, 2], [0.6, 1.0], 0.5) == 1
    assert np.isnan(analysis.first_crossing([1, 2], [0.0, 0.1], 0.5))
    with pytest.raises(ValueError, match="increasing"):
        analysis.first_crossing([2, 1], [0, 1], 0.5)
    assert analysis.error_floor([5, 4, 1, 1, 3, 1], tail=0.5) == 1
    with pytest.raises(ValueError):
        analysis.error_floor([1.0], tail=2)
    assert analysis.first_reach([0, 1, 2], [1, 0.1, 0.01], 0.1) == 1
    assert np.isnan(analysis.first_reach([0, 1], [1, 0.5], 0.1))
    x = np.array([1e-3, 1e-2, 1e-1])
    slope, r2 = analysis.loglog_slope(x, 3 * x ** 1.5)
    assert slope == pytest.approx(1.5) and r2 == pytest.approx(1.0)


# -- specs and runners -------------------------------------------------------------------
def test_codec_specs():
    assert parse_codec("fp32", 100).codec == "fp32"
    q = parse_codec("qsgd:sqrt", 1000)
    assert (q.codec, q.levels, q.label) == ("qsgd", 32, "qsgd s=32 (sqrt d)")
    assert parse_codec("qsgd:4", 10).options == {"levels": 4}
    plain = parse_codec("fp16:none", 10)
    assert (plain.codec, plain.options, plain.levels) == ("fp16", {"scale": "none"}, None)
    assert plain.label == "fp16 scale=none"
    assert parse_codec("qsgd", 10).options == {}                     # QSGD's defaults
    top = parse_codec("topk:5", 100)                    # any registered codec, first param
    assert (top.codec, top.options, top.label) == ("topk", {"k": 5}, "topk k=5")
    top = parse_codec("topk:ratio=0.05,levels=3", 100)             # any parameters
    assert (top.options, top.label) == ({"ratio": 0.05, "levels": 3},
                                        "topk ratio=0.05,levels=3")
    for bad, match in (("qsgd:0", "'qsgd:0': levels must be an integer >= 1"),
                       ("qsgd:x", "'qsgd:x': levels"), ("fp16:max", "'fp16:max': scale"),
                       ("qsgd:", "unknown codec spec"), (4, "codec spec must be a string"),
                       ("int8", r"unknown codec spec 'int8'; use a codec name \("
                                + ", ".join(available_codecs()) + r"\)"),
                       ("topk", "'topk': give exactly one of k"),
                       ("topk:ratio", "'topk:ratio': k must be an integer"),
                       ("topk:k=2,r=1", r"'topk:k=2,r=1': unknown parameter\(s\) 'r'"),
                       ("qsgd:levels=", "'qsgd:levels=': levels must be"),
                       ("qsgd:=3", r"codec spec 'qsgd:=3' must be KEY=VALUE")):
        with pytest.raises(ValueError, match=match):
            parse_codec(bad, 100)
    with pytest.raises(ValueError, match="duplicate"):
        parse_codecs(["fp32", "fp32"], 10)
    with pytest.raises(ValueError, match="empty"):
        parse_codecs([], 10)


def test_seeds_batches_and_tables():
    seeds = {derived_seed(s, k) for s in range(3) for k in range(3)}
    assert len(seeds) == 9 and derived_seed(0, 1) == derived_seed(0, 1)
    assert batch_rows(-1, 100, 4) == 25 and batch_rows(None, 100, 4) is None
    assert batch_rows(7, 100, 4) == 7
    with pytest.raises(ValueError):
        batch_rows(-2, 100, 4)
    t = tagged(pa.table({"a": [1, 2], "b": [3, 4]}), ["a"], k=1)
    assert t.column_names == ["k", "a"] and t.column("k").to_pylist() == [1, 1]
    assert stack([t, t]).num_rows == 4
    text = text_table(pa.table({"x": [1.23456, float("nan")], "s": ["a", None]}), digits=3)
    assert text.splitlines() == ["   x  s", "----  -", "1.23  a", " nan   "]
    with pytest.raises(ValueError):
        stack([])


def test_parallel_map_equals_serial(ray_session):
    # Every job carries its seeds, so Ray tasks give exactly the serial results.
    jobs = [(8, n, 2, 50, 1e-6, None, 0) for n in (8, 40)]
    serial = parallel_map(run_grid_point, jobs)
    assert parallel_map(run_grid_point, jobs, parallel=True) == serial
    assert [len(r) for r in serial] == [2, 2]


def test_history_engines_agree(ray_session):
    problem = PlantedReLU(10, 80, seed=1)
    kwargs = dict(codec="fp64", workers=2, batch_size=20, iterations=15, tol=0.0, seed=3)
    a, b = history(problem, engine="ray", **kwargs), history(problem, engine="reference", **kwargs)
    np.testing.assert_allclose(a.column("rel_error").to_numpy(),
                               b.column("rel_error").to_numpy(), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="engine"):
        history(problem, engine="spark", **kwargs)


# -- the experiments on tiny sizes ---------------------------------------------------------
def _check_result(result, name, columns, tmp_path):
    assert isinstance(result, ExperimentResult) and result.name == name
    assert isinstance(result.table, pa.Table) and result.table.num_rows > 0
    assert set(columns) <= set(result.table.column_names)
    assert isinstance(result.curves, pa.Table) and result.curves.num_rows > 0
    assert isinstance(result.figure, matplotlib.figure.Figure)
    assert isinstance(result.claim, str) and result.claim.endswith(".")
    assert isinstance(result.holds, bool)
    json.dumps(result.params)
    paths = result.save(tmp_path)
    assert [p.name for p in paths] == [f"{name}.parquet", f"{name}_curves.parquet",
                                       f"{name}.png"]
    assert pq.read_table(paths[0]).num_rows == result.table.num_rows
    assert read_metadata(paths[1])["claim"] == result.claim
    matplotlib.pyplot.close(result.figure)


def test_convergence_tiny(tmp_path):
    r = convergence(d=20, batch_sizes=(8, None), engine="reference", tol=1e-8)
    _check_result(r, "convergence", ["batch_size", "rate", "r2", "rows_per_decade"], tmp_path)
    assert r.table.column("batch_size").to_pylist() == [8, 160]
    assert r.holds
    with pytest.raises(ValueError, match="batch_sizes"):
        convergence(d=20, batch_sizes=(), engine="reference")
    with pytest.raises(ValueError, match="batch_size"):
        convergence(d=20, batch_sizes=(1000,), engine="reference")


def test_sample_complexity_tiny(tmp_path):
    r = sample_complexity(dims=(10,), ratios=(0.5, 8.0), trials=2, iterations=500)
    _check_result(r, "sample_complexity", ["d", "n_over_d", "success_probability",
                                           "threshold_n_over_d"], tmp_path)
    assert r.table.column("success_probability").to_pylist() == [0.0, 1.0]
    assert r.curves.num_rows == 4
    with pytest.raises(ValueError, match="increasing"):
        sample_complexity(dims=(10,), ratios=(2.0, 1.0))
    with pytest.raises(ValueError, match="batch_fraction"):
        sample_complexity(dims=(10,), ratios=(1.0, 2.0), batch_fraction=2.0)


def test_noise_tiny(tmp_path):
    r = noise(d=20, sigmas=(0.0, 0.01, 0.1), iterations=200, engine="reference")
    _check_result(r, "noise", ["sigma", "floor", "floor_over_sigma", "rate"], tmp_path)
    with pytest.raises(ValueError, match="positive"):
        noise(d=20, sigmas=(0.0,), engine="reference")


def test_quantization_and_communication_tiny(ray_session, tmp_path):
    q = quantization(d=30, workers=2, codecs=("fp32", "qsgd:2"), iterations=400)
    _check_result(q, "quantization", ["codec", "mode", "rate", "bits_per_coord",
                                      "gradient_bytes_per_iter", "bytes_vs_first",
                                      "same_trajectory_as_master"], tmp_path)
    assert q.table.column("same_trajectory_as_master").to_pylist() == [None, True, None, True]
    c = communication(d=30, workers=(1, 2), codecs=("qsgd:2",), modes=("all-to-all",),
                      iterations=400)
    _check_result(c, "communication", ["workers", "bytes_to_target", "wall_s_to_target",
                                       "setup_s"], tmp_path)
    # One worker exchanges no gradient with anyone in all-to-all mode; all that moves
    # are the driver's recovery snapshots of w (exact, 8d + 29 bytes each).
    alone = c.table.to_pylist()[0]
    assert alone["workers"] == 1 and alone["gradient_bytes_to_target"] == 0
    assert alone["bytes_to_target"] % (8 * 30 + 29) == 0
    with pytest.raises(ValueError, match="mode"):
        quantization(d=30, modes=("ring",))
    with pytest.raises(ValueError, match="codec spec"):
        communication(d=30, codecs=("int8",))


def test_compressors_tiny(ray_session, tmp_path):
    r = compressors(d=12, workers=2, codecs=("fp32", "qsgd s=16 dense", "sign"),
                    iterations=600)
    _check_result(r, "compressors", ["codec", "error_feedback", "bytes_to_target",
                                     "rel_error_at_equal_bytes"], tmp_path)
    rows = {(x["codec"], x["error_feedback"]): x for x in r.table.to_pylist()}
    assert len(rows) == 6 and all(x["reached_target"] for x in rows.values())
    # sign's message is 29 + 8 + 2 bytes against fp32's 29 + 4 * 12 (headers weigh at d = 12)
    assert rows["sign", False]["bytes_per_iter"] < rows["fp32", False]["bytes_per_iter"] / 1.5
    # a matrix of parameters brings PowerSGD in; the table records the model
    h = compressors(d=6, workers=2, model="hidden", codecs=("powersgd r=1",),
                    feedback=(True,), iterations=400, target=1e-3)
    assert h.params["model"]["id"] == "hidden" and h.table.num_rows == 1
    with pytest.raises(ValueError, match="unknown compressor"):
        compressors(d=12, codecs=("zip",))


# -- reproduce and the command line --------------------------------------------------------
def test_profiles_cover_every_experiment_with_valid_arguments():
    for name, kwargs in PROFILES.items():
        assert set(kwargs) == set(EXPERIMENTS), name
        for experiment, arguments in kwargs.items():
            inspect.signature(EXPERIMENTS[experiment]).bind(**arguments, seed=0)


def test_reproduce_writes_tables_figures_and_summary(ray_session, tmp_path):
    lines = []
    results = reproduce("smoke", tmp_path, only=["noise", "sample_complexity"],
                        log=lines.append)
    assert list(results) == ["sample_complexity", "noise"]
    names = {p.name for p in tmp_path.iterdir()}
    assert {"noise.parquet", "noise_curves.parquet", "noise.png", "overview.png",
            "summary.md", "summary.json", "sample_complexity.png"} <= names
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [e["name"] for e in summary["experiments"]] == ["sample_complexity", "noise"]
    assert results["noise"].claim in (tmp_path / "summary.md").read_text()
    assert any("noise" in line for line in lines)
    with pytest.raises(ValueError, match="unknown experiment"):
        reproduce("smoke", tmp_path, only=["nope"])
    with pytest.raises(ValueError, match="profile"):
        reproduce("huge", tmp_path)


def test_cli_reproduce(ray_session, tmp_path, capsys):
    assert main(["reproduce", "--profile", "smoke", "--only", "noise", "--out",
                 str(tmp_path)]) == 0
    assert (tmp_path / "noise.parquet").exists()
    assert "noise" in capsys.readouterr().out
    assert main(["reproduce", "--quick", "--profile", "full", "--out", str(tmp_path)]) == 2
    assert "contradicts" in capsys.readouterr().err
    assert main(["reproduce", "--profile", "smoke", "--only", "bogus", "--out",
                 str(tmp_path)]) == 2

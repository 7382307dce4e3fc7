"""Every data source against the same rows as numpy arrays: histories on a real local
Ray (both modes), shards for every K, file:// URIs, what travels to the actors, and
the errors that name what is wrong."""

import os
import pickle
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import ray.data

from ray_relu import PlantedReLU, fit
from ray_relu.checkpoint import CheckpointError
from ray_relu.data import (ArrayData, FrameData, ParquetData, RayDatasetData, as_source,
                           worker_sources, write_parquet)
from ray_relu.reference import sgd
from ray_relu.result import DETERMINISTIC_COLUMNS

pytestmark = pytest.mark.usefixtures("ray_session")
MODES = ("master", "all-to-all")
PROBLEM = PlantedReLU(d=6, n=90, noise=0.05, seed=3)
X, Y = PROBLEM.data()
W_STAR = PROBLEM.w_star
RUN = dict(codec="qsgd", codec_options={"levels": 2}, workers=3, batch_size=30,
           iterations=6, tol=0, seed=2, progress=False)


def frame(layout="columns"):
    if layout == "list":
        return pd.DataFrame({"x": list(X), "y": Y})
    return pd.DataFrame({f"x{j}": X[:, j] for j in range(X.shape[1])} | {"y": Y})


def parquet_dir(tmp_path):
    """The rows in two files of a directory, with no w* in the metadata."""
    folder = tmp_path / "parts"
    folder.mkdir()
    table = pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 6), "y": Y})
    pq.write_table(table.slice(0, 50), folder / "a.parquet", row_group_size=17)
    pq.write_table(table.slice(50), folder / "b.parquet", row_group_size=17)
    return folder


# Each source of the rows (X, Y), and whether it knows w* (then compared with
# ArrayData(X, Y, W_STAR), else with ArrayData(X, Y)).
SOURCES = {
    "planted": (lambda tmp: PROBLEM, True),
    "tuple": (lambda tmp: (X, Y), False),
    "frame columns": (lambda tmp: FrameData(frame(), w_star=W_STAR), True),
    "frame list column": (lambda tmp: frame("list"), False),
    "parquet file": (lambda tmp: write_parquet(PROBLEM, tmp / "d.parquet",
                                               row_group_size=13), True),
    "parquet directory": (lambda tmp: str(parquet_dir(tmp)), False),
    "ray dataset": (lambda tmp: RayDatasetData(ray.data.from_pandas(frame()),
                                               w_star=W_STAR), True),
    "ray dataset, tensor column, blocks": (
        lambda tmp: ray.data.from_items([{"x": X[i], "y": Y[i]} for i in range(len(Y))],
                                        override_num_blocks=7), False),
}


def assert_same_fit(a, b):
    for name in DETERMINISTIC_COLUMNS:
        np.testing.assert_array_equal(np.asarray(a.history.column(name)),
                                      np.asarray(b.history.column(name)), err_msg=name)
    np.testing.assert_array_equal(a.w, b.w)


_BASELINES = {}


def baseline(mode, knows_w_star):
    key = (mode, knows_w_star)
    if key not in _BASELINES:
        arrays = ArrayData(X, Y, W_STAR if knows_w_star else None)
        _BASELINES[key] = fit(arrays, mode=mode, **RUN)
    return _BASELINES[key]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(SOURCES))
def test_each_source_gives_the_history_of_its_arrays(name, mode, tmp_path):
    make, knows_w_star = SOURCES[name]
    result = fit(make(tmp_path), mode=mode, **RUN)
    expected = baseline(mode, knows_w_star)
    assert result.stopping_rule == ("rel_error" if knows_w_star else "rel_change")
    assert_same_fit(result, expected)


def test_arrays_fit_is_the_reference_to_the_bit():
    data = ArrayData(X, Y, W_STAR)
    result = fit(data, mode="all-to-all", **{**RUN, "codec": "fp64", "codec_options": None})
    ref = sgd(data, **{k: v for k, v in RUN.items() if k != "progress"}
              | {"codec": "fp64", "codec_options": None})
    np.testing.assert_array_equal(np.asarray(result.history.column("loss")),
                                  np.asarray(ref.history.column("loss")))
    np.testing.assert_array_equal(result.w, ref.iterates[-1])


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_gives_the_same_rows_for_every_K(name, tmp_path):
    source = as_source(SOURCES[name][0](tmp_path))
    assert (source.n, source.d) == X.shape
    for K in (1, 2, 4, 7):
        Xs, ys = zip(*(source.shard(k, K) for k in range(K)))
        np.testing.assert_array_equal(np.concatenate(Xs), X, err_msg=f"K={K}")
        np.testing.assert_array_equal(np.concatenate(ys), Y, err_msg=f"K={K}")


def test_a_file_uri_is_the_same_fit_and_fingerprint_as_the_path(tmp_path):
    path = write_parquet(PROBLEM, tmp_path / "d.parquet", row_group_size=20)
    by_path = fit(str(path), mode="all-to-all", **RUN)
    by_uri = fit(path.as_uri(), mode="all-to-all", **RUN)
    assert path.as_uri().startswith("file://")
    assert_same_fit(by_path, by_uri)
    assert by_uri.config["data"] == by_path.config["data"]
    assert by_uri.config["data"]["path"] == str(path)
    folder = parquet_dir(tmp_path)
    assert ParquetData(folder.as_uri()).spec() == ParquetData(folder).spec()


def test_parquet_accepts_a_pyarrow_filesystem(tmp_path):
    import pyarrow.fs as pafs
    path = write_parquet(PROBLEM, tmp_path / "d.parquet")
    source = ParquetData(str(path), filesystem=pafs.LocalFileSystem())
    np.testing.assert_array_equal(source.shard(1, 3)[0], PROBLEM.shard(1, 3)[0])
    np.testing.assert_array_equal(source.w_star, W_STAR)


def test_parquet_written_by_pandas_with_other_column_names(tmp_path):
    df = pd.DataFrame({"emb": list(X), "target": Y, "note": ["a"] * len(Y)})
    df.to_parquet(tmp_path / "p.parquet")           # emb: list<double>, variable size
    source = ParquetData(tmp_path / "p.parquet", features="emb", label="target")
    assert source.d == 6
    np.testing.assert_array_equal(source.rows(0, source.n)[0], X)


def test_in_memory_sources_send_each_actor_its_own_rows_only():
    data = ArrayData(X, Y)
    shipped = worker_sources(data, 3)
    assert all(a is b for a, b in zip(shipped, worker_sources(data, 3)))  # once per K
    assert all(len(pickle.dumps(s)) < 1000 for s in shipped)   # refs, not rows
    for k, item in enumerate(shipped):
        np.testing.assert_array_equal(item.shard(k, 3)[0], data.shard(k, 3)[0])
    with pytest.raises(ValueError, match="shard 0 of 3, not 1 of 3"):
        shipped[0].shard(1, 3)


@pytest.mark.parametrize("mode, make", [
    ("all-to-all", lambda: ArrayData(X, Y, W_STAR)),
    ("master", lambda: RayDatasetData(ray.data.from_pandas(frame()), w_star=W_STAR))])
def test_a_killed_worker_refetches_its_rows_and_the_history_is_unchanged(mode, make):
    def kill_worker_1(record, workers):
        if record.iteration == 3:
            os.kill(ray.get(workers[1].info.remote())["pid"], signal.SIGKILL)
    run = RUN | {"iterations": 12}     # the replay after round 3 ends before the fit
    hit = fit(make(), mode=mode, on_round=kill_worker_1, **run)
    assert hit.restarts >= 1
    assert_same_fit(hit, fit(PROBLEM, mode=mode, **run))


def test_a_lazy_ray_pipeline_gives_the_rows_in_order():
    ds = ray.data.from_pandas(frame()).repartition(5) \
        .map_batches(lambda b: b, batch_format="pyarrow")
    source = RayDatasetData(ds, w_star=W_STAR)
    assert source.spec() == {"kind": "ray_dataset", "n": 90, "d": 6,
                             "columns": ["x0", "x1", "x2", "x3", "x4", "x5", "y"]}
    result = fit(source, mode="master", **RUN)
    assert_same_fit(result, baseline("master", True))


def test_a_frame_is_the_same_data_as_its_arrays_for_checkpoints(tmp_path):
    assert FrameData(frame()).spec() == ArrayData(X, Y).spec()
    assert ArrayData(X + 1e-12, Y).spec() != ArrayData(X, Y).spec()
    path = tmp_path / "ck.npz"
    fit((X, Y), checkpoint=path, **RUN | {"iterations": 3})
    resumed = fit(frame(), resume=path, **RUN)
    assert_same_fit(resumed, baseline("master", False))
    with pytest.raises(CheckpointError, match="data"):
        fit((X + 1e-12, Y), resume=path, **RUN)


@pytest.mark.parametrize("data, error, message", [
    ((X[:, 0], Y), ValueError, r"X must be 2-D .* got shape \(90,\); one feature"),
    ((X, Y[:, None]), ValueError, r"y must be 1-D .* use y.ravel\(\)"),
    ((X, Y[:-1]), ValueError, "X has 90 rows but y has 89 labels"),
    ((X.astype(int), Y), ValueError, "X must hold floats .* got dtype int64"),
    ((X, Y.astype(str)), ValueError, "y must hold floats"),
    ((np.where(np.arange(90)[:, None] == 7, np.nan, X), Y), ValueError,
     r"X has NaN or inf at index \(7, 0\)"),
    ((X, Y, W_STAR), ValueError, r"must be \(X, y\), got 3 items"),
    (X, TypeError, "one array of shape .*tuple \\(X, y\\)"),
    ({"X": X}, TypeError, "data must be a planted problem .* got dict"),
])
def test_bad_data_names_what_is_wrong(data, error, message):
    with pytest.raises(error, match=message):
        fit(data, progress=False)


@pytest.mark.parametrize("change, message", [
    (lambda df: df.drop(columns="y"), "DataFrame: no column 'y'; the columns are"),
    (lambda df: df.assign(x2=["a"] * len(df)),
     "column 'x2' has type (large_)?string; expected a floating type"),
    (lambda df: df.assign(y=np.arange(len(df))), "column 'y' has type int64"),
    (lambda df: df.assign(x4=np.where(np.arange(len(df)) == 5, np.nan, df.x4)),
     r"column 'x4' has NaN or inf \(first at row 5\)"),
    (lambda df: df.rename(columns=lambda c: c.upper()), "no column 'y'"),
    (lambda df: df.drop(columns=[f"x{j}" for j in range(6)]),
     "no feature columns among \\['y'\\]"),
])
def test_bad_frames_name_the_column_and_the_type(change, message):
    with pytest.raises(ValueError, match=message):
        fit(change(frame()), progress=False)


def test_bad_list_columns_and_explicit_columns():
    ragged = pd.DataFrame({"x": [X[0], X[1][:4]], "y": Y[:2]})
    with pytest.raises(ValueError, match="rows of different lengths .*row 1 has 4"):
        FrameData(ragged)
    with pytest.raises(ValueError, match="column 'x' has type list<item: int64>"):
        FrameData(pd.DataFrame({"x": [[1, 2], [3, 4]], "y": [0.0, 1.0]}))
    df = frame().rename(columns={"y": "label"})
    source = FrameData(df, features=["x5", "x0"], label="label")
    np.testing.assert_array_equal(source.X, X[:, [5, 0]])
    with pytest.raises(ValueError, match="include the label"):
        FrameData(df, features=["x0", "label"], label="label")
    with pytest.raises(ValueError, match="no column 'z'"):
        FrameData(df, features=["z"], label="label")


def test_bad_parquet_and_ray_datasets_name_the_column(tmp_path):
    pq.write_table(pa.table({"x0": [1.0, 2.0], "y": ["a", "b"]}), tmp_path / "s.parquet")
    with pytest.raises(ValueError, match="s.parquet: column 'y' has type string"):
        fit(tmp_path / "s.parquet", progress=False)
    with pytest.raises(FileNotFoundError, match="not found"):
        ParquetData(tmp_path.as_uri() + "/missing.parquet")
    with pytest.raises(ValueError, match="Ray Dataset: column 'y' has type int64"):
        RayDatasetData(ray.data.from_items([{"x0": 1.0, "y": 1}, {"x0": 2.0, "y": 0}]))
    nan = frame().assign(x1=np.where(np.arange(90) == 60, np.nan, X[:, 1]))
    with pytest.raises(ValueError, match=r"shard 2 of 3: column 'x1' has 1 missing"):
        RayDatasetData(ray.data.from_pandas(nan)).shard(2, 3)
    inf = frame().assign(x1=np.where(np.arange(90) == 70, np.inf, X[:, 1]))
    with pytest.raises(ValueError, match=r"shard 2 of 3: column 'x1' has NaN or inf "
                                         r"\(first at row 70\)"):
        RayDatasetData(ray.data.from_pandas(inf)).shard(2, 3)
    pq.write_table(pa.Table.from_pandas(inf, preserve_index=False), tmp_path / "inf.parquet",
                   row_group_size=32)
    with pytest.raises(ValueError, match=r"inf.parquet \(row group 2\): column 'x1' has "
                                         r"NaN or inf \(first at row 70\)"):
        ParquetData(tmp_path / "inf.parquet").shard(1, 2)


def test_pandas_and_ray_are_imported_only_when_needed():
    code = "\n".join([
        "import sys, numpy as np",
        "import ray_relu, ray_relu.data",
        "from ray_relu.reference import sgd",
        "assert 'pandas' not in sys.modules",
        "X = np.random.default_rng(0).standard_normal((40, 3))",
        "y = np.maximum(X @ np.ones(3), 0)",
        "run = sgd((X, y), workers=2, iterations=50)",
        "assert run.history.num_rows == 51",
        "assert 'ray' not in sys.modules",    # the reference runs arrays without Ray
        # (pyarrow's from_pylist may import pandas when it is installed: not ours)
    ])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


# ---- float32 rows: kept in float32 by every container, fitted as their float64 copy ----

SINGLE = PlantedReLU(d=6, n=90, noise=0.05, seed=3, dtype="float32")
X32, Y32 = SINGLE.data()
SINGLE_SOURCES = {
    "planted": (lambda tmp: SINGLE, True),
    "arrays": (lambda tmp: ArrayData(X32, Y32, W_STAR), True),
    "frame columns": (lambda tmp: FrameData(pd.DataFrame(
        {f"x{j}": X32[:, j] for j in range(6)} | {"y": Y32}), w_star=W_STAR), True),
    "parquet list": (lambda tmp: write_parquet(SINGLE, tmp / "s.parquet",
                                               row_group_size=13), True),
    "parquet columns": (lambda tmp: write_parquet(SINGLE, tmp / "c.parquet",
                                                  layout="columns"), True),
    "ray dataset, tensor column": (
        lambda tmp: ray.data.from_items([{"x": X32[i], "y": Y32[i]} for i in range(90)],
                                        override_num_blocks=4), False),
}


@pytest.mark.parametrize("name", list(SINGLE_SOURCES))
def test_float32_rows_stay_float32_and_fit_as_their_float64_copy(name, tmp_path):
    make, knows_w_star = SINGLE_SOURCES[name]
    source = as_source(make(tmp_path))
    assert np.dtype(source.feature_dtype if hasattr(source, "feature_dtype")
                    else np.float32) == np.float32
    shards = [source.shard(k, 3) for k in range(3)] if name != "ray dataset, tensor column" \
        else [part.shard(k, 3) for k, part in enumerate(source.for_workers(3))]
    assert all(X.dtype == np.float32 and y.dtype == np.float64 for X, y in shards)
    np.testing.assert_array_equal(np.concatenate([X for X, _ in shards]), X32)
    mode = "master" if name == "planted" else "all-to-all"
    result = fit(source, mode=mode, **RUN)
    widened = ArrayData(X32.astype(np.float64), Y32, W_STAR if knows_w_star else None)
    assert_same_fit(result, fit(widened, mode=mode, **RUN))


def test_float32_arrays_are_the_same_data_as_their_float64_copy_for_checkpoints():
    single, double = ArrayData(X32, Y32), ArrayData(X32.astype(np.float64), Y32)
    assert single.X is not None and single.X.dtype == np.float32
    assert single.spec() == double.spec()
    assert ArrayData(X32.astype(np.float16), Y32).X.dtype == np.float32
    assert ArrayData(X32.astype(np.float16), Y32).spec() != double.spec()


def test_float16_columns_become_float32_rows_and_mixed_widths_float64(tmp_path):
    half = pa.table({f"x{j}": pa.array(X32[:, j].astype(np.float16)) for j in range(6)}
                    | {"y": Y32})
    pq.write_table(half, tmp_path / "h.parquet")
    rows, _ = ParquetData(tmp_path / "h.parquet").shard(0, 1)
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, X32.astype(np.float16).astype(np.float32))
    mixed = half.set_column(0, "x0", pa.array(X32[:, 0].astype(np.float64)))
    pq.write_table(mixed, tmp_path / "m.parquet")
    assert ParquetData(tmp_path / "m.parquet").shard(0, 1)[0].dtype == np.float64

"""The ``ray-relu`` command line: real fits on the session's Ray, one-line errors, exit codes."""

import json

import pyarrow.parquet as pq
import pytest

from ray_relu.cli import main

pytestmark = pytest.mark.usefixtures("ray_session")


def test_fit_prints_summary_and_writes_history(tmp_path, capsys):
    out = tmp_path / "history.parquet"
    code = main(["fit", "--d", "40", "--n", "320", "--workers", "2", "--mode", "all-to-all",
                 "--codec", "qsgd", "--levels", "4", "--tol", "1e-6", "--out", str(out),
                 "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "qsgd(levels=4" in printed and "all-to-all K=2" in printed
    table = pq.read_table(out)
    assert table.column("rel_error")[-1].as_py() <= 1e-6
    meta = json.loads(table.schema.metadata[b"ray_relu"])
    assert meta["summary"]["converged"] is True
    assert meta["config"]["workers"] == 2


def test_fit_json_summary_and_strict_exit_code(capsys):
    code = main(["fit", "--d", "30", "--n", "240", "--workers", "1", "--iterations", "2",
                 "--json", "--strict", "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["iterations"] == 2 and summary["converged"] is False
    assert code == 1


@pytest.mark.parametrize("argv, message", [
    (["fit", "--d", "0"], "d must be an integer >= 1"),
    (["fit", "--codec", "int8"], "invalid choice: 'int8'"),
    (["fit", "--mode", "ring"], "invalid choice: 'ring'"),
    (["fit", "--codec", "fp32", "--levels", "4"],
     "--levels: not a parameter of --codec fp32; its parameters: dtype"),
    (["fit", "--codec", "fp16", "--levels", "4", "--codec-param", "lvl=3"],
     "--levels, --codec-param lvl: not a parameter of --codec fp16; its parameters: scale"),
    (["fit", "--codec", "fp16", "--codec-param", "scale"], "--codec-param must be KEY=VALUE"),
    (["fit", "--codec", "qsgd", "--levels", "0"], "levels"),
    (["fit", "--noise", "nan"], "noise"),
    (["fit", "--data", "/nonexistent/data.parquet"], "/nonexistent/data.parquet"),
    (["fit", "--d", "10", "--n", "80", "--resume", "/nonexistent/ckpt.npz"], "ckpt.npz"),
    (["fit", "--model", "mlp"], "invalid choice: 'mlp'"),
    (["fit", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["fit", "--model", "leaky", "--model-param", "alpha"], "--model-param must be KEY=VALUE"),
    (["fit", "--model", "leaky", "--model-param", "alpha=2"], "alpha must be in [0, 1)"),
    (["fit", "--model", "hidden", "--init", "moment"], "init must be one of 'random'"),
    (["fit", "--d", "10", "--n", "80", "--round-timeout", "0"], "round_timeout must be > 0"),
])
def test_bad_arguments_give_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc_info:
        code = main(argv)
        raise SystemExit(code)
    assert exc_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert err.startswith("ray-relu: error:") and "\n" not in err


def test_a_round_timeout_is_one_line_and_exit_1(monkeypatch, capsys):
    """`--round-timeout` reaches fit; the error (worker, round, checkpoint) is one line."""
    import sys

    from ray_relu.coordinator import RoundTimeoutError
    seen = {}

    def stalled(*args, **kwargs):
        seen.update(kwargs)
        raise RoundTimeoutError(7, [2], kwargs["round_timeout"])

    monkeypatch.setattr(sys.modules["ray_relu.fit"], "fit", stalled)
    code = main(["fit", "--d", "10", "--n", "80", "--round-timeout", "5",
                 "--checkpoint", "ck.npz", "--resume", "old.npz"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and (seen["checkpoint"], seen["resume"]) == ("ck.npz", "old.npz")
    assert err == ("ray-relu: error: round 7: no answer from worker 2 within "
                   "round_timeout=5 s")


def test_fit_another_model_on_its_planted_problem(capsys):
    code = main(["fit", "--d", "6", "--n", "300", "--workers", "2", "--model", "hidden",
                 "--model-param", "units=2", "--iterations", "3000", "--tol", "1e-6",
                 "--json", "--strict", "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["converged"] is True and summary["rel_error"] <= 1e-6


def test_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit) as exc_info:
        main(["--help"])
    assert exc_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("fit", "demo", "write-parquet", "cluster", "examples:"):
        assert word in text


def test_write_parquet_then_fit_from_it(tmp_path, capsys):
    path = tmp_path / "data.parquet"
    assert main(["write-parquet", "--d", "20", "--n", "200", "--out", str(path)]) == 0
    assert main(["fit", "--data", str(path), "--workers", "2", "--tol", "1e-9",
                 "--json", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # The Parquet file carries w*, so the planted stopping rule applies.
    assert summary["stopping_rule"] == "rel_error" and summary["converged"] is True
    single = tmp_path / "single.parquet"
    assert main(["write-parquet", "--d", "20", "--n", "200", "--dtype", "float32",
                 "--out", str(single)]) == 0
    import pyarrow as pa
    import pyarrow.parquet as pq
    x_type = pq.read_schema(single).field("x").type
    assert x_type.value_type == pa.float32() and x_type.list_size == 20
    assert main(["fit", "--data", str(single), "--workers", "2", "--iterations", "3",
                 "--json", "--no-progress"]) == 0
    from_file = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["fit", "--d", "20", "--n", "200", "--dtype", "float32", "--workers", "2",
                 "--iterations", "3", "--json", "--no-progress"]) == 0
    planted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert from_file["rel_error"] == planted["rel_error"]


def test_console_script_starts_its_own_local_ray(tmp_path):
    """`ray-relu fit` in a fresh process, no Ray running in it: fit starts a local Ray."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("ray-relu")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([str(script), "fit", "--d", "20", "--n", "160", "--workers", "2",
                           "--json", "--tol", "1e-6"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["converged"] is True and summary["rel_error"] <= 1e-6


def test_codec_choices_and_parameters_come_from_the_registry(monkeypatch, capsys):
    from ray_relu.cli import build_parser
    from ray_relu.codecs import FP16, available_codecs, registry

    class Shout(FP16):
        codec_id = "shout"

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_codec(Shout)
    fit_parser = build_parser()._subparsers._group_actions[0].choices["fit"]
    for dest in ("codec", "downlink_codec"):
        action = next(a for a in fit_parser._actions if a.dest == dest)
        assert list(action.choices) == available_codecs() and "shout" in action.choices
    assert main(["fit", "--d", "8", "--n", "40", "--codec", "shout", "--codec-param",
                 "scale=none", "--iterations", "1", "--workers", "1", "--json",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["codec"].startswith("shout(scale=none)")


def test_qsgd_without_levels_uses_the_codecs_default(capsys):
    from ray_relu.codecs import QSGD
    assert main(["fit", "--d", "20", "--n", "160", "--codec", "qsgd", "--iterations", "1",
                 "--workers", "1", "--json", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["codec"].startswith(f"qsgd(levels={QSGD().levels},")
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert f"QSGD levels s (default {QSGD().levels})" in capsys.readouterr().out


def test_demo_prints_one_summary_table(capsys):
    assert main(["demo", "--d", "20", "--n", "160", "--levels", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    table = lines[lines.index(next(line for line in lines if line.lstrip().startswith("codec"))):]
    assert table[0].split()[-1] == "vs_fp32_bytes" and set(table[1]) == {"-", " "}
    assert len(table) == 2 + 4                  # fp32 and QSGD, master and all-to-all
    assert [line.split()[-1] for line in table[2:]][::2] == ["1.000x", "1.000x"]


def test_out_names_the_host_and_the_absolute_path(tmp_path, monkeypatch, capsys):
    """Issue 16, item 3: `--out history.parquet` says on which machine and where."""
    import socket
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert main(["fit", "--d", "20", "--n", "160", "--workers", "1", "--iterations", "3",
                 "--out", "history.parquet", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().endswith(
        f"history written to {socket.gethostname()}:{tmp_path / 'history.parquet'}")
    assert (tmp_path / "history.parquet").is_file() and "rsync-down" not in printed


def test_out_in_a_submitted_job_says_how_to_fetch_it(tmp_path, monkeypatch, capsys):
    """As a Ray job (Ray sets RAY_JOB_CONFIG_JSON_ENV_VAR for job drivers) the file is on
    the head: the note says so and how to fetch it; --json keeps stdout to the JSON."""
    import socket
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    assert main(["fit", "--d", "20", "--n", "160", "--workers", "1", "--iterations", "3",
                 "--out", "h.parquet", "--json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["iterations"] == 3
    full = tmp_path / "h.parquet"
    assert captured.err.startswith(f"history written to {socket.gethostname()}:{full} (on "
                                   "the cluster's head")
    assert f"ray rsync-down CLUSTER.yaml {full} ." in captured.err
    assert f"ray-relu cluster fetch {full}" in captured.err


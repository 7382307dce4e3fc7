"""Cluster YAML: Ray's own offline validator, our rules, and clear errors for bad files.

Fast and offline: no cluster, no cloud. Ray's validation runs with every non-loopback
network connection refused, which proves ``prepare_config`` + ``validate_config`` need
no network for AWS either (boto3 and credentials come later, in ``ray up``'s bootstrap).
"""

from __future__ import annotations

import copy
import socket
import string
import subprocess
from pathlib import Path

import pytest
import yaml

from ray_relu import cli
from ray_relu.cluster_check import (ClusterConfigError, check_config, check_credentials,
                                    check_install, check_security, check_token_auth)

ROOT = Path(__file__).resolve().parent.parent
AWS = ROOT / "cluster" / "aws.yaml"
LOCAL = ROOT / "cluster" / "local.yaml"
TEMPLATE = ROOT / "cluster" / "templates" / "emulated-local.yaml"


@pytest.fixture
def no_network(monkeypatch):
    """Refuse every connection that is not loopback or a unix socket."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if not (host in ("localhost", "::1") or str(host).startswith("127.")):
                raise AssertionError(f"network call to {address} during validation")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def render_template(nodes: int = 3) -> str:
    """The emulated cluster's local.yaml, rendered as ``emulate.sh up`` renders it."""
    template = string.Template(TEMPLATE.read_text())
    assert set(template.get_identifiers()) == {
        "CLUSTER_NAME", "HEAD_IP", "WORKER_IPS", "NUM_WORKERS", "EMU_DIR", "NUM_CPUS",
        "HEAD_CPUS", "OBJECT_STORE_BYTES", "MIN_WORKERS", "IDLE_TIMEOUT_MINUTES"}
    workers = ", ".join(f"10.213.0.{11 + i}" for i in range(nodes - 1))
    return template.substitute(CLUSTER_NAME="ray-relu-emu0", HEAD_IP="10.213.0.10",
                               WORKER_IPS=workers, NUM_WORKERS=str(nodes - 1),
                               EMU_DIR="/run/ray_relu_emu/0", NUM_CPUS="2", HEAD_CPUS="0",
                               OBJECT_STORE_BYTES="300000000", MIN_WORKERS=str(nodes - 1),
                               IDLE_TIMEOUT_MINUTES="5")


# --- Ray's validator, in the order `ray up` applies it ------------------------------------
@pytest.mark.parametrize("path", [AWS, LOCAL], ids=["aws", "local"])
def test_ray_validator_accepts_the_files(path, no_network):
    from ray.autoscaler._private.util import prepare_config, validate_config
    prepared = prepare_config(load(path))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_ray_validator_accepts_the_rendered_emulated_template(no_network):
    from ray.autoscaler._private.util import prepare_config, validate_config
    config = yaml.safe_load(render_template(nodes=3))
    prepared = prepare_config(config)
    validate_config(prepared)
    node_type = prepared["available_node_types"]["local.cluster.node"]
    assert node_type["min_workers"] == node_type["max_workers"] == 2
    report = check_config(config, render_template(nodes=3))
    assert report.problems == [] and report.warnings == []


def test_the_autoscale_rendering_is_prepared_with_the_worker_cpus(no_network, tmp_path):
    """`emulate.sh up --autoscale`: min_workers 0 and the pool's CPUs on the node type,
    in a config `ray up` keeps as it is (prepare_config returns it unchanged)."""
    import importlib.util

    from ray.autoscaler._private.util import prepare_config, validate_config
    spec = importlib.util.spec_from_file_location("render_yaml",
                                                  ROOT / "cluster" / "render_yaml.py")
    render_yaml = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_yaml)
    values = dict(CLUSTER_NAME="ray-relu-emu0", HEAD_IP="10.213.0.10",
                  WORKER_IPS="10.213.0.11, 10.213.0.12", NUM_WORKERS="2",
                  EMU_DIR="/run/ray_relu_emu/0", NUM_CPUS="1", HEAD_CPUS="0",
                  OBJECT_STORE_BYTES="300000000", MIN_WORKERS="0", IDLE_TIMEOUT_MINUTES="1")
    config = yaml.safe_load(render_yaml.render(TEMPLATE.read_text(), values, worker_cpus=1))
    assert prepare_config(config) == config
    validate_config(config)
    node_type = config["available_node_types"]["local.cluster.node"]
    assert node_type["resources"] == {"CPU": 1}
    assert (node_type["min_workers"], node_type["max_workers"]) == (0, 2)
    assert config["idle_timeout_minutes"] == 1
    assert "--num-cpus=0" in config["head_start_ray_commands"][1]
    assert render_yaml.main([str(TEMPLATE), str(tmp_path / "out.yaml"),
                             *(f"{k}={v}" for k, v in values.items())]) == 0
    assert yaml.safe_load((tmp_path / "out.yaml").read_text())["min_workers"] == 0


def test_aws_file_shape():
    c = load(AWS)
    assert c["provider"]["type"] == "aws"
    text = AWS.read_text()
    for placeholder in ("region:", "availability_zone:", "ImageId:"):
        line = next(ln for ln in text.splitlines() if placeholder in ln)
        assert "PLACEHOLDER" in line, line
    head, worker = c["available_node_types"]["ray.head.default"], \
        c["available_node_types"]["ray.worker.default"]
    assert head["resources"]["CPU"] == 0          # fit's actors never land on the head
    assert worker["resources"]["CPU"] >= 2
    assert worker["node_config"]["InstanceType"].startswith(("c7i", "c6i", "c7a", "c6a"))
    assert 0 <= worker["min_workers"] < worker["max_workers"] <= c["max_workers"]
    assert c["idle_timeout_minutes"] > 0
    assert c["provider"]["security_group"]["IpPermissions"] == []


@pytest.mark.parametrize("path", [AWS, LOCAL], ids=["aws", "local"])
def test_our_rules_pass(path):
    c, text = load(path), path.read_text()
    assert check_security(c) == []
    assert check_token_auth(c) == []
    assert check_install(c) == []
    assert check_credentials(c, text) == []


def test_cluster_check_command_passes(capsys, no_network):
    assert cli.main(["cluster", "check", str(AWS), str(LOCAL)]) == 0
    out = capsys.readouterr().out
    assert out.count("ok: ") == 2 and "provider aws" in out and "provider local" in out


# --- every file, every error (issue 16, item 5) ----------------------------------------------
def test_check_reports_every_file_and_every_error(tmp_path, capsys):
    """Two bad files and a good one: every error of each, one line each, the good file
    still checked, exit 2."""
    c = aws()
    c["provider"]["security_group"]["IpPermissions"] = [
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp",
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    c["worker_start_ray_commands"] = ["ray stop", "ray start --address=$RAY_HEAD_IP:6379"]
    c["provider"]["aws_credentials"] = {"aws_access_key_id": "x"}
    three = tmp_path / "three.yaml"
    three.write_text(dump(c))
    c = aws()
    c["max_worker"] = 3                       # Ray's schema refuses it ...
    c["setup_commands"] = []                  # ... and our install rule still runs
    two = tmp_path / "two.yaml"
    two.write_text(dump(c))
    assert cli.main(["cluster", "check", str(three), str(AWS), str(two)]) == 2
    captured = capsys.readouterr()
    errors = [e for e in captured.err.splitlines() if e.startswith("ray-relu: error: ")]
    mine = [e for e in errors if e.startswith(f"ray-relu: error: {three}: ")]
    assert len(mine) == 3, errors
    assert any("tcp/8265" in e for e in mine)
    assert any("RAY_AUTH_MODE=token" in e for e in mine)
    assert any("credentials do not belong" in e for e in mine)
    theirs = [e for e in errors if e.startswith(f"ray-relu: error: {two}: ")]
    assert len(theirs) == 2, errors
    assert any("Ray's schema" in e for e in theirs)
    assert any("nothing installs ray_relu" in e for e in theirs)
    assert errors[-1] == "ray-relu: error: 2 of 3 files failed the check"
    assert len(errors) == 3 + 2 + 1
    assert f"ok: {AWS}" in captured.out and str(three) not in captured.out


def test_a_missing_file_does_not_stop_the_others(capsys):
    assert cli.main(["cluster", "check", "/nonexistent/a.yaml", str(LOCAL)]) == 2
    captured = capsys.readouterr()
    assert "ray-relu: error: /nonexistent/a.yaml: no such file" in captured.err
    assert f"ok: {LOCAL}" in captured.out


# --- placeholders ray up would fail on (issue 16, item 6) -----------------------------------
def warnings_of(path: Path, capsys) -> list[str]:
    assert cli.main(["cluster", "check", str(path)]) == 0
    err = capsys.readouterr().err
    assert "ray-relu: error:" not in err
    return [line for line in err.splitlines() if line.startswith(f"ray-relu: warning: {path}: ")]


def test_shipped_placeholders_are_warned_about(capsys):
    aws_warnings = warnings_of(AWS, capsys)
    assert len(aws_warnings) == 2, aws_warnings            # head and worker ImageId
    assert all("ImageId: ami-0123456789abcdef0 is the example AMI id" in w
               for w in aws_warnings)
    local_warnings = warnings_of(LOCAL, capsys)
    assert [w.split(": ")[3] for w in local_warnings] == [
        "provider.head_ip", "provider.worker_ips[0]", "provider.worker_ips[1]"]
    assert all("documentation address" in w for w in local_warnings)


def test_real_values_are_not_placeholders(tmp_path, capsys):
    c = aws()
    for nt in c["available_node_types"].values():
        nt["node_config"]["ImageId"] = "ami-0e86e20dae9224db8"
    fixed = tmp_path / "aws.yaml"
    fixed.write_text(dump(c))
    assert warnings_of(fixed, capsys) == []
    c = load(LOCAL)
    c["provider"]["head_ip"], c["provider"]["worker_ips"] = "10.0.0.5", ["10.0.0.6"]
    c["min_workers"] = c["max_workers"] = 1
    fixed.write_text(dump(c))
    assert warnings_of(fixed, capsys) == []


@pytest.mark.parametrize("where, value, shown", [
    (("available_node_types", "ray.head.default", "node_config", "ImageId"), "ami-xxxxxxxx",
     "is not an AMI id"),
    (("provider", "region"), "YOUR_REGION", "YOUR_REGION is a placeholder"),
    (("auth", "ssh_private_key"), "<path to your key>", "is a placeholder"),
])
def test_placeholder_values(tmp_path, capsys, where, value, shown):
    c = aws()
    node = c
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path = tmp_path / "p.yaml"
    path.write_text(dump(c))
    assert cli.main(["cluster", "check", str(path)]) in (0, 2)   # Ray may refuse some too
    err = capsys.readouterr().err
    assert any(line.startswith(f"ray-relu: warning: {path}: {'.'.join(where)}: ")
               and shown in line for line in err.splitlines()), err


# --- token auth in the nodes' shells (issue 16, item 1) -----------------------------------
@pytest.mark.parametrize("path", [AWS, LOCAL], ids=["aws", "local"])
def test_setup_puts_token_auth_into_the_login_profile(path, tmp_path):
    """The setup command the files ship, run in an empty home: a login shell then has
    RAY_AUTH_MODE=token (what `ray status` needs there); running it twice adds nothing."""
    import os
    import subprocess
    from ray_relu.cluster_check import check_shell_auth
    c = load(path)
    assert check_shell_auth(c) == []
    command = next(x for x in c["setup_commands"] if "RAY_AUTH_MODE=token" in x)
    home = tmp_path / "home"
    home.mkdir()
    for _ in range(2):
        subprocess.run(["bash", "-c", command], env={**os.environ, "HOME": str(home)},
                       check=True)
    assert (home / ".profile").read_text().count("RAY_AUTH_MODE=token") == 1
    out = subprocess.run(["bash", "-lc", "echo $RAY_AUTH_MODE $RAY_AUTH_TOKEN_PATH"],
                         env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["token", f"{home}/.ray/auth_token"]


def test_missing_shell_auth_is_a_warning(tmp_path, capsys):
    c = aws()
    c["setup_commands"] = [x for x in c["setup_commands"] if "RAY_AUTH_MODE" not in x]
    path = tmp_path / "noprofile.yaml"
    path.write_text(dump(c))
    warned = warnings_of(path, capsys)
    assert any("nothing puts RAY_AUTH_MODE=token into the nodes' shell profile" in w
               for w in warned), warned


# --- malformed files: one line, exit code 2 ------------------------------------------------
def run_check(tmp_path, capsys, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert cli.main(["cluster", "check", str(path)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if not line.startswith("ray-relu: warning: ")]
    assert errors and all(e.startswith(f"ray-relu: error: {path}: ") for e in errors), err
    return "\n".join(errors)


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def aws() -> dict:
    return copy.deepcopy(load(AWS))


def test_yaml_syntax_error_names_the_line(tmp_path, capsys):
    text = AWS.read_text().replace("max_workers: 8\n", "max_workers: [8\n", 1)
    line = 1 + AWS.read_text().splitlines().index("max_workers: 8")
    err = run_check(tmp_path, capsys, text)
    assert "YAML syntax error at line" in err
    assert any(f"line {n}," in err for n in range(line, line + 3)), err


def test_missing_provider(tmp_path, capsys):
    c = aws()
    del c["provider"]
    assert "missing provider" in run_check(tmp_path, capsys, dump(c))


def test_not_a_mapping(tmp_path, capsys):
    assert "expected a mapping" in run_check(tmp_path, capsys, "- just\n- a list\n")


def test_missing_file(capsys):
    assert cli.main(["cluster", "check", "/nonexistent/cluster.yaml"]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("rule, shown", [
    ({"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp",
      "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, "tcp/8265"),
    ({"FromPort": 6379, "ToPort": 6380, "IpProtocol": "tcp",
      "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}, "tcp/6379-6380"),
    ({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, "all ports"),
], ids=["dashboard", "gcs-ipv6", "everything"])
def test_port_open_to_the_world(tmp_path, capsys, rule, shown):
    c = aws()
    c["provider"]["security_group"]["IpPermissions"] = [rule]
    err = run_check(tmp_path, capsys, dump(c))
    assert "to the world" in err and shown in err


def test_ssh_to_the_world_and_narrow_rules_are_fine():
    c = aws()
    c["provider"]["security_group"]["IpPermissions"] = [
        {"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp",
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp",
         "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}]
    assert check_security(c) == []


def test_ray_schema_error(tmp_path, capsys):
    c = aws()
    c["max_worker"] = 3      # a typo: Ray's schema allows no unknown keys
    err = run_check(tmp_path, capsys, dump(c))
    assert "Ray's schema" in err and "max_worker" in err


def test_ray_schema_error_names_the_path(tmp_path, capsys):
    c = aws()
    c["available_node_types"]["ray.worker.default"]["resources"] = {"CPU": "four"}
    err = run_check(tmp_path, capsys, dump(c))
    assert "available_node_types.ray.worker.default.resources.CPU" in err


def test_unknown_provider(tmp_path, capsys):
    c = aws()
    c["provider"] = {"type": "nimbus"}
    assert "Unsupported node provider" in run_check(tmp_path, capsys, dump(c))


def test_local_provider_without_worker_ips(tmp_path, capsys):
    c = load(LOCAL)
    del c["provider"]["worker_ips"]
    assert "worker_ips" in run_check(tmp_path, capsys, dump(c))


def test_ray_start_without_token_auth(tmp_path, capsys):
    c = aws()
    c["worker_start_ray_commands"] = ["ray stop", "ray start --address=$RAY_HEAD_IP:6379"]
    err = run_check(tmp_path, capsys, dump(c))
    assert "worker_start_ray_commands" in err and "RAY_AUTH_MODE=token" in err


def test_default_start_commands_are_not_enough(tmp_path, capsys):
    c = aws()
    del c["head_start_ray_commands"]
    assert "head_start_ray_commands" in run_check(tmp_path, capsys, dump(c))


def test_token_auth_disabled(tmp_path, capsys):
    c = aws()
    c["setup_commands"].append("echo 'export RAY_AUTH_MODE=disabled' >> ~/.bashrc")
    assert "RAY_AUTH_MODE=disabled" in run_check(tmp_path, capsys, dump(c))


def test_token_file_must_be_shipped(tmp_path, capsys):
    c = aws()
    del c["file_mounts"]["~/.ray/auth_token"]
    assert "not in file_mounts" in run_check(tmp_path, capsys, dump(c))


def test_literal_token_is_a_credential():
    c = aws()
    c["head_start_ray_commands"][1] = c["head_start_ray_commands"][1].replace(
        "RAY_AUTH_MODE=token", "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=abc123")
    assert any("literal RAY_AUTH_TOKEN" in p for p in check_token_auth(c))


def test_project_not_installed(tmp_path, capsys):
    c = aws()
    c["setup_commands"] = [x for x in c["setup_commands"] if "ray_relu-0.1.0" not in x]
    assert "nothing installs ray_relu" in run_check(tmp_path, capsys, dump(c))


@pytest.mark.parametrize("requirement, pinned", [
    ("ray_relu", False), ("ray-relu>=0.1", False), ("ray_relu==0.1.0", True),
    ("'ray_relu @ git+https://github.com/o/ray_relu.git@v0.1.0'", True),
    ("git+https://github.com/o/ray_relu.git", False),
    ("~/wheelhouse/ray_relu-0.1.0-py3-none-any.whl", True)])
def test_install_must_be_pinned(requirement, pinned):
    c = aws()
    c["setup_commands"] = [f"python3 -m pip install {requirement}"]
    problems = check_install(c)
    assert (problems == []) == pinned, problems


def test_install_on_head_only_is_not_enough():
    c = aws()
    c["head_setup_commands"] = c["setup_commands"]
    c["setup_commands"] = []
    assert any("on the workers" in p for p in check_install(c))


def test_credentials_are_refused(tmp_path, capsys):
    c = aws()
    c["provider"]["aws_credentials"] = {"aws_access_key_id": "x",
                                        "aws_secret_access_key": "y"}
    assert "credentials do not belong" in run_check(tmp_path, capsys, dump(c))
    text = AWS.read_text() + "\n# AKIAABCDEFGHIJKLMNOP\n"
    assert "AWS access key" in run_check(tmp_path, capsys, text)


def test_usage_errors(capsys):
    assert cli.main(["cluster", "check"]) == 2
    assert "needs one or more YAML files" in capsys.readouterr().err
    assert cli.main(["cluster", "frobnicate"]) == 2
    assert "unknown cluster action" in capsys.readouterr().err


def test_cluster_config_error_is_a_value_error():
    assert issubclass(ClusterConfigError, ValueError)


def test_emulated_cluster_actions_run_emulate_sh(monkeypatch):
    """`ray-relu cluster up|submit|...` hand their arguments to cluster/emulate.sh; the
    "--" argparse drops before a submit's entrypoint is put back."""
    from ray_relu import cluster_check
    calls = []
    monkeypatch.setattr(cluster_check, "run_emulate", lambda argv: calls.append(argv) or 0)
    assert cli.main(["cluster", "up", "--nodes", "4", "--rate", "10mbit"]) == 0
    assert cli.main(["cluster", "submit", "--", "ray-relu", "fit", "--d", "30"]) == 0
    assert cli.main(["cluster", "submit", "--working-dir", ".", "--", "python", "x.py"]) == 0
    script = str(ROOT / "cluster" / "emulate.sh")
    assert calls == [
        ["bash", script, "up", "--nodes", "4", "--rate", "10mbit"],
        ["bash", script, "submit", "--", "ray-relu", "fit", "--d", "30"],
        ["bash", script, "submit", "--working-dir", ".", "--", "python", "x.py"]]


@pytest.mark.parametrize("kwargs, message", [
    (dict(nodes=0), "nodes must be an integer >= 1"),
    (dict(cluster_id=251), "cluster_id must be an integer in 0..250"),
    (dict(nodes=1, autoscale=True), "autoscale=True needs nodes >= 2"),
    (dict(autoscale=True, direct=True), "and direct=False"),
    (dict(idle_minutes=0), "idle_minutes must be a whole number of minutes >= 1"),
])
def test_emulated_cluster_rejects_bad_arguments(kwargs, message):
    from ray_relu.emulated import EmulatedCluster
    with pytest.raises(ValueError, match=message):
        EmulatedCluster(**kwargs)


# --- the emulated cluster's command line without a cluster (issue 16, items 7, 10) -----------
FREE_ID = 247      # no cluster is brought up: nothing with this id may exist


def ray_relu_cluster(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`ray-relu cluster ARGS` in a fresh process, as a user runs it, with cluster id
    FREE_ID and a state directory that must stay absent."""
    import os
    import sys
    script = Path(sys.executable).with_name("ray-relu")
    env = dict(os.environ, RAY_RELU_EMU_ID=str(FREE_ID), RAY_RELU_EMU_DIR=str(tmp_path / "emu"))
    done = subprocess.run([str(script), "cluster", *args], capture_output=True, text=True,
                          env=env, timeout=60)
    assert not (tmp_path / "emu").exists()
    assert str(ROOT) not in done.stdout + done.stderr      # hints name `ray-relu cluster`
    return done


@pytest.fixture
def free_id():
    if Path(f"/sys/class/net/rrbr{FREE_ID}").exists() or \
            list(Path("/run/netns").glob(f"rr{FREE_ID}n*")):
        pytest.skip(f"an emulated cluster {FREE_ID} exists on this machine")


@pytest.mark.parametrize("action", ["up", "down", "status", "shape", "block", "unblock",
                                    "submit", "logs", "fetch", "exec", "ssh", "env"])
def test_every_action_has_help(tmp_path, free_id, action):
    done = ray_relu_cluster(tmp_path, action, "--help")
    assert done.returncode == 0, done.stderr
    assert "ray-relu cluster up [--nodes N]" in done.stdout
    assert "ray-relu cluster logs ID" in done.stdout and "unknown option" not in done.stderr


def test_hints_name_the_command_the_user_ran(tmp_path, free_id):
    done = ray_relu_cluster(tmp_path, "submit", "--", "true")
    assert done.returncode == 1
    assert f"cluster {FREE_ID} is not up: run 'RAY_RELU_EMU_ID={FREE_ID} ray-relu cluster up' " \
        "first" in done.stderr
    done = ray_relu_cluster(tmp_path, "up", "--bogus")
    assert done.returncode == 1
    assert f"unknown option for up: --bogus (see 'RAY_RELU_EMU_ID={FREE_ID} ray-relu cluster " \
        "up --help')" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["up", "--autoscale", "--nodes", "1"],
     "--autoscale needs --nodes >= 2 (the head plus a pool of worker hosts), got 1"),
    (["up", "--autoscale", "--idle-minutes", "0.5"],
     "idle minutes must be a whole number >= 1 (Ray's idle_timeout_minutes), got '0.5'"),
    (["up", "--autoscale", "--direct"], "--autoscale and --direct exclude each other"),
    (["block", "1"], f"cluster {FREE_ID} is not up: run 'RAY_RELU_EMU_ID={FREE_ID} ray-relu "
                     "cluster up' first"),
])
def test_bad_autoscale_and_block_arguments_say_what_is_allowed(tmp_path, free_id, args,
                                                               message):
    done = ray_relu_cluster(tmp_path, *args)
    assert done.returncode == 1 and message in done.stderr, done.stderr


def test_down_with_nothing_up_removes_nothing(tmp_path, free_id):
    done = ray_relu_cluster(tmp_path, "down")
    assert done.returncode == 0
    assert done.stderr.strip() == f"[emulate] cluster {FREE_ID} is not up: nothing to take down"


def test_down_removes_the_logs_of_a_failed_up(tmp_path, free_id):
    """A failed `up` keeps its logs in /tmp/ray_relu_emu_failed_<id> until the next `up`
    or `down` of that id (they used to stay for ever)."""
    kept = Path(f"/tmp/ray_relu_emu_failed_{FREE_ID}")
    kept.mkdir(exist_ok=True)
    (kept / "ray_up.log").write_text("a failed ray up\n")
    done = ray_relu_cluster(tmp_path, "down")
    assert done.returncode == 0 and not kept.exists()
    assert f"removed the logs of an earlier failed up ({kept})" in done.stderr

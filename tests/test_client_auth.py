"""Ray Client and token auth: a missing or wrong token is one line at once, not a 30 s
timeout that blames the port (issue 16, item 2).

The server is a Ray Client endpoint on loopback built from Ray's own pieces: the gRPC
server factory Ray's client proxy uses (with its token-auth interceptor, on when the
server runs with ``RAY_AUTH_MODE=token``) serving the ``ClusterInfo`` call the client
starts with. The end-to-end check against a real cluster's head is in
``tests/test_cluster_emulated.py``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ray_relu import client_auth
from ray_relu.client_auth import ClusterAuthError, check_client_auth

TOKEN = "0123456789abcdef0123456789abcdef"
SERVER = textwrap.dedent("""
    from ray._private.grpc_utils import create_grpc_server_with_interceptors
    from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

    class Driver(ray_client_pb2_grpc.RayletDriverServicer):
        def ClusterInfo(self, request, context=None):
            return ray_client_pb2.ClusterInfoResponse(json="{}")

    server = create_grpc_server_with_interceptors(max_workers=2, asynchronous=False)
    ray_client_pb2_grpc.add_RayletDriverServicer_to_server(Driver(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination(timeout=300)
""")


def _serve(auth_mode: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(RAY_AUTH_MODE=auth_mode, RAY_AUTH_TOKEN=TOKEN, RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen([sys.executable, "-c", SERVER], env=env, stdout=subprocess.PIPE,
                            text=True)
    port = proc.stdout.readline().strip()
    assert port.isdigit(), port
    return proc, f"ray://127.0.0.1:{port}"


@contextlib.contextmanager
def _serving(auth_mode: str):
    """A probe server for the duration of the block (see :func:`_serve`)."""
    proc, address = _serve(auth_mode)
    try:
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def token_server():
    with _serving("token") as address:
        yield address


@pytest.fixture(scope="module")
def open_server():
    with _serving("disabled") as address:
        yield address


@pytest.fixture
def client_env(monkeypatch, tmp_path):
    """A client with nothing configured: no auth variables, an empty HOME."""
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def _token_file(home: Path, token: str = TOKEN) -> Path:
    path = home / "cluster_token"
    path.write_text(token + "\n")
    return path


def _fails_fast(address: str) -> str:
    import grpc  # noqa: F401  (imported first: the first import of Ray's protos is slow)
    from ray.core.generated import ray_client_pb2_grpc  # noqa: F401
    start = time.perf_counter()
    with pytest.raises(ClusterAuthError) as err:
        check_client_auth(address)
    assert time.perf_counter() - start < 5.0      # one loopback call; Ray Client: ~30 s
    message = str(err.value)
    assert "\n" not in message
    return message


def test_no_token_is_one_line_at_once(token_server, client_env):
    message = _fails_fast(token_server)
    assert message.startswith(f"{token_server} requires token auth and RAY_AUTH_MODE is unset")
    assert "RAY_AUTH_MODE=token" in message and "RAY_AUTH_TOKEN_PATH" in message


def test_token_file_without_the_mode(token_server, client_env, monkeypatch):
    """The file alone is not enough (Ray sends no token unless the mode is token)."""
    (client_env / ".ray").mkdir()
    (client_env / ".ray" / "auth_token").write_text(TOKEN)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(_token_file(client_env)))
    assert "RAY_AUTH_MODE is unset here" in _fails_fast(token_server)


def test_mode_without_a_token(token_server, client_env, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    message = _fails_fast(token_server)
    assert f"no token in {client_env}/.ray/auth_token (the default path)" in message


def test_wrong_token(token_server, client_env, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(_token_file(client_env, "f" * 32)))
    assert "rejected the token from" in _fails_fast(token_server)


@pytest.mark.parametrize("how", ["path", "default", "variable"])
def test_the_right_token_passes(token_server, client_env, monkeypatch, how):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    if how == "path":
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(_token_file(client_env)))
    elif how == "default":
        (client_env / ".ray").mkdir()
        (client_env / ".ray" / "auth_token").write_text(TOKEN)
    else:
        monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    check_client_auth(token_server)


def test_ray_address_from_the_environment(token_server, client_env, monkeypatch):
    """address=None means RAY_ADDRESS, as in ray.init."""
    monkeypatch.setenv("RAY_ADDRESS", token_server)
    assert token_server in _fails_fast(None)


def test_a_cluster_without_token_auth_needs_none(open_server, client_env):
    check_client_auth(open_server)


def test_other_addresses_are_left_to_ray(client_env, monkeypatch):
    """No probe for anything but ray://; a closed port is Ray's to report."""
    monkeypatch.setattr(client_auth, "probe", lambda *a: pytest.fail("probed"))
    for address in (None, "auto", "127.0.0.1:6379"):
        check_client_auth(address)
    monkeypatch.undo()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    check_client_auth(f"ray://127.0.0.1:{closed}")


def test_fit_checks_before_connecting(token_server, client_env, monkeypatch):
    """fit(address=...) asks before ray.init (in runtime.ensure_ray, which every entry
    point uses): ray.init is never reached."""
    import ray

    from ray_relu import PlantedReLU, fit
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **kw: pytest.fail("ray.init called"))
    with pytest.raises(ClusterAuthError):
        fit(PlantedReLU(d=5, n=50), address=token_server, progress=False)


def test_cli_says_so_in_one_line(token_server, client_env):
    """`ray-relu fit --address ray://...` without the token: one line, exit 1, quickly
    (the console script in a fresh process, as a user runs it)."""
    script = Path(sys.executable).with_name("ray-relu")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env["HOME"] = str(client_env)
    start = time.perf_counter()
    done = subprocess.run([str(script), "fit", "--d", "20", "--n", "160", "--workers", "2",
                           "--address", token_server], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ray-relu: error: {token_server} requires "
                                               "token auth"), done.stderr
    assert time.perf_counter() - start < 25       # Ray Client alone waits ~30 s

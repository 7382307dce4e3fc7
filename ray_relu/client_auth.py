"""Ray Client (``ray://HOST:10001``) and token auth: one clear line instead of a timeout.

A cluster started with ``RAY_AUTH_MODE=token`` (``cluster/aws.yaml``, ``local.yaml``, the
emulated cluster) refuses every Ray Client call that does not carry its token. Ray's
client does not tell that apart from a closed port: it retries for about 30 s, then
raises ``ConnectionError: ray client connection timeout`` and blames the port.

:func:`check_client_auth` runs before ``ray.init`` connects (``fit(address=...)``, the
CLI's ``--address``, the experiments): for a ``ray://`` address it asks the server one
``PING`` (the call Ray's own client starts with), with the token when one is configured,
and turns ``UNAUTHENTICATED`` into :class:`ClusterAuthError`, a one-line message saying
how to pass the token. Anything else (a server without token auth, an unreachable one)
is left to Ray. A client passes the token like every Ray tool: ``RAY_AUTH_MODE=token``
plus the token in ``RAY_AUTH_TOKEN``, in the file ``RAY_AUTH_TOKEN_PATH`` names, or in
``~/.ray/auth_token`` (in that order).
"""

from __future__ import annotations

import os
from pathlib import Path

PROBE_TIMEOUT_S = 5.0
HOWTO = ("set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=<a file holding the cluster's "
         "token> (the ~/.ray/auth_token that `ray up` shipped; the emulated cluster: run "
         "under `ray-relu cluster exec -- ...` or `eval \"$(ray-relu cluster env)\"`)")


class ClusterAuthError(ConnectionError):
    """The Ray cluster wants an auth token this client does not send (one line)."""


def client_address(address: str | None) -> str | None:
    """The ``ray://`` address ``ray.init(address)`` would connect to, else None
    (``address=None`` means ``RAY_ADDRESS``, as in ``ray.init``)."""
    if address is None:
        address = os.environ.get("RAY_ADDRESS")
    if address and address.strip().startswith("ray://"):
        return address.strip()
    return None


def configured_token() -> tuple[str | None, str]:
    """The token Ray would send, by Ray's precedence, and where it comes from.

    ``(None, reason)`` when token auth is not enabled on this client or no token is
    found; the reason is part of the one-line message.
    """
    mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower()
    if mode != "token":
        shown = f"'{mode}'" if mode else "unset"
        return None, f"RAY_AUTH_MODE is {shown} here, so no token is sent"
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token, "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    source = "RAY_AUTH_TOKEN_PATH"
    if not path:
        path, source = str(Path.home() / ".ray" / "auth_token"), "the default path"
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError:
        token = ""
    if not token:
        return None, f"RAY_AUTH_MODE=token but no token in {path} ({source})"
    return token, f"{path} ({source})"


def probe(address: str, token: str | None, timeout: float = PROBE_TIMEOUT_S):
    """The gRPC status code of one Ray Client ``PING`` to ``ray://HOST:PORT``; None when
    it was answered."""
    import grpc
    from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc
    target = address.removeprefix("ray://").split("/", 1)[0]
    if ":" not in target:
        target += ":10001"
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(target) as channel:
        stub = ray_client_pb2_grpc.RayletDriverStub(channel)
        try:
            stub.ClusterInfo(ray_client_pb2.ClusterInfoRequest(
                type=ray_client_pb2.ClusterInfoType.PING), timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code()
    return None


def check_client_auth(address: str | None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`ClusterAuthError` if ``address`` (or ``RAY_ADDRESS``) is a Ray
    Client address whose server refuses the token this client sends (or the lack of
    one). A no-op for other addresses; costs one round trip for ``ray://`` ones."""
    target = client_address(address)
    if target is None:
        return
    import grpc
    token, source = configured_token()
    if probe(target, token, timeout) != grpc.StatusCode.UNAUTHENTICATED:
        return
    if token is None:
        raise ClusterAuthError(f"{target} requires token auth and {source}: {HOWTO}")
    raise ClusterAuthError(f"{target} rejected the token from {source}: it is not this "
                           f"cluster's token; {HOWTO}")

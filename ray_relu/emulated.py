"""The emulated multi-node Ray cluster from Python (a wrapper of ``cluster/emulate.sh``).

``cluster/emulate.sh`` turns one Linux machine (root, iproute2, sshd) into N Ray hosts:
network namespaces on a private, rate-shaped bridge, each with its own sshd, PID
namespace and /tmp, and starts Ray on them with the real ``ray up`` of a rendered
local-provider YAML. This module drives it::

    from ray_relu.emulated import EmulatedCluster

    with EmulatedCluster(nodes=3, rate="100mbit") as cluster:    # up ... down
        out = cluster.fit({"d": 1000, "n": 8000}, workers=3, mode="all-to-all",
                          codec="qsgd", codec_options={"levels": 4}, placement="spread")
        out["summary"], out["placement"], out["history"]          # from the head
        cluster.shape("10mbit")                                     # reshape, keep Ray
        job = cluster.submit(["python", "-m", "benchmarks._wire_runs", "--d", "1000",
                              "--configs", "[...]"], working_dir=".")
        job.logs                                                    # the driver's output
        job_id = cluster.start(cluster.fit_spec({"d": 100}, workers=3))   # no waiting
        cluster.stop_job(job_id); cluster.wait(job_id, check=False)  # ray job stop
        cluster.block(2); cluster.unblock(2)                        # stall host 2's link

    with EmulatedCluster(nodes=4, cpus_per_node=1, head_cpus=0, autoscale=True) as c:
        c.alive_nodes()        # 1: the head; a fit with cpus_per_worker=1 adds hosts

Drivers run on the head node, as ``ray job submit`` runs them on a real cluster:
:meth:`EmulatedCluster.submit` submits any entrypoint (with an optional working
directory, uploaded by Ray); :meth:`EmulatedCluster.fit` submits this module's own
driver (``python -m ray_relu.emulated fit-driver JSON``), which runs
:func:`ray_relu.fit` with ``address="auto"`` and prints its result as one JSON line.
From this machine, :meth:`EmulatedCluster.env` also gives the environment in which
``ray.init()`` connects through Ray Client (``ray://HEAD:10001``) with the cluster's
token, e.g. for ``subprocess.run(..., env=cluster.env())``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

RESULT_MARK = "RAY_RELU_RESULT "
PLACEMENT_MARK = "RAY_RELU_PLACEMENT "
TERMINAL_STATUSES = ("STOPPED", "SUCCEEDED", "FAILED")
# What a working_dir upload leaves out by default (Ray also honours .gitignore).
DEFAULT_EXCLUDES = [".venv", ".git", "build", "results", "*.egg-info", "__pycache__",
                    "*.parquet"]


class EmulatedClusterError(RuntimeError):
    """``cluster/emulate.sh`` or a job on the emulated cluster failed."""


@dataclass
class JobOutput:
    """A finished ``ray job submit``: its status, the driver's output and how long."""

    submission_id: str
    succeeded: bool
    logs: str
    seconds: float
    status: str = ""

    def results(self, mark: str = RESULT_MARK) -> list[Any]:
        """The JSON values the driver printed after ``mark``, in order."""
        return [json.loads(line.split(mark, 1)[1]) for line in self.logs.splitlines()
                if mark in line]


class EmulatedCluster:
    """An emulated multi-node Ray cluster on this machine (needs root; see module doc).

    Parameters
    ----------
    nodes : hosts, head included (each one a Ray node).
    rate, delay : link shaping of every host (tc; e.g. ``"100mbit"``, ``"1ms"``). The
        delay needs the kernel's sch_netem; without it only the rate is applied and
        :attr:`info` ``["shaping"]`` says so (and ``up`` warns, if a delay was given).
        ``delay=None``: emulate.sh's default (1 ms where netem exists, no warning).
    cpus_per_node : the CPU resource each Ray node advertises.
    head_cpus : the head's CPU resource (None: ``cpus_per_node``). 0 keeps shard actors
        off the head, as ``cluster/aws.yaml`` does: the driver's node then holds no
        worker, and every worker's traffic crosses a link.
    cluster_id : 0..250; clusters with different ids can run side by side (own
        bridge, subnet ``10.213.<id>.0/24``, namespaces and state directory).
    direct : start Ray with ``ray start`` over SSH instead of ``ray up`` (debugging).
    autoscale : ``ray up`` starts the head only; the other ``nodes - 1`` hosts are the
        local provider's pool (``min_workers: 0``), which Ray's autoscaler starts over
        SSH when actors wait for CPUs (a fit with ``cpus_per_worker=1``) and releases
        after ``idle_minutes`` without work (Ray's ``idle_timeout_minutes``, >= 1).
    script : path of ``emulate.sh`` (default: the checkout's ``cluster/emulate.sh``).
    """

    def __init__(self, nodes: int = 3, *, rate: str = "100mbit", delay: str | None = None,
                 cpus_per_node: int = 2, head_cpus: int | None = None,
                 cluster_id: int = 0, direct: bool = False,
                 object_store_bytes: int | None = None, autoscale: bool = False,
                 idle_minutes: int = 1,
                 script: str | os.PathLike | None = None) -> None:
        from .cluster_check import emulate_script
        if not isinstance(nodes, int) or nodes < 1:
            raise ValueError(f"nodes must be an integer >= 1, got {nodes!r}")
        if not isinstance(cluster_id, int) or not 0 <= cluster_id <= 250:
            raise ValueError(f"cluster_id must be an integer in 0..250, got {cluster_id!r}")
        if autoscale and (nodes < 2 or direct):
            raise ValueError("autoscale=True needs nodes >= 2 (the head plus a pool of worker "
                             f"hosts) and direct=False; got nodes={nodes!r}, direct={direct!r}")
        if not isinstance(idle_minutes, int) or idle_minutes < 1:
            raise ValueError("idle_minutes must be a whole number of minutes >= 1 (Ray's "
                             f"idle_timeout_minutes), got {idle_minutes!r}")
        self.autoscale, self.idle_minutes = bool(autoscale), idle_minutes
        self.nodes, self.rate, self.delay = nodes, rate, delay
        self.cpus_per_node, self.cluster_id, self.direct = cpus_per_node, cluster_id, direct
        self.head_cpus = head_cpus
        self.object_store_bytes = object_store_bytes
        self.script = Path(script) if script is not None else emulate_script()
        self._info: dict | None = None
        self._commands: dict[str, str] = {}

    # --- lifecycle -------------------------------------------------------------------
    def _run(self, *args: str, timeout: float | None = None, check: bool = True,
             capture: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, RAY_RELU_EMU_ID=str(self.cluster_id),
                   RAY_RELU_EMU_CMD="ray-relu cluster")
        if self.object_store_bytes is not None:
            env["RAY_RELU_EMU_OBJECT_STORE"] = str(self.object_store_bytes)
        proc = subprocess.run(["bash", str(self.script), *args], env=env, text=True,
                              capture_output=capture, timeout=timeout)
        if check and proc.returncode != 0:
            tail = "\n".join(((proc.stdout or "") + (proc.stderr or "")).splitlines()[-25:])
            raise EmulatedClusterError(
                f"emulate.sh {args[0]} failed (exit {proc.returncode}):\n{tail}")
        return proc

    def up(self, timeout: float = 900) -> dict:
        """Create the hosts and ``ray up`` the cluster; returns :attr:`info`.

        On failure emulate.sh has already torn everything down.
        """
        args = ["up", "--nodes", str(self.nodes), "--rate", self.rate,
                "--cpus", str(self.cpus_per_node)]
        if self.delay is not None:
            args += ["--delay", self.delay]
        if self.head_cpus is not None:
            args += ["--head-cpus", str(self.head_cpus)]
        if self.direct:
            args.append("--direct")
        if self.autoscale:
            args += ["--autoscale", "--idle-minutes", str(self.idle_minutes)]
        self.up_log = self._run(*args, timeout=timeout).stderr
        self._info = None
        return self.info

    def down(self, timeout: float = 600) -> None:
        """Stop Ray on every host and remove namespaces, bridge and state (idempotent)."""
        self.down_log = self._run("down", timeout=timeout).stderr
        self._info = None

    def __enter__(self) -> "EmulatedCluster":
        self.up()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    @property
    def emu_dir(self) -> Path:
        """The cluster's state directory (logs, keys, rendered YAML, node /tmp dirs)."""
        return Path(os.environ.get("RAY_RELU_EMU_DIR", f"/run/ray_relu_emu/{self.cluster_id}"))

    @property
    def info(self) -> dict:
        """``cluster.json`` written by ``up``: addresses, shaping, timings (seconds)."""
        if self._info is None:
            path = self.emu_dir / "cluster.json"
            if not path.is_file():
                raise EmulatedClusterError(f"cluster {self.cluster_id} is not up ({path} "
                                           "missing)")
            self._info = json.loads(path.read_text())
        return self._info

    def is_up(self) -> bool:
        """True when ``up`` has completed and ``down`` has not run since."""
        return (self.emu_dir / "cluster.json").is_file()

    def status(self) -> dict:
        """``emulate.sh status --json``: ``{"up": ..., "alive_nodes": ..., ...}``."""
        proc = self._run("status", "--json", check=False)
        return json.loads(proc.stdout) if proc.stdout.strip() else {"up": False}

    def alive_nodes(self) -> int:
        """How many Ray nodes the head's dashboard reports alive now."""
        return int(self.status().get("alive_nodes", 0))

    def shape(self, rate: str, delay: str | None = None) -> dict:
        """Reshape every link of the running cluster (Ray keeps running)."""
        args = ["shape", "--rate", rate] + (["--delay", delay] if delay is not None else [])
        self._run(*args)
        self.rate = rate
        if delay is not None:
            self.delay = delay
        self._info = None
        return self.info

    def block(self, host: int) -> None:
        """Stall host ``host``'s link (0 is the head): every packet in and out of it is
        dropped (nftables in its namespace), as by a dead switch port; Ray's TCP
        connections stay open and retransmit. :meth:`unblock` lets traffic pass again."""
        self._run("block", str(host))

    def unblock(self, host: int) -> None:
        """Undo :meth:`block` (idempotent)."""
        self._run("unblock", str(host))

    def link_bytes(self) -> dict[str, tuple[int, int]]:
        """Per host name (``rr-node<i>``): (bytes into the host, bytes out of it) so far,
        read from the host end of its veth (everything that crossed its shaped link)."""
        out = {}
        for i, _ in enumerate(self.info["node_ips"]):
            base = Path(f"/sys/class/net/rr{self.cluster_id}v{i}/statistics")
            out[f"rr-node{i}"] = (int((base / "tx_bytes").read_text()),
                                  int((base / "rx_bytes").read_text()))
        return out

    def fetch(self, path: str, dest: str | os.PathLike = ".") -> None:
        """Copy ``path`` from the head (relative: under its home, where a submitted
        job's relative ``--out`` lands) to ``dest``; ``down`` deletes the head's files."""
        self._run("fetch", path, str(dest))

    def env(self) -> dict[str, str]:
        """The client environment: dashboard/job and Ray Client addresses, token path.

        HOME and TMPDIR point into the cluster's state directory, so nothing reads or
        writes the user's ``~/.ray`` or ``/tmp/ray``.
        """
        out = self._run("env").stdout
        env = dict(os.environ)
        for line in out.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""    # printf %q quoting
        return env

    # --- jobs ------------------------------------------------------------------------
    def start(self, entrypoint: Sequence[str] | str, *, working_dir: str | os.PathLike |
              None = None, excludes: Sequence[str] | None = None,
              env_vars: dict[str, str] | None = None, timeout: float = 300) -> str:
        """``ray job submit --no-wait`` ``entrypoint`` to the head; returns the job's
        submission id at once (see :meth:`wait`, :meth:`stop_job`, :meth:`job_status`).

        ``working_dir`` is uploaded by Ray and becomes the driver's working directory
        (and first on its ``sys.path``); ``excludes`` default to :data:`DEFAULT_EXCLUDES`.
        ``env_vars`` are set for the driver only (``runtime_env``). Without a working
        directory the job goes straight to the head's job API (no CLI to start: jobs
        started one after another begin within a fraction of a second).
        """
        command = shlex.split(entrypoint) if isinstance(entrypoint, str) else list(entrypoint)
        submission_id = f"ray-relu-{uuid.uuid4().hex[:12]}"
        runtime_env: dict[str, Any] = {}
        if working_dir is not None:
            runtime_env["working_dir"] = str(Path(working_dir).resolve())
            runtime_env["excludes"] = list(DEFAULT_EXCLUDES if excludes is None else excludes)
        if env_vars:
            runtime_env["env_vars"] = dict(env_vars)
        if working_dir is None:
            self._api("/api/jobs/", "POST", {"entrypoint": shlex.join(command),
                                             "submission_id": submission_id,
                                             "runtime_env": runtime_env})
        else:   # the CLI packs and uploads the directory
            self._run("submit", "--no-wait", "--submission-id", submission_id,
                      "--runtime-env-json", json.dumps(runtime_env), "--", *command,
                      timeout=timeout)
        self._commands[submission_id] = " ".join(command)
        return submission_id

    def _api(self, path: str, method: str = "GET", body: dict | None = None) -> Any:
        """A call to the head's job API (token auth) returning its JSON."""
        import urllib.request
        token = Path(self.info["auth_token_path"]).read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(self.info["dashboard"] + path, data=data,
                                         method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def job_status(self, submission_id: str) -> str:
        """``PENDING``, ``RUNNING``, ``STOPPED``, ``SUCCEEDED`` or ``FAILED``."""
        return self._api(f"/api/jobs/{submission_id}")["status"]

    def job_logs(self, submission_id: str) -> str:
        """What the job's driver printed so far."""
        return self._api(f"/api/jobs/{submission_id}/logs")["logs"]

    def stop_job(self, submission_id: str) -> None:
        """``ray job stop``: the driver is interrupted, then killed; its actors die."""
        self._api(f"/api/jobs/{submission_id}/stop", method="POST")

    def wait(self, submission_id: str, timeout: float = 1800,
             check: bool = True) -> JobOutput:
        """Wait for a job to end (stopping it after ``timeout`` seconds).

        Raises :class:`EmulatedClusterError` if it did not succeed (``check``) or timed out.
        """
        start = time.perf_counter()
        while (status := self.job_status(submission_id)) not in TERMINAL_STATUSES:
            if time.perf_counter() - start > timeout:
                self.stop_job(submission_id)
                raise EmulatedClusterError(
                    f"job {submission_id} ({self._commands.get(submission_id, '?')}) did "
                    f"not finish in {timeout} s; stopped it")
            time.sleep(0.5)
        job = JobOutput(submission_id, status == "SUCCEEDED", self.job_logs(submission_id),
                        time.perf_counter() - start, status)
        if check and not job.succeeded:
            tail = "\n".join(job.logs.splitlines()[-30:])
            raise EmulatedClusterError(f"job {submission_id} ended {status}:\n{tail}")
        return job

    def submit(self, entrypoint: Sequence[str] | str, *, working_dir: str | os.PathLike |
               None = None, excludes: Sequence[str] | None = None,
               env_vars: dict[str, str] | None = None, timeout: float = 1800,
               check: bool = True) -> JobOutput:
        """:meth:`start` ``entrypoint`` on the head and :meth:`wait` for it to end
        (``seconds`` counts from the submission)."""
        start = time.perf_counter()
        submission_id = self.start(entrypoint, working_dir=working_dir, excludes=excludes,
                                   env_vars=env_vars)
        job = self.wait(submission_id, timeout=max(1.0, timeout - (time.perf_counter() - start)),
                        check=check)
        job.seconds = time.perf_counter() - start
        return job

    def fit_spec(self, problem: dict, **fit_kwargs: Any) -> list[str]:
        """The entrypoint of this module's fit driver for ``problem`` and ``fit_kwargs``
        (for :meth:`start`; :meth:`fit` runs it and waits)."""
        return ["python", "-m", "ray_relu.emulated", "fit-driver",
                json.dumps({"problem": problem, "fit": fit_kwargs})]

    def fit(self, problem: dict, *, timeout: float = 1800, **fit_kwargs: Any) -> dict:
        """Run :func:`ray_relu.fit` in a driver on the head; return what it printed.

        ``problem`` holds :class:`ray_relu.PlantedReLU`'s arguments (``d``, ``n``,
        ``noise``, ``seed``); ``fit_kwargs`` go to ``fit`` (``address`` is ``"auto"``).
        The result has ``summary``, ``config``, ``history`` (column -> list),
        ``placement`` (each worker's node id, node IP and host name), ``driver``
        (host, ray_relu file and version) and ``job_seconds``.
        """
        job = self.submit(self.fit_spec(problem, **fit_kwargs), timeout=timeout)
        out = fit_result(job)
        out["job_seconds"] = job.seconds
        return out


def fit_result(job: JobOutput) -> dict:
    """What the fit driver of ``job`` printed as its result."""
    results = job.results()
    if not results:
        raise EmulatedClusterError(f"job {job.submission_id} printed no result:\n"
                                   + "\n".join(job.logs.splitlines()[-30:]))
    return results[-1]


# --- the driver that runs on the head ------------------------------------------------
def _fit_driver(spec: dict) -> dict:
    """Run one fit against the running cluster and describe it (runs on the head)."""
    import socket

    import ray

    import ray_relu
    from ray_relu import PlantedReLU, fit

    placement: list[dict] = []

    def on_round(record: Any, actors: list) -> None:
        if not placement:
            placement.extend(ray.get([a.info.remote() for a in actors]))
            print(PLACEMENT_MARK + json.dumps(placement, default=str), flush=True)

    kwargs = dict(spec.get("fit") or {})
    kwargs.setdefault("progress", False)
    kwargs.setdefault("address", "auto")
    started_at = time.time()
    start = time.perf_counter()
    result = fit(PlantedReLU(**spec["problem"]), on_round=on_round, **kwargs)
    elapsed = time.perf_counter() - start
    return {"summary": result.summary(), "config": result.config,
            "history": result.history.to_pydict(), "placement": placement,
            "fit_seconds": elapsed, "started_at": started_at, "finished_at": time.time(),
            "driver": {"host": socket.gethostname(), "ray_relu": ray_relu.__file__,
                       "version": ray_relu.__version__, "ray": ray.__version__,
                       "nodes_alive": sum(1 for n in ray.nodes() if n["Alive"])}}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ray_relu.emulated fit-driver JSON`` (what :meth:`EmulatedCluster.fit`
    submits); prints the result as one ``RAY_RELU_RESULT {...}`` line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "fit-driver":
        sys.stderr.write("usage: python -m ray_relu.emulated fit-driver "
                         "'{\"problem\": {...}, \"fit\": {...}}'\n")
        return 2
    out = _fit_driver(json.loads(args[1]))
    print(RESULT_MARK + json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Operating a fit on the emulated cluster: a stopped job resumed from its checkpoint on
S3, a stalled link (shorter and longer than ``round_timeout``), four concurrent jobs.

Run by ``make test-cluster`` (root). Four hosts, the head without CPUs (as in
``cluster/aws.yaml``): drivers are ``ray job submit`` jobs on the head, the K = 3 shard
actors on the other hosts. Checkpoints go to ``s3://`` on moto's S3 server, which runs
in this process on the bridge's host side (the only address outside the emulated hosts
they can reach), so a checkpoint lives outside the head as on a real cluster. The
credentials are dummies, given to the jobs as ``runtime_env`` variables.

The blocked link is real: nftables in the worker host's namespace drops every packet in
and out of it (``emulate.sh block``); Ray's TCP connections stay open and retransmit.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cluster_support import assert_is_the_reference, assert_same_history, running

from ray_relu import checkpoint as ck
from ray_relu.emulated import PLACEMENT_MARK, fit_result

pytestmark = pytest.mark.cluster

K = 3
BUCKET = "ray-relu-ops"
DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
BLOCK_S = 20.0
# Large w (d = 20000: 80 kB gradients, 160 kB w per worker and round) so a round crosses
# the 100 mbit links in tens of milliseconds: long enough runs to stop or stall mid-way.
PROBLEM = {"d": 20000, "n": 300, "seed": 7}
RUN = dict(workers=K, mode="master", codec="fp32", iterations=200, tol=0.0, seed=3)


@dataclass
class S3:
    endpoint: str
    client: object

    def uri(self, key: str) -> str:
        return f"s3://{BUCKET}/{key}?endpoint_override={self.endpoint}&scheme=http"

    def checkpoint(self, key: str) -> ck.Checkpoint | None:
        """The checkpoint at ``key`` (read with boto3), None while there is none."""
        try:
            body = self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "ck.npz").write_bytes(body)
            return ck.load(Path(tmp) / "ck.npz")

    def checkpoint_round(self, key: str) -> int | None:
        """The round of the checkpoint at ``key``, None while there is none."""
        state = self.checkpoint(key)
        return None if state is None else state.iteration

    def wait_for_round(self, key: str, at_least: int, job: str, cluster,
                       timeout: float = 300) -> int:
        """Poll until the checkpoint at ``key`` has reached ``at_least``."""
        deadline = time.monotonic() + timeout
        while (t := self.checkpoint_round(key)) is None or t < at_least:
            status = cluster.job_status(job)
            assert status in ("PENDING", "RUNNING"), (status, cluster.job_logs(job)[-3000:])
            assert time.monotonic() < deadline, f"no checkpoint >= {at_least} at {key}"
            time.sleep(0.2)
        return t


@pytest.fixture(scope="module")
def cluster():
    with running(nodes=K + 1, cpus_per_node=2, head_cpus=0) as c:
        yield c


@pytest.fixture(scope="module")
def s3(cluster):
    """moto's S3 server on the bridge's host side (reachable from every emulated host)."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address=cluster.info["host_ip"], port=0,
                                            verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}",
                              region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing")
        client.create_bucket(Bucket=BUCKET)
        yield S3(f"{host}:{port}", client)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def calm(cluster) -> dict:
    """The uninterrupted fit of PROBLEM and RUN on this cluster (its result)."""
    out = cluster.fit(PROBLEM, placement="spread", **RUN)
    assert out["summary"]["iterations"] == RUN["iterations"]
    print(f"\nuninterrupted: {RUN['iterations']} rounds in {out['fit_seconds']:.1f} s "
          f"(job {out['job_seconds']:.1f} s)")
    return out


# --- checkpoints that outlive the head: ray job stop, then --resume ------------------------
def test_a_stopped_job_resumes_from_its_s3_checkpoint_with_the_same_history(cluster, s3,
                                                                            tmp_path):
    key = f"stop-resume/{uuid.uuid4().hex[:8]}.npz"
    fit_cli = ["ray-relu", "fit", "--d", str(PROBLEM["d"]), "--n", str(PROBLEM["n"]),
               "--data-seed", str(PROBLEM["seed"]), "--workers", str(K), "--mode", "master",
               "--codec", "fp32", "--iterations", str(RUN["iterations"]), "--tol", "0",
               "--seed", str(RUN["seed"]), "--placement", "spread", "--address", "auto",
               "--no-progress", "--json", "--checkpoint", s3.uri(key),
               "--checkpoint-every", "10"]
    calm = cluster.submit(fit_cli[:-4] + ["--out", "/root/calm.parquet"])
    assert calm.succeeded, calm.logs[-3000:]

    first = cluster.start(fit_cli, env_vars=DUMMY_AWS)
    stopped_at = s3.wait_for_round(key, 50, first, cluster)
    cluster.stop_job(first)
    job = cluster.wait(first, timeout=120, check=False)
    assert job.status == "STOPPED", (job.status, job.logs[-2000:])
    kept = s3.checkpoint(key)
    saved = kept.iteration
    assert stopped_at <= saved < RUN["iterations"], saved      # stopped mid-run

    resumed = cluster.submit(fit_cli + ["--resume", s3.uri(key), "--out",
                                        "/root/resumed.parquet"], env_vars=DUMMY_AWS)
    assert resumed.succeeded, resumed.logs[-3000:]
    assert s3.checkpoint_round(key) == RUN["iterations"]        # the final checkpoint
    for name in ("calm", "resumed"):
        cluster.fetch(f"/root/{name}.parquet", tmp_path)
    want = pq.read_table(tmp_path / "calm.parquet").to_pydict()
    got = pq.read_table(tmp_path / "resumed.parquet").to_pydict()
    assert_same_history(got, want)
    # Resumed, not rerun: rows 0..saved are the checkpoint's, timings included.
    assert got["wall_s"][:saved + 1] == kept.history.column("wall_s").to_pylist()
    print(f"\njob stopped after the checkpoint of round {saved} (S3); resumed from it: "
          f"{RUN['iterations']} rounds, history equal to the uninterrupted job's")


# --- a stalled link: shorter and longer than round_timeout ---------------------------------
def _blocked_host(cluster, job: str, worker: int) -> int:
    """The index of the emulated host running ``worker`` (from the driver's placement)."""
    deadline = time.monotonic() + 120
    while PLACEMENT_MARK not in (logs := cluster.job_logs(job)):
        assert time.monotonic() < deadline, logs[-2000:]
        time.sleep(0.2)
    line = logs.split(PLACEMENT_MARK, 1)[1].splitlines()[0]
    host = json.loads(line)[worker]["host"]
    return int(host.removeprefix("rr-node"))


def _stall(cluster, host: int, seconds: float) -> threading.Thread:
    """Block ``host``'s link now and open it ``seconds`` later (in a thread)."""
    cluster.block(host)

    def reopen() -> None:
        time.sleep(seconds)
        cluster.unblock(host)

    thread = threading.Thread(target=reopen, daemon=True)
    thread.start()
    return thread


def test_a_stall_shorter_than_round_timeout_gives_the_same_history(cluster, s3, calm):
    key = f"stall-long/{uuid.uuid4().hex[:8]}.npz"
    job = cluster.start(cluster.fit_spec(PROBLEM, placement="spread", round_timeout=120,
                                         checkpoint=s3.uri(key), checkpoint_every=10, **RUN),
                        env_vars=DUMMY_AWS)
    host = _blocked_host(cluster, job, worker=1)
    at = s3.wait_for_round(key, 30, job, cluster)
    begin = time.monotonic()
    reopen = _stall(cluster, host, BLOCK_S)
    try:
        done = cluster.wait(job, timeout=600)
    finally:
        reopen.join()
    out = fit_result(done)
    assert_same_history(out["history"], calm["history"])
    assert time.monotonic() - begin >= BLOCK_S
    slowest = max(out["history"]["wall_s"])
    assert slowest >= 5.0, slowest            # a round really waited for the blocked link
    print(f"\nrr-node{host} (worker 1) blocked {BLOCK_S:.0f} s after round {at}: slowest "
          f"round {slowest:.1f} s, restarts {out['summary']['restarts']}, history equal")


def test_a_stall_longer_than_round_timeout_stops_names_the_worker_and_resumes(cluster, s3,
                                                                              calm):
    key = f"stall-short/{uuid.uuid4().hex[:8]}.npz"
    spec = dict(placement="spread", checkpoint=s3.uri(key), checkpoint_every=1000, **RUN)
    job = cluster.start(cluster.fit_spec(PROBLEM, round_timeout=5, **spec),
                        env_vars=DUMMY_AWS)
    host = _blocked_host(cluster, job, worker=2)
    time.sleep(2.0)                            # mid-run: rounds take tens of ms
    assert cluster.job_status(job) == "RUNNING"
    begin = time.monotonic()
    reopen = _stall(cluster, host, BLOCK_S)
    try:
        failed = cluster.wait(job, timeout=120, check=False)
        stopped_s = time.monotonic() - begin
    finally:
        reopen.join()
    assert failed.status == "FAILED", (failed.status, failed.logs[-2000:])
    found = re.search(r"RoundTimeoutError: round (\d+): no answer from worker 2 within "
                      r"round_timeout=5 s \(worker 2 on node (\S+)\); checkpoint of round "
                      r"(\d+) written to (\S+)", failed.logs)
    assert found, failed.logs[-3000:]
    stalled_round, saved = int(found.group(1)), int(found.group(3))
    assert found.group(2) == cluster.info["node_ips"][host]      # the blocked host
    assert found.group(4) == s3.uri(key)
    assert 0 < saved < stalled_round <= RUN["iterations"]
    assert s3.checkpoint_round(key) == saved
    assert stopped_s < BLOCK_S, stopped_s      # the timeout, not the link's return, ended it
    resumed = fit_result(cluster.submit(cluster.fit_spec(PROBLEM, resume=s3.uri(key), **spec),
                                        env_vars=DUMMY_AWS))
    assert_same_history(resumed["history"], calm["history"])
    print(f"\nrr-node{host} (worker 2) blocked: stopped {stopped_s:.1f} s later at round "
          f"{stalled_round} with the checkpoint of round {saved} on S3; resumed: history "
          f"equal")


# --- concurrent users ----------------------------------------------------------------------
def test_four_concurrent_jobs_each_give_the_history_they_give_alone(cluster):
    """Four drivers at once, each with three half-CPU actors (the three worker hosts'
    6 CPUs hold all twelve), master and all-to-all, fp32 and fp16: every history equals
    its own single-process reference, and all four fits were running at one time."""
    # fp32 and fp16: no codec kernels to compile in each of the twelve new actors.
    runs = [({"d": 40, "n": 400, "seed": 20 + i},
             dict(workers=K, mode=("master", "all-to-all")[i % 2],
                  codec=("fp32", "fp16")[i // 2], iterations=300, tol=0.0, seed=i))
            for i in range(4)]
    begin = time.monotonic()
    jobs = [cluster.start(cluster.fit_spec(problem, cpus_per_worker=0.5, **run))
            for problem, run in runs]
    outs = [fit_result(cluster.wait(job, timeout=600)) for job in jobs]
    took = time.monotonic() - begin
    for (problem, run), out in zip(runs, outs):
        assert_is_the_reference(out["history"], problem, **run)
    overlap = min(o["finished_at"] for o in outs) - max(o["started_at"] for o in outs)
    print(f"\nfour concurrent jobs in {took:.1f} s; all four fits running together for "
          f"{overlap:.1f} s; fit seconds {[round(o['fit_seconds'], 1) for o in outs]}")
    assert overlap > 0, [(o["started_at"], o["finished_at"]) for o in outs]

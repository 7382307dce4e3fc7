"""Checkpoints on S3: a fit saves to ``s3://`` and a new fit resumes from it exactly.

The S3 endpoint is moto's server (``moto.server.ThreadedMotoServer``) on loopback, so
the real pyarrow S3 client does real HTTP PUTs and GETs; nothing leaves this machine.
The credentials are dummies set for these tests only (moto accepts any). The URI
carries the endpoint the way an operator would for MinIO or another S3-compatible store:
``s3://bucket/key?endpoint_override=HOST:PORT&scheme=http``.
"""

from __future__ import annotations

import numpy as np
import pytest

from ray_relu import PlantedReLU, fit
from ray_relu import checkpoint as ck

moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
boto3 = pytest.importorskip("boto3")

BUCKET = "ray-relu-checkpoints"
DUMMY_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


class _Stop(Exception):
    """Raised from ``on_round``: the driver going away mid-run."""


@pytest.fixture(scope="module")
def s3_endpoint():
    """``host:port`` of a moto S3 server on loopback with an empty bucket."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A boto3 client of the moto server, with the dummy credentials in this test's
    environment only (pyarrow's S3 client reads them from there)."""
    for key, value in DUMMY_ENV.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=f"http://{s3_endpoint}", region_name="us-east-1")
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    return client


def uri(endpoint: str, key: str) -> str:
    return f"s3://{BUCKET}/{key}?endpoint_override={endpoint}&scheme=http"


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("mode", ["master", "all-to-all"])
def test_a_fit_resumes_from_its_s3_checkpoint_with_the_same_history(s3, s3_endpoint, mode):
    problem = PlantedReLU(d=20, n=300, seed=4)
    common = dict(codec="qsgd", codec_options={"levels": 4}, workers=3, batch_size=30,
                  iterations=30, tol=0, seed=2, progress=False, mode=mode)
    calm = fit(problem, **common)
    where = uri(s3_endpoint, f"runs/{mode}/ckpt.npz")

    def stop_at_17(record, workers):
        if record.iteration == 17:
            raise _Stop

    with pytest.raises(_Stop):
        fit(problem, checkpoint=where, checkpoint_every=5, on_round=stop_at_17, **common)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"runs/{mode}/")["Contents"]
    # One object, nothing temporary (pyarrow's create_dir leaves "dir/" markers).
    assert [o["Key"] for o in listed if not o["Key"].endswith("/")] == [f"runs/{mode}/ckpt.npz"]
    assert ck.load(where).iteration == 15                 # the last multiple of 5 before 17
    resumed = fit(problem, resume=where, checkpoint=where, checkpoint_every=5, **common)
    for name in ("iteration", "loss", "rel_error", "bytes_up", "bytes_down", "bytes_peer"):
        np.testing.assert_array_equal(calm.history.column(name).to_numpy(),
                                      resumed.history.column(name).to_numpy(), err_msg=name)
    np.testing.assert_array_equal(calm.w, resumed.w)
    assert ck.load(where).iteration == 30                 # the final checkpoint replaced it


def test_checkpoint_round_trip_on_s3_and_a_missing_key(s3, s3_endpoint):
    import pyarrow as pa
    state = ck.Checkpoint(iteration=3, w=np.arange(4.0), history=pa.table({"iteration": [0, 1,
                          2, 3]}), fingerprint={"seed": 1}, converged=False)
    where = uri(s3_endpoint, "roundtrip/ck.npz")
    ck.save(where, state)
    loaded = ck.load(where)
    assert loaded.iteration == 3 and loaded.history.equals(state.history)
    np.testing.assert_array_equal(loaded.w, state.w)
    with pytest.raises(ck.CheckpointError, match="checkpoint not found: s3://"):
        ck.load(uri(s3_endpoint, "roundtrip/none.npz"))

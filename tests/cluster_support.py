"""What the emulated-cluster test modules share: requirements, a free cluster id, a
cluster brought up and always torn down, the single-process reference to compare with."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

RAY_RELU = Path(sys.executable).with_name("ray-relu")
# The history columns a run's arithmetic fixes (wall times and round times vary).
REFERENCE_COLUMNS = ("iteration", "loss", "rel_error", "rel_change")
DETERMINISTIC_COLUMNS = REFERENCE_COLUMNS + ("bytes_up", "bytes_down", "bytes_peer")


def missing_requirements() -> str | None:
    """Why the emulated cluster cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "Linux network namespaces needed"
    if os.geteuid() != 0:
        return "needs root (network namespaces, sshd, tc): run `make test-cluster` as root"
    for tool in ("ip", "tc", "unshare", "rsync", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} missing: run `bash cluster/install-deps.sh`"
    if not Path("/usr/sbin/sshd").exists():
        return "sshd missing: run `bash cluster/install-deps.sh`"
    return None


def free_cluster_id() -> int:
    """The first id whose bridge and state directory are not in use (another
    engineer's emulated cluster may be up)."""
    for cid in range(0, 20):
        if not Path(f"/sys/class/net/rrbr{cid}").exists() \
                and not Path(f"/run/ray_relu_emu/{cid}").exists():
            return cid
    pytest.skip("no free emulated-cluster id in 0..19")


@contextmanager
def running(**kwargs) -> Iterator:
    """An :class:`~ray_relu.emulated.EmulatedCluster` up for the block, then down, with
    nothing of it left behind (bridge, state directory, namespaces)."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    from ray_relu.emulated import EmulatedCluster
    c = EmulatedCluster(cluster_id=free_cluster_id(), **kwargs)
    try:
        started = time.perf_counter()
        info = c.up()
        print(f"\nemulated cluster {c.cluster_id} up in {time.perf_counter() - started:.1f} s;"
              f" ray up: head {info['seconds']['head']} s, nodes up "
              f"{info['seconds']['all_nodes']} s; links: {info['shaping']}")
        yield c
    finally:
        started = time.perf_counter()
        c.down()
        print(f"\nemulated cluster {c.cluster_id} down in {time.perf_counter() - started:.1f} s")
        leftovers = [p for p in (Path(f"/sys/class/net/rrbr{c.cluster_id}"), c.emu_dir,
                                 *Path("/run/netns").glob(f"rr{c.cluster_id}n*"))
                     if p.exists()]
        assert not leftovers, f"down left {leftovers}"


def cli(cluster, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`ray-relu cluster ARGS` for this cluster, as a user types it."""
    return subprocess.run([str(RAY_RELU), "cluster", *args], capture_output=True, text=True,
                          timeout=timeout,
                          env=dict(os.environ, RAY_RELU_EMU_ID=str(cluster.cluster_id)))


def assert_is_the_reference(history: dict, problem: dict, **run) -> None:
    """A history (column -> list, as the cluster's drivers print it) equals, to the bit,
    the single-process reference run of the same problem and parameters.

    Only for small ``d``: Ray runs actors with one BLAS thread, and for long vectors a
    multi-threaded BLAS in this process sums in another order (last bits differ)."""
    from ray_relu import PlantedReLU
    from ray_relu.reference import sgd
    ref = sgd(PlantedReLU(**problem), **run).history
    assert len(history["iteration"]) == ref.num_rows, (len(history["iteration"]),
                                                       ref.num_rows)
    for name in REFERENCE_COLUMNS:
        np.testing.assert_array_equal(np.asarray(history[name]),
                                      ref.column(name).to_numpy(), err_msg=name)


def assert_same_history(a: dict, b: dict) -> None:
    """Two histories (column -> list) with equal deterministic columns, bytes included
    (to the bit; NaN, as in row 0's rel_change, equals NaN)."""
    for name in DETERMINISTIC_COLUMNS:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)

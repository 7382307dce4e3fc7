"""The Ray engine on a real local Ray: exactness, bytes, defaults, faults, checkpoints."""

import os
import signal

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray

from ray_relu import FitResult, PlantedReLU, algorithm, fit
from ray_relu.models import ReLU
from ray_relu.checkpoint import CheckpointError
from ray_relu.codecs import get_codec
from ray_relu.data import ParquetData, write_parquet
from ray_relu.reference import sgd
from ray_relu.result import DETERMINISTIC_COLUMNS
from ray_relu.seeding import BATCH, rng_for
from ray_relu.worker import ReplicaLost, RoundStats

pytestmark = pytest.mark.usefixtures("ray_session")
MODES = ("master", "all-to-all")
# Every engine path: all-to-all messages relayed through the driver (one node's
# default), kept in the senders' object stores and pulled by the peers, or pushed by
# the senders to the peers in actor calls of their own.
PATHS = [("master", "relay"), ("all-to-all", "relay"), ("all-to-all", "p2p"),
         ("all-to-all", "push")]


def columns(table, names=DETERMINISTIC_COLUMNS):
    return {c: np.asarray(table.column(c)) for c in names}


def assert_same_history(a, b):
    ca, cb = columns(a.history), columns(b.history)
    for name in DETERMINISTIC_COLUMNS:
        np.testing.assert_array_equal(ca[name], cb[name], err_msg=name)


def assert_is_the_reference(result, ref):
    """The fit's history rows (all but the byte counts) and final w equal those of a
    :func:`ray_relu.reference.sgd` run, to the bit."""
    names = ("iteration", "loss", "rel_error", "rel_change")
    got, want = columns(result.history, names), columns(ref.history, names)
    for name in names:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    np.testing.assert_array_equal(result.w, ref.iterates[-1])


def batch_split(m, K):
    """Rows per worker when a batch of ``m`` is split ``K`` ways (the first get more)."""
    return [m // K + (1 if k < m % K else 0) for k in range(K)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("K", [1, 2, 3])
@pytest.mark.parametrize("batch_size", [None, 12])
def test_fp64_fit_matches_single_process_reference(mode, K, batch_size):
    problem = PlantedReLU(d=15, n=150, noise=0.05, seed=2)
    kwargs = dict(codec="fp64", workers=K, batch_size=batch_size, iterations=12, seed=4)
    result = fit(problem, mode=mode, tol=0.0, progress=False, **kwargs)
    ref = sgd(problem, **kwargs)
    assert result.history.num_rows == ref.history.num_rows == 13
    for name in ("loss", "rel_error"):
        np.testing.assert_allclose(np.asarray(result.history.column(name)),
                                   np.asarray(ref.history.column(name)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.w, ref.iterates[-1], rtol=0, atol=1e-12)
    assert result.iterations == 12 and not result.converged
    assert result.replica_divergence == 0.0


@pytest.mark.parametrize("mode, route", PATHS)
def test_qsgd_fit_matches_reference_draw_for_draw(mode, route):
    problem = PlantedReLU(d=30, n=240, seed=1)
    kwargs = dict(codec="qsgd", codec_options={"levels": 2}, workers=2, batch_size=40,
                  iterations=25, seed=9)
    result = fit(problem, mode=mode, route=route, tol=0.0, progress=False, **kwargs)
    ref = sgd(problem, **kwargs)
    np.testing.assert_allclose(np.asarray(result.history.column("rel_error")),
                               np.asarray(ref.history.column("rel_error")), atol=1e-12)


def test_master_and_all_to_all_give_the_same_trajectory():
    problem = PlantedReLU(d=40, n=320, noise=0.01, seed=3)
    common = dict(codec="qsgd", codec_options={"levels": 4, "bucket_size": 16}, workers=3,
                  batch_size=60, iterations=30, tol=0.0, seed=5, progress=False)
    a, b = fit(problem, mode="master", **common), fit(problem, mode="all-to-all", **common)
    for name in ("loss", "rel_error", "rel_change"):
        np.testing.assert_array_equal(np.asarray(a.history.column(name)),
                                      np.asarray(b.history.column(name)))
    np.testing.assert_array_equal(a.w, b.w)


@pytest.mark.parametrize("codec", ["fp32", "fp16"])
def test_bytes_are_the_real_message_sizes(codec):
    from ray_relu.coordinator import RELAY_SLACK_BYTES
    d, K = 100, 4
    problem = PlantedReLU(d=d, n=300, seed=0)
    message = len(get_codec(codec).encode(np.ones(d)))
    w_message = len(get_codec("fp64").encode(np.ones(d)))
    # a 29-byte header, fp16's 2-byte exponent block, the values
    assert (message, w_message) == ({"fp32": 429, "fp16": 231}[codec], 829)
    master = fit(problem, codec=codec, workers=K, iterations=5, tol=0, progress=False)
    up, down = np.asarray(master.history.column("bytes_up")), \
        np.asarray(master.history.column("bytes_down"))
    assert np.all(up[1:] == K * message)
    # w_0 goes down in float64; then w_t in whichever exact form is shorter, give or
    # take the slack: w itself, or the K - 1 other workers' gradient messages
    # (fp16: 3 x 231 < 829 + 256 bytes; fp32: 3 x 429 > 829 + 256).
    assert down[0] == K * w_message
    relayed = (K - 1) * K * message
    relays = relayed < K * (w_message + RELAY_SLACK_BYTES)
    assert np.all(down[1:] == (relayed if relays else K * w_message))
    assert relays == (codec == "fp16")
    assert up[0] == K * message + K * w_message  # moment sums (float64) go up first
    a2a = fit(problem, codec=codec, workers=K, mode="all-to-all", iterations=5, tol=0,
              progress=False)
    peer = np.asarray(a2a.history.column("bytes_peer"))
    assert peer[0] == K * (K - 1) * w_message   # moment sums exchanged
    assert np.all(peer[1:] == K * (K - 1) * message)
    # Up: only the driver's recovery snapshot of w, asked for at round 0 (the moment
    # sums live on the workers) and adopted SNAPSHOT_LAG rounds later.
    from ray_relu.coordinator import SNAPSHOT_LAG
    expected_up = np.zeros(6, dtype=np.int64)
    expected_up[SNAPSHOT_LAG] = w_message
    np.testing.assert_array_equal(np.asarray(a2a.history.column("bytes_up")), expected_up)


def test_summary_bytes_add_up_with_the_startup_exchange():
    """Issue 16: bytes_per_iteration is not total_bytes / iterations; the difference is
    the start-up exchange (history row 0), named startup_bytes. d = 200, K = 2
    all-to-all: the two workers swap their float64 moment sums, 2 x (8d + 29) bytes."""
    d = 200
    result = fit(PlantedReLU(d=d, n=1600, seed=0), codec="qsgd", codec_options={"levels": 4},
                 workers=2, mode="all-to-all", tol=1e-6, progress=False)
    s = result.summary()
    assert s["startup_bytes"] == 2 * (8 * d + 29)
    T = s["iterations"]
    assert T > 10
    assert s["total_bytes"] == s["startup_bytes"] + round(T * s["bytes_per_iteration"])
    assert s["total_bytes"] / T > s["bytes_per_iteration"]    # what the issue tripped on


def qsgd_message_sizes(problem, ref, K, batch_size, seed, codec):
    """Byte length of each worker's gradient message at each iterate of a reference
    run: rows t, columns k (QSGD messages differ in length from worker to worker)."""
    shards = [problem.shard(k, K) for k in range(K)]
    rows = batch_split(batch_size, K)
    sizes = np.zeros((len(ref.iterates), K), dtype=np.int64)
    for t, w in enumerate(ref.iterates):
        for k, ((X, y), mk) in enumerate(zip(shards, rows)):
            idx = algorithm.batch_indices(seed, t, k, len(y), mk)
            _, g = algorithm.evaluate(ReLU(), w, X, y, idx)
            sizes[t, k] = len(algorithm.encode_gradient(codec, g, seed, t, k))
    return sizes


def test_qsgd_bytes_are_the_sum_of_the_real_message_sizes():
    """Variable-length messages: uplink is the sum of the K sizes, and in all-to-all
    each worker receives the K - 1 messages of the others, never its own."""
    problem = PlantedReLU(d=40, n=90, seed=4)
    K, m, seed = 3, 30, 2
    common = dict(codec="qsgd", codec_options={"levels": 3}, workers=K, batch_size=m,
                  iterations=6, tol=0, seed=seed)
    ref = sgd(problem, **common)
    sizes = qsgd_message_sizes(problem, ref, K, m, seed, get_codec("qsgd", levels=3))
    assert len(set(sizes.ravel())) > 1                 # the sizes do differ
    master = fit(problem, progress=False, **common)
    np.testing.assert_array_equal(np.asarray(master.history.column("bytes_up"))[1:],
                                  sizes[1:].sum(axis=1))
    a2a = fit(problem, mode="all-to-all", progress=False, **common)
    np.testing.assert_array_equal(np.asarray(a2a.history.column("bytes_peer"))[1:],
                                  (K - 1) * sizes[:-1].sum(axis=1))


def test_qsgd_moves_far_fewer_bytes_than_fp32():
    problem = PlantedReLU(d=1000, n=4000, seed=0)
    common = dict(workers=2, iterations=3, tol=0, progress=False)
    fp32 = fit(problem, codec="fp32", **common)
    q = fit(problem, codec="qsgd", codec_options={"levels": 1}, **common)
    up32 = np.asarray(fp32.history.column("bytes_up"))[1:].mean()
    upq = np.asarray(q.history.column("bytes_up"))[1:].mean()
    assert upq < up32 / 8


CODECS = [("fp64", {}), ("fp32", {}), ("fp16", {}), ("qsgd", {"levels": 1}),
          ("qsgd", {"levels": 4}), ("qsgd", {"levels": 2, "bucket_size": 32})]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("codec, options", CODECS)
def test_untuned_defaults_converge_for_every_codec(codec, options, mode):
    problem = PlantedReLU(d=100, n=800, seed=7)
    result = fit(problem, codec=codec, codec_options=options, workers=2, mode=mode,
                 tol=1e-6, iterations=2000, progress=False)
    assert result.converged, (codec, options, mode, result)
    assert result.rel_error <= 1e-6
    assert result.replica_divergence == 0.0


def test_minibatch_defaults_converge():
    problem = PlantedReLU(d=100, n=1600, seed=8)
    result = fit(problem, codec="qsgd", codec_options={"levels": 4}, workers=2,
                 batch_size=64, tol=1e-6, iterations=4000, progress=False)
    assert result.converged


def by_hand(problem, K, batch_size, step_size, iterations, seed):
    """The algorithm written out in numpy for a tiny problem: moment start, then each
    worker's gradient on its own rows of stream (seed, BATCH, t, k), averaged with
    weights m_k/m. Returns the losses and the iterates ``w_0..w_T``."""
    X, y = problem.data()
    w = 2 / problem.n * X.T @ y
    shards = [problem.shard(k, K) for k in range(K)]
    rows = batch_split(batch_size, K)
    losses, iterates = [], [w]
    for t in range(iterations + 1):
        loss, g = 0.0, np.zeros_like(w)
        for k, ((Xk, yk), mk) in enumerate(zip(shards, rows)):
            idx = np.sort(rng_for(seed, BATCH, t, k).choice(len(yk), mk, replace=False))
            z = Xk[idx] @ w
            r = np.maximum(z, 0) - yk[idx]
            loss += mk / batch_size * 0.5 * np.mean(r ** 2)
            g += mk / batch_size * (Xk[idx].T @ (r * (z > 0))) / mk
        losses.append(loss)
        if t < iterations:
            w = w - step_size * g
            iterates.append(w)
    return np.array(losses), iterates


@pytest.mark.parametrize("mode", MODES)
def test_fit_matches_the_algorithm_written_out_by_hand(mode):
    """Unequal shards (7, 8, 8 rows) and batches (3, 3, 2 rows): every shared piece of
    algorithm.py (moment start, batch draws, weights, step) checked against numpy."""
    problem = PlantedReLU(d=4, n=23, noise=0.1, seed=9)
    K, m, eta, T, seed = 3, 8, 0.3, 3, 6
    result = fit(problem, codec="fp64", workers=K, mode=mode, batch_size=m, step_size=eta,
                 iterations=T, tol=0, seed=seed, progress=False)
    losses, iterates = by_hand(problem, K, m, eta, T, seed)
    np.testing.assert_allclose(np.asarray(result.history.column("loss")), losses,
                               rtol=1e-12, atol=0)
    errors = [np.linalg.norm(w - problem.w_star) / np.linalg.norm(problem.w_star)
              for w in iterates]
    np.testing.assert_allclose(np.asarray(result.history.column("rel_error")), errors,
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(result.w, iterates[-1], rtol=1e-12, atol=1e-15)


def test_encoded_downlink_fit_matches_reference_draw_for_draw():
    """The master quantizes its update with stream (seed, DOWNLINK, t): the reference
    draws the same, so every history column and the final w agree to the bit."""
    problem = PlantedReLU(d=20, n=160, noise=0.05, seed=3)
    kwargs = dict(codec="qsgd", codec_options={"levels": 2}, workers=2, batch_size=40,
                  iterations=15, tol=0, seed=8, downlink_codec={"id": "qsgd", "levels": 2})
    result = fit(problem, mode="master", progress=False, **kwargs)
    ref = sgd(problem, mode="master", **kwargs)
    assert_is_the_reference(result, ref)


def _kill(how):
    def on_round(record, workers):
        if record.iteration == 4:
            victim = workers[1]
            if how == "sigkill":
                os.kill(ray.get(victim.info.remote())["pid"], signal.SIGKILL)
            else:
                ray.kill(victim, no_restart=False)
    return on_round


@pytest.mark.parametrize("mode, route", PATHS)
@pytest.mark.parametrize("how", ["sigkill", "ray.kill"])
def test_killed_worker_restarts_and_the_history_is_unchanged(mode, route, how):
    problem = PlantedReLU(d=20, n=300, noise=0.1, seed=4)
    common = dict(codec="qsgd", codec_options={"levels": 2}, workers=3, mode=mode,
                  route=route, batch_size=30, iterations=12, tol=0, seed=3,
                  progress=False)
    calm = fit(problem, **common)
    hit = fit(problem, on_round=_kill(how), **common)
    assert hit.restarts >= 1
    assert_same_history(calm, hit)
    np.testing.assert_array_equal(calm.w, hit.w)
    assert hit.replica_divergence == 0.0


def test_all_to_all_survives_worker_0_dying_at_snapshot_rounds(monkeypatch):
    """A long all-to-all run (replicas are rebuilt by replaying from the driver's
    snapshot of worker 0's replica) losing worker 0 right after the snapshot rounds 32
    and 64, while their snapshots are pending, and other workers a few rounds later,
    which then replay from whatever snapshot was kept: history and w are those of the
    reference to the bit."""
    from ray_relu import coordinator
    monkeypatch.setattr(coordinator, "SNAPSHOT_EVERY", 32)
    problem = PlantedReLU(d=6, n=60, noise=0.1, seed=2)
    common = dict(codec="qsgd", codec_options={"levels": 2}, workers=3, batch_size=12,
                  iterations=70, tol=0, seed=5)
    hit = fit(problem, mode="all-to-all", progress=False,
              on_round=_kill_at([32, 40, 64, 67], [0, 1, 0, 2]), **common)
    ref = sgd(problem, mode="all-to-all", **common)
    assert hit.restarts >= 4
    assert_is_the_reference(hit, ref)
    assert hit.replica_divergence == 0.0


@pytest.mark.parametrize("mode, route", PATHS)
def test_resume_continues_exactly(tmp_path, mode, route):
    problem = PlantedReLU(d=25, n=200, noise=0.05, seed=6)
    common = dict(codec="qsgd", codec_options={"levels": 2}, workers=2, mode=mode,
                  route=route, batch_size=40, tol=0, seed=1, progress=False)
    path = tmp_path / "ck.npz"
    first = fit(problem, iterations=12, checkpoint=path, checkpoint_every=5, **common)
    assert first.iterations == 12 and path.exists()
    resumed = fit(problem, iterations=30, resume=path, **common)
    straight = fit(problem, iterations=30, **common)
    assert resumed.history.num_rows == 31
    assert_same_history(resumed, straight)
    np.testing.assert_array_equal(resumed.w, straight.w)


def test_resume_errors_are_clear(tmp_path):
    problem = PlantedReLU(d=10, n=100, seed=0)
    with pytest.raises(CheckpointError, match="not found"):
        fit(problem, resume=tmp_path / "missing.npz", progress=False)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        fit(problem, resume=bad, progress=False)
    path = tmp_path / "ck.npz"
    fit(problem, workers=2, iterations=3, tol=0, checkpoint=path, progress=False)
    with pytest.raises(CheckpointError, match="workers: checkpoint has 2, this run has 3"):
        fit(problem, workers=3, resume=path, progress=False)
    with pytest.raises(CheckpointError, match="codec"):
        fit(problem, workers=2, codec="fp16", resume=path, progress=False)
    with pytest.raises(CheckpointError, match="data"):
        fit(PlantedReLU(d=10, n=100, seed=1), workers=2, resume=path, progress=False)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        fit(problem, workers=2, resume=truncated, progress=False)


@pytest.mark.parametrize("layout", ["list", "columns"])
def test_parquet_shards_give_the_same_fit(tmp_path, layout):
    problem = PlantedReLU(d=12, n=160, seed=5)
    path = write_parquet(problem, tmp_path / "data.parquet", layout=layout, row_group_size=37)
    common = dict(codec="fp64", workers=3, iterations=8, tol=0, progress=False)
    a, b = fit(problem, **common), fit(ParquetData(path), **common)
    np.testing.assert_array_equal(a.w, b.w)
    assert b.stopping_rule == "rel_error"


def test_parquet_without_w_star_stops_on_relative_change(tmp_path):
    problem = PlantedReLU(d=10, n=200, seed=2)
    path = write_parquet(problem, tmp_path / "d.parquet")
    table = pq.read_table(path).replace_schema_metadata(None)
    bare = tmp_path / "bare.parquet"
    pq.write_table(table, bare)
    result = fit(str(bare), workers=2, tol=1e-9, iterations=500, progress=False)
    assert result.stopping_rule == "rel_change" and result.converged
    assert result.w_star is None and np.isnan(result.rel_error)
    assert np.linalg.norm(result.w - problem.w_star) < 1e-6


def test_result_outputs(tmp_path):
    result = fit(PlantedReLU(d=10, n=100), workers=2, iterations=5, tol=0, progress=False)
    assert isinstance(result, FitResult)
    out = tmp_path / "h.parquet"
    result.to_parquet(out)
    table = pq.read_table(out)
    assert table.num_rows == 6 and b"ray_relu" in table.schema.metadata
    fig = result.plot()
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "log"


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="ring"), "mode must be one of 'master', 'all-to-all'"),
    (dict(codec="fp8"), "fp8"),
    (dict(workers=0), "workers must be an integer >= 1"),
    (dict(workers=101), "workers must be an integer <= 100"),
    (dict(batch_size=1, workers=2), "batch_size must be an integer >= 2"),
    (dict(batch_size=1000), "batch_size must be an integer <= 100"),
    (dict(step_size=-1.0), "step_size must be > 0"),
    (dict(tol=float("nan")), "tol must be finite"),
    (dict(init="ones"), "init must be one of"),
    (dict(init=np.zeros(3)), r"init must have shape \(10,\)"),
    (dict(mode="all-to-all", downlink_codec="fp16"), "downlink_codec applies to mode='master'"),
    (dict(placement="random"), "placement must be one of"),
    (dict(checkpoint_every=0), "checkpoint_every must be an integer >= 1"),
    (dict(codec="qsgd", codec_options={"levels": 0}), "levels"),
])
def test_fit_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit(PlantedReLU(d=10, n=100), progress=False, **kwargs)


def test_encoded_downlink_converges_and_shrinks_downlink_bytes():
    problem = PlantedReLU(d=200, n=1600, seed=1)
    full = fit(problem, workers=2, tol=1e-6, iterations=3000, progress=False)
    q = fit(problem, workers=2, tol=1e-6, iterations=3000, progress=False,
            downlink_codec={"id": "qsgd", "levels": 4})
    assert q.converged
    down_full = np.asarray(full.history.column("bytes_down"))[1:].mean()
    down_q = np.asarray(q.history.column("bytes_down"))[1:].mean()
    assert down_q < down_full / 4


def test_fp16_both_ways_converges_far_below_the_half_range():
    """Gradients and updates shrink below fp16's smallest subnormal (6e-8) long before
    1e-10; the codec's per-message power-of-two scale keeps them from flushing to zero."""
    problem = PlantedReLU(d=30, n=240, seed=1)
    result = fit(problem, codec="fp16", downlink_codec="fp16", workers=2, tol=1e-10,
                 iterations=3000, progress=False)
    assert result.converged and result.rel_error <= 1e-10


@pytest.mark.parametrize("route", ["relay", "p2p"])
def test_peer_to_peer_messages_stay_in_the_senders_object_store(route):
    """p2p: a message above the inline limit is stored on the sender's node (Ray knows
    where), so peers pull it from there; relayed, it is inlined into the driver."""
    from ray_relu.settings import resolve
    from ray_relu.runtime import P2P_INLINE_BYTES, spawn_workers, stop_workers
    settings = resolve(PlantedReLU(d=100, n=200, seed=0), codec="fp32", workers=2,
                       mode="all-to-all")
    workers = spawn_workers(settings.source, 2, settings.plan, num_cpus=0.5, route=route)
    try:
        w0 = get_codec("fp64").encode(np.zeros(100))
        message_ref, stats_ref = workers[0].advance.remote((0, "set", 0.0), w0)
        stats = ray.get(stats_ref)
        assert len(stats) < P2P_INLINE_BYTES < len(ray.get(message_ref))
        where = ray.experimental.get_object_locations([message_ref, stats_ref])
        assert bool(where[message_ref]["node_ids"]) == (route == "p2p")
        assert not where[stats_ref]["node_ids"]     # the small stats are always inlined
    finally:
        stop_workers(workers)


def test_push_with_three_uneven_workers_is_the_reference():
    """Each push worker sorts what was delivered by sender: with K = 3 and batches of
    11, 10 and 10 rows, a peer's message in another's place would carry its weight."""
    problem = PlantedReLU(d=30, n=240, seed=1)
    kwargs = dict(codec="qsgd", codec_options={"levels": 4}, workers=3, batch_size=31,
                  iterations=15, seed=9)
    result = fit(problem, mode="all-to-all", route="push", tol=0.0, progress=False,
                 **kwargs)
    assert_is_the_reference(result, sgd(problem, mode="all-to-all", **kwargs))
    assert result.replica_divergence == 0.0


def test_push_moves_messages_worker_to_worker_and_drops_stale_generations():
    """push: the driver gets an empty message and the stats; the peer's next round
    counts the sender's message, delivered by the sender; a call of an older replay
    generation is refused, so it cannot hold up the replay behind it."""
    from ray_relu.settings import resolve
    from ray_relu.runtime import spawn_workers, stop_workers
    settings = resolve(PlantedReLU(d=100, n=200, seed=0), codec="fp32", workers=2,
                       mode="all-to-all")
    w0 = get_codec("fp64").encode(np.zeros(100))
    relays = spawn_workers(settings.source, 2, settings.plan, num_cpus=0.5)
    pushers = spawn_workers(settings.source, 2, settings.plan, num_cpus=0.5, route="push")
    try:
        relayed = ray.get(relays[0].advance.remote((0, "set", 0.0), w0)[0])
        for wk in pushers:
            wk.connect.remote(pushers, 1)
        zero = [wk.advance.remote((0, "set", 0.0, 1), w0) for wk in pushers]
        assert ray.get([message for message, _ in zero]) == [b"", b""]
        message_ref, stats_ref = pushers[1].advance.remote((1, "inbox", 0.1, 1))
        assert ray.get(message_ref) == b""
        assert RoundStats.unpack(ray.get(stats_ref)).received_bytes == len(relayed) > 400
        pushers[0].connect.remote(pushers, 2)      # another thread: wait until it ran
        while ray.get(pushers[0].__ray_call__.remote(lambda self: self.generation)) < 2:
            pass
        with pytest.raises(ReplicaLost, match="generation 1 was overtaken by generation 2"):
            ray.get(pushers[0].advance.remote((1, "inbox", 0.1, 1))[1])
    finally:
        stop_workers(relays + pushers)


def test_peer_to_peer_recovers_large_messages_exactly():
    problem = PlantedReLU(d=100, n=600, noise=0.1, seed=4)
    common = dict(codec="fp32", workers=3, mode="all-to-all", batch_size=60,
                  iterations=12, tol=0, seed=3, progress=False)
    relayed = fit(problem, route="relay", **common)
    hit = fit(problem, route="p2p", on_round=_kill("sigkill"), **common)
    assert hit.restarts >= 1
    assert_same_history(relayed, hit)
    np.testing.assert_array_equal(relayed.w, hit.w)


@pytest.mark.parametrize("route", ["p2p", "push"])
def test_routes_other_than_relay_are_for_all_to_all_only(route):
    with pytest.raises(ValueError, match=f"route='{route}' applies to mode='all-to-all'"):
        fit(PlantedReLU(d=10, n=100), route=route, progress=False)
    with pytest.raises(ValueError, match="route must be one of"):
        fit(PlantedReLU(d=10, n=100), route="direct", progress=False)


@pytest.mark.parametrize("mode, route", PATHS)
def test_rounds_ahead_stop_exactly_where_tol_is_met(mode, route):
    """All-to-all, and master where it relays every round, submit rounds ahead of the
    driver; the fit must still end at the first round that meets tol, with that
    round's w (not a later one's)."""
    problem = PlantedReLU(d=30, n=240, seed=5)
    kwargs = dict(codec="qsgd", codec_options={"levels": 4}, workers=2, batch_size=40,
                  iterations=400, tol=1e-3, seed=2)
    ref = sgd(problem, **kwargs)
    stop = ref.history.num_rows - 1
    assert 5 < stop < 400                   # tol, not the iteration cap, ended it
    result = fit(problem, mode=mode, route=route, progress=False, **kwargs)
    assert result.converged and result.iterations == stop
    assert result.history.num_rows == stop + 1
    np.testing.assert_allclose(np.asarray(result.history.column("rel_error")),
                               np.asarray(ref.history.column("rel_error")), atol=1e-12)
    np.testing.assert_allclose(result.w, ref.iterates[-1], rtol=0, atol=1e-12)
    assert result.replica_divergence == 0.0
    # the workers still held the replica of the round that met tol: no replay was needed
    assert result.restarts == 0


@pytest.mark.parametrize("K, d, codec, options, ahead", [
    (2, 8, "fp32", {}, True),               # relaying 1 message beats shipping w
    (3, 10 ** 4, "fp32", {}, True),         # 2 messages: w plus 2 headers, in the slack
    (4, 100, "fp32", {}, False),            # 3 fp32 messages: w is cheaper
    (4, 8, "fp32", {}, True),               # ... but not by more than the slack at d = 8
    (3, 20, "qsgd", {"levels": 2}, True),   # bounded by its dense length
    (3, 20, "qsgd", {"levels": 2, "coding": "elias"}, False),   # no bound
    (2, 8, "ef", {"codec": "fp32"}, False),     # error feedback: the driver's snapshots
])
def test_master_submits_ahead_only_where_every_round_relays(K, d, codec, options, ahead):
    """Master submits round t + 1 before round t's messages arrive only where the
    codec's max_message_bytes proves the relay is the cheaper exact downlink."""
    from ray_relu.coordinator import MasterCoordinator
    from ray_relu.settings import resolve
    settings = resolve(PlantedReLU(d=d, n=40, seed=0), codec=codec, codec_options=options,
                       workers=K, mode="master")
    coord = MasterCoordinator([None] * K, settings.plan, settings.step_size,
                              settings.w_star, last_round=10)
    assert coord.pipelined is ahead
    assert not MasterCoordinator([None] * K, settings.plan, settings.step_size,
                                 settings.w_star).pipelined     # no last round known


def _kill_at(rounds, victims):
    """SIGKILL ``victims[i]`` after round ``rounds[i]`` (restart recovers it)."""
    plan = dict(zip(rounds, victims))

    def on_round(record, workers):
        if record.iteration in plan:
            os.kill(ray.get(workers[plan[record.iteration]].info.remote())["pid"],
                    signal.SIGKILL)
    return on_round


@pytest.mark.parametrize("route", ["relay", "p2p", "push"])
def test_replays_from_rotated_snapshots_are_exact(monkeypatch, route):
    """Snapshots every 8 rounds, adopted SNAPSHOT_LAG rounds later: kill worker 0 (whose
    replica the snapshots are) while one is pending and right after one was adopted,
    and another worker later; every replay must rebuild the same history."""
    from ray_relu import coordinator
    monkeypatch.setattr(coordinator, "SNAPSHOT_EVERY", 8)
    problem = PlantedReLU(d=20, n=300, noise=0.1, seed=4)
    common = dict(codec="qsgd", codec_options={"levels": 2}, workers=3,
                  mode="all-to-all", route=route, batch_size=30, iterations=40, tol=0,
                  seed=3, progress=False)
    calm = fit(problem, **common)
    lag = coordinator.SNAPSHOT_LAG
    hit = fit(problem, on_round=_kill_at([9, 16 + lag, 29], [0, 0, 2]), **common)
    assert hit.restarts >= 3
    assert_same_history(calm, hit)
    np.testing.assert_array_equal(calm.w, hit.w)
    assert hit.replica_divergence == 0.0


@pytest.mark.parametrize("mode, route", PATHS)
def test_a_worker_dying_after_the_last_round_costs_nothing(mode, route):
    """The fit still asks the workers for w and their replicas' agreement after the
    last round; a worker that died by then is brought back to that round first."""
    problem = PlantedReLU(d=20, n=300, noise=0.1, seed=4)
    common = dict(codec="qsgd", codec_options={"levels": 2}, workers=3, mode=mode,
                  route=route, batch_size=30, iterations=6, tol=0, seed=3, progress=False)
    calm = fit(problem, **common)
    hit = fit(problem, on_round=_kill_at([6], [1]), **common)
    assert_same_history(calm, hit)
    np.testing.assert_array_equal(calm.w, hit.w)
    assert hit.replica_divergence == 0.0

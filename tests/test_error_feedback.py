"""Error feedback on a real local Ray: the residual is worker state that replays,
restarts and checkpoints must carry, or the bytes (and so the history) change."""

import numpy as np
import pytest

from ray_relu import PlantedReLU, fit
from ray_relu.codecs import ErrorFeedback, Sign, TopK
from ray_relu.reference import sgd

from test_engine import PATHS, _kill_at, assert_is_the_reference, assert_same_history

pytestmark = pytest.mark.usefixtures("ray_session")

PROBLEM = PlantedReLU(d=20, n=300, noise=0.1, seed=4)
COMMON = dict(codec=ErrorFeedback(TopK(k=4)), workers=3, batch_size=30, tol=0, seed=3,
              step_size=0.02)


def options(mode: str, route: str) -> dict:
    extra = {"downlink_codec": ErrorFeedback(Sign())} if mode == "master" else {}
    return dict(COMMON, mode=mode, route=route, progress=False, **extra)


@pytest.mark.parametrize("mode, route", PATHS)
def test_error_feedback_fit_is_the_reference(mode, route):
    opts = options(mode, route)
    result = fit(PROBLEM, iterations=20, **opts)
    del opts["route"], opts["progress"]
    assert_is_the_reference(result, sgd(PROBLEM, iterations=20, **opts))


def test_the_memory_changes_the_trajectory():
    """Guards the test above: with and without error feedback the bytes differ."""
    plain = fit(PROBLEM, iterations=6, **dict(COMMON, codec=TopK(k=4), progress=False))
    memory = fit(PROBLEM, iterations=6, **dict(COMMON, progress=False))
    assert not np.array_equal(plain.history.column("loss"), memory.history.column("loss"))


@pytest.mark.parametrize("mode, route", PATHS)
def test_killed_workers_replay_their_memory_exactly(monkeypatch, mode, route):
    """Snapshots every 8 rounds: workers die right after a snapshot, while one is
    pending, and between snapshots; every restarted worker must rebuild its memory."""
    from ray_relu import coordinator
    monkeypatch.setattr(coordinator, "SNAPSHOT_EVERY", 8)
    calm = fit(PROBLEM, iterations=30, **options(mode, route))
    lag = coordinator.SNAPSHOT_LAG
    hit = fit(PROBLEM, iterations=30, on_round=_kill_at([5, 9, 16 + lag, 21], [1, 0, 0, 2]),
              **options(mode, route))
    assert hit.restarts >= 2         # kills close together may share one replay
    assert_same_history(calm, hit)
    np.testing.assert_array_equal(calm.w, hit.w)


@pytest.mark.parametrize("mode, route", PATHS)
def test_resume_carries_the_memory(tmp_path, monkeypatch, mode, route):
    from ray_relu import coordinator
    monkeypatch.setattr(coordinator, "SNAPSHOT_EVERY", 8)
    path = tmp_path / "ck.npz"
    fit(PROBLEM, iterations=13, checkpoint=path, checkpoint_every=5, **options(mode, route))
    resumed = fit(PROBLEM, iterations=26, resume=path, **options(mode, route))
    straight = fit(PROBLEM, iterations=26, **options(mode, route))
    assert_same_history(resumed, straight)
    np.testing.assert_array_equal(resumed.w, straight.w)


@pytest.mark.parametrize("mode", ["master", "all-to-all"])
@pytest.mark.parametrize("inner", [Sign(), TopK(k=2)], ids=repr)
def test_with_memory_sign_and_topk_reach_1e6_at_a_fixed_step(mode, inner):
    """Noise-free planted ReLU: every row's gradient vanishes at w*, so the biased
    compressors converge even without memory (measured below), only far slower."""
    problem = PlantedReLU(d=20, n=600, seed=2)
    run = dict(workers=3, step_size=0.1, tol=1e-6, seed=1)
    result = fit(problem, codec=ErrorFeedback(inner), mode=mode, iterations=1000,
                 progress=False, **run)
    assert result.converged and result.iterations < 500
    plain = sgd(problem, codec=inner, iterations=3000, **run)
    assert plain.history.num_rows - 1 > 3 * result.iterations       # converges, slowly


def test_plain_sign_stalls_where_error_feedback_recovers():
    """The failure case of Karimireddy et al. (2019): label noise makes the workers'
    gradients differ at the optimum (only their mean vanishes), so the mean of their
    signs does not vanish there. Plain sign stalls at the same distance for any step;
    with memory the distance shrinks with the step. Linear model, so the optimum is
    exactly the least-squares solution."""
    from ray_relu.models import Linear, Planted
    problem = Planted(Linear(), d=50, n=4000, noise=0.5, seed=0)
    X, y = problem.rows(0, problem.n)
    optimum = np.linalg.lstsq(X, y, rcond=None)[0]

    def distance(codec, step):
        run = sgd(problem, codec=codec, workers=4, iterations=1000, tol=0, seed=1,
                  step_size=step)
        return np.linalg.norm(run.iterates[-1] - optimum) / np.linalg.norm(optimum)

    assert distance("fp64", 0.1) < 1e-10
    plain = [distance(Sign(), step) for step in (0.1, 0.02)]
    memory = [distance(ErrorFeedback(Sign()), step) for step in (0.1, 0.02)]
    assert min(plain) > 2e-2 and max(plain) < 1.5 * min(plain)     # stalled, step or not
    assert memory[0] < plain[0] / 3 and memory[1] < memory[0] / 3   # shrinks with the step

"""Iterations DDP needs to reach the target, counted in one process.

DDP's iterates depend only on the arithmetic of its steps, not on the links, so they
are counted here without a process group: the K workers' float32 gradients (same
shards, rows, start and step as :mod:`benchmarks._torch_ddp`) are combined the way each
hook combines them, and SGD steps on the mean:

- ``fp32``, ``powersgd`` (falls back to the fp32 allreduce on a 1 x d gradient) and
  ``powersgd-forced`` (rank 1 reproduces a 1 x d mean exactly): the float32 mean;
- ``fp16``: ``fp16_compress_hook``'s arithmetic, each gradient cast to float16 and
  divided by K in float16, summed in float16, cast back.

Why not the real DDP on loopback: three gloo processes on this loaded 2-core machine
took 20-50 ms per iteration (minutes per hook at d = 1e4). It was run once as a check:
at d = 1e3 it reached 1e-6 after 753 iterations with fp32, as this count does.
"""

from __future__ import annotations

import numpy as np

from benchmarks._torch_ddp import SEED, fp32_step_size, make_shard


def _combine(grads: list, hook: str):
    """The averaged gradient every rank ends up with under ``hook``."""
    import torch

    K = len(grads)
    if hook == "fp16":
        total = grads[0].to(torch.float16).div_(K)
        for g in grads[1:]:
            total = total + g.to(torch.float16).div_(K)
        return total.to(torch.float32)
    total = grads[0].clone()
    for g in grads[1:]:
        total += g
    return total.div_(K)


def count_iterations(d: int, n: int, hooks: list[str], *, workers: int = 3,
                     batch: int = 64, tol: float = 1e-6,
                     max_iterations: int = 20000) -> dict[str, dict]:
    """Per hook: ``{"iterations", "rel_error", "converged"}`` of DDP's SGD to ``tol``."""
    import torch

    from ray_relu import PlantedReLU
    from ray_relu.algorithm import batch_indices

    shards = [make_shard(d, n, k, workers) for k in range(workers)]
    w0 = torch.from_numpy(2.0 / n * sum(m for _, _, m in shards)).to(torch.float32)
    data = [(torch.from_numpy(X), torch.from_numpy(y)) for X, y, _ in shards]
    w_star = PlantedReLU(d, n, seed=SEED).w_star
    norm = float(np.linalg.norm(w_star))
    step = fp32_step_size(d, n, workers, batch)
    torch.set_num_threads(1)        # small matrices: threads only fight the other jobs
    out: dict[str, dict] = {}
    for hook in hooks:
        same = "fp16" if hook == "fp16" else "fp32"    # the arithmetic it shares
        if same in out:
            out[hook] = out[same]
            continue
        w = w0.clone()
        t = 0
        while True:
            rel = float(np.linalg.norm(w.double().numpy() - w_star)) / norm
            if rel <= tol or t == max_iterations:
                break
            grads = []
            for k, (X, y) in enumerate(data):
                idx = torch.from_numpy(batch_indices(SEED, t, k, len(y), batch))
                Xb, yb = X[idx], y[idx]
                z = Xb @ w
                r = torch.relu(z) - yb          # d/dw of 0.5 * mean(r^2), as autograd
                grads.append(Xb.T @ (r * (z > 0)) / batch)
            w = w - step * _combine(grads, hook)
            t += 1
        out[same] = out[hook] = {"iterations": t, "rel_error": rel, "converged": rel <= tol}
    return out

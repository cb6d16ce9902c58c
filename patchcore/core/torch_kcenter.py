"""Greedy k-center on a torch device: the textbook loop of sampling.greedy_kcenter_plain, on a GPU.

A GPU runs the plain loop's N distance updates per pick in parallel, so it needs none of
lazy_kcenter's bookkeeping. The arithmetic is the plain loop's: the projected float32
points in float64, d = sqrt(max(|x|^2 - 2 x.c + |c|^2, 0)), the farthest point next, ties to
the lowest index (torch.argmax returns the first maximum). Only the order of each dot
product's sum differs from the CPU's, which can flip a pick only between two points whose
distances agree to about 1e-15 relative.

The loop never waits for the device: the pick stays a device tensor from one step to the
next, and the picks come back to the host once, at the end. On a GPU its steps are recorded
once as a CUDA graph and replayed, since launching a step's ~10 small kernels from Python
costs more than running them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

# Below this many patches the CPU's lazy selection (lazy_kcenter) is as fast as the GPU's loop: the
# crossover bench/gpu.py measures (its figures and the machine: bench/README.md, "GPU").
GPU_WINS_FROM = 75_000


def on_device(device: torch.device, n_points: int) -> bool:
    """Whether a coreset of ``n_points`` patches is selected on ``device`` rather than by the CPU code."""
    return device.type == "cuda" and n_points >= GPU_WINS_FROM


def project(blocks: Iterable[np.ndarray], matrix: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows (blocks of (n, D)) @ matrix (D, p) in float32 on ``device``; only the (N, p) result is kept there."""
    m = torch.as_tensor(matrix, dtype=torch.float32).to(device)
    parts = [torch.as_tensor(np.ascontiguousarray(block, dtype=np.float32)).to(device) @ m for block in blocks]
    return torch.cat(parts)


class _Loop:
    """The loop's state as fixed device tensors, so that its steps can be recorded as a CUDA graph."""

    def __init__(self, pts: torch.Tensor, n_pick: int, start: int):
        device = pts.device
        self.pts, self.sq = pts, (pts * pts).sum(dim=1)
        self.nearest = torch.full((len(pts),), float("inf"), dtype=torch.float64, device=device)
        self.picks = torch.empty(n_pick, dtype=torch.int64, device=device)
        self.pick = torch.tensor([start], dtype=torch.int64, device=device)
        self.index = torch.zeros(1, dtype=torch.int64, device=device)  # where the current pick goes
        self.minus_inf = torch.tensor([-float("inf")], dtype=torch.float64, device=device)

    def step(self) -> None:
        """Record the current pick, update every point's distance, and choose the next pick."""
        self.picks.index_copy_(0, self.index, self.pick)
        # sq - 2 x.c in one kernel (scaling by -2 is exact, so this rounds as sq - 2.0 * dot does), + |c|^2
        d2 = torch.addmv(self.sq, self.pts, self.pts.index_select(0, self.pick)[0], alpha=-2.0).add_(
            self.sq.index_select(0, self.pick)
        )
        torch.minimum(self.nearest, d2.clamp_min_(0.0).sqrt_(), out=self.nearest)
        self.nearest.index_copy_(
            0, self.pick, self.minus_inf
        )  # a picked point is never picked again, whatever rounding says
        self.pick.copy_(torch.argmax(self.nearest).reshape(1))
        self.index.add_(1)


# steps recorded in one CUDA graph: one launch replays them all (eager steps cost ~10 launches each)
GRAPH_STEPS = 64


def _recorded(loop: _Loop, warm_steps: int) -> torch.cuda.CUDAGraph | None:
    """A graph of GRAPH_STEPS steps, after ``warm_steps`` real steps on a side stream (as torch asks
    before a capture); None where this torch or GPU cannot record one (the eager loop then goes on)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warm_steps):
            loop.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            for _ in range(GRAPH_STEPS):
                loop.step()
    except RuntimeError:
        return None
    return graph


def greedy_kcenter(
    points: torch.Tensor | np.ndarray,
    n_pick: int,
    start: int,
    device: torch.device,
    advance: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Indices of ``n_pick`` greedy k-center picks of the (N, p) points, the first being ``start``."""
    pts = torch.as_tensor(points).to(device=device, dtype=torch.float64)
    n = len(pts)
    if not 1 <= n_pick <= n:
        raise ValueError(f"n_pick must be in [1, {n}], got {n_pick}")
    if not bool(torch.isfinite(pts).all()):
        raise ValueError("the points hold NaN or infinite values")
    loop = _Loop(pts, n_pick, start)
    tick = advance or (lambda _: None)
    done = 0
    if device.type == "cuda" and n_pick >= 4 * GRAPH_STEPS:
        warm = 3
        graph = _recorded(loop, warm)
        done, _ = warm, tick(warm)
        while graph is not None and done + GRAPH_STEPS <= n_pick:
            graph.replay()
            done += GRAPH_STEPS
            tick(GRAPH_STEPS)
    report, reported = max(1, n_pick // 100), done
    for i in range(done, n_pick):
        loop.step()
        if (i + 1) % report == 0 or i + 1 == n_pick:
            tick(i + 1 - reported)
            reported = i + 1
    return loop.picks.cpu().numpy()

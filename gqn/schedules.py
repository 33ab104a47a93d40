"""The paper's annealing schedules, as pure functions of the step (recomputed on resume, never stored).

Eslami et al. 2018, supplementary "Training": Adam with a learning rate annealed linearly from
5e-4 to 5e-5 over 1.6M steps, and the pixel standard deviation annealed linearly from 2.0 to 0.7
over 200K steps; both hold their final value afterwards.
"""

from __future__ import annotations


def linear(step: int, start: float, end: float, steps: int) -> float:
    """`start` at step 0, `end` from `steps` on, linear between."""
    if steps <= 0 or step >= steps:
        return end
    return start + (end - start) * max(step, 0) / steps


def lr_at(step: int, start: float = 5e-4, end: float = 5e-5, steps: int = 1_600_000) -> float:
    return linear(step, start, end, steps)


def sigma_at(step: int, start: float = 2.0, end: float = 0.7, steps: int = 200_000) -> float:
    return linear(step, start, end, steps)

"""The learning-rate schedule both trainers use: linear warm-up, then a cosine to zero."""

from __future__ import annotations

import math
from collections.abc import Callable


def warmup_cosine(warmup_steps: int, max_steps: int) -> Callable[[int], float]:
    """The factor on the peak rate at each step, for ``torch.optim.lr_scheduler.LambdaLR``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor

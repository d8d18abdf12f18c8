"""Keyframe selection: from per-frame localizer scores to the k frames the answerer reads.

A function of scores, not code inside the model, so strategies can be added (roadmap:
minimum temporal gap, score-proportional sampling) and chosen by name in the config.
"""
from __future__ import annotations

from typing import Callable

import torch

Selector = Callable[[torch.Tensor, int], torch.Tensor]


def topk_in_time_order(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The paper's rule: the k best frames [B, k], re-sorted by frame index.

    Equal scores (common in bf16) go to the lower frame index, so the choice never
    depends on the sort implementation (the authors leave ties to ``torch.topk``).
    """
    if not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"cannot pick {k} keyframes from {scores.shape[-1]} frames")
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    return torch.sort(order[..., :k], dim=-1).values


SELECTORS: dict[str, Selector] = {"topk_in_time_order": topk_in_time_order}


def get_selector(name: str) -> Selector:
    try:
        return SELECTORS[name]
    except KeyError:
        raise ValueError(f"unknown keyframe_selection {name!r}; available: {sorted(SELECTORS)}") from None

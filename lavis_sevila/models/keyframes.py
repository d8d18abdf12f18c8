"""Keyframe selection: from per-frame localizer scores to the k frames the answerer reads.

A function of scores, not code inside the model, so strategies are chosen by name in the
config (``model.keyframe_selection``) with their parameters in
``model.keyframe_selection_args``.  Every strategy returns frame indices [B, k] sorted by
time, because the answerer's "Frame i:" prefixes follow the video's order.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import torch

Selector = Callable[[torch.Tensor, int], torch.Tensor]


def _check_k(scores: torch.Tensor, k: int) -> None:
    if not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"cannot pick {k} keyframes from {scores.shape[-1]} frames")


def topk_in_time_order(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The paper's rule: the k best frames [B, k], re-sorted by frame index.

    Equal scores (common in bf16) go to the lower frame index, so the choice never
    depends on the sort implementation (the authors leave ties to ``torch.topk``).
    """
    _check_k(scores, k)
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    return torch.sort(order[..., :k], dim=-1).values


def topk_min_gap(scores: torch.Tensor, k: int, min_gap: int = 2) -> torch.Tensor:
    """Best-first with temporal suppression: the best frame, then the best frame at least
    ``min_gap`` frames from every frame already chosen, and so on.

    Keeps the k keyframes from collapsing onto one event when the localizer's peak is wide.
    ``min_gap=1`` is :func:`topk_in_time_order`.  Each chosen frame rules out at most
    ``2 * min_gap - 1`` frames, so ``n >= (k - 1) * (2 * min_gap - 1) + 1`` frames always
    suffice; fewer is refused up front rather than failing on some videos only.
    """
    _check_k(scores, k)
    if min_gap < 1:
        raise ValueError(f"keyframe_selection_args.min_gap must be >= 1, got {min_gap}")
    n = scores.shape[-1]
    needed = (k - 1) * (2 * min_gap - 1) + 1
    if n < needed:
        raise ValueError(
            f"topk_min_gap with k={k}, min_gap={min_gap} needs at least {needed} frames, got {n}: "
            "sample more frames or lower min_gap"
        )
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    rows = []
    for ranked in order.tolist():
        chosen: list[int] = []
        for frame in ranked:
            if all(abs(frame - other) >= min_gap for other in chosen):
                chosen.append(frame)
                if len(chosen) == k:
                    break
        rows.append(sorted(chosen))
    return torch.tensor(rows, dtype=torch.long, device=scores.device).reshape(*scores.shape[:-1], k)


class ScoreSampling:
    """Sample k distinct frames with probability softmax(scores / temperature).

    Exploration for frame selection (a low temperature approaches top-k, a high one uniform
    sampling).  Seeded: one generator per selector, so a run is reproducible for the same
    seed, data order and batch size (the draws depend on the order of calls).
    """

    def __init__(self, temperature: float = 1.0, seed: int = 0) -> None:
        if temperature <= 0:
            raise ValueError(f"keyframe_selection_args.temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, scores: torch.Tensor, k: int) -> torch.Tensor:
        _check_k(scores, k)
        flat = scores.detach().float().cpu().reshape(-1, scores.shape[-1])
        probs = torch.softmax(flat / self.temperature, dim=-1)
        picked = torch.multinomial(probs, k, replacement=False, generator=self.generator)
        picked = torch.sort(picked, dim=-1).values
        return picked.reshape(*scores.shape[:-1], k).to(scores.device)


SELECTORS: dict[str, Callable[..., Any]] = {
    "topk_in_time_order": topk_in_time_order,
    "topk_min_gap": topk_min_gap,
    "score_sampling": ScoreSampling,
}


def _parameters(name: str) -> list[str]:
    factory = SELECTORS[name]
    params = list(inspect.signature(factory).parameters)
    return params if isinstance(factory, type) else params[2:]  # functions take (scores, k) first


def build_selector(name: str, args: Mapping[str, Any] | None = None) -> Selector:
    """The selector called ``name`` with its parameters; unknown names or arguments are errors."""
    if name not in SELECTORS:
        raise ValueError(f"unknown keyframe_selection {name!r}; available: {sorted(SELECTORS)}")
    args = dict(args or {})
    known = _parameters(name)
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ValueError(
            f"unknown model.keyframe_selection_args {unknown} for {name!r}; known: {known or 'none'}"
        )
    factory = SELECTORS[name]
    if isinstance(factory, type):
        return factory(**args)
    if not args:
        return factory

    def selector(scores: torch.Tensor, k: int) -> torch.Tensor:
        return factory(scores, k, **args)

    selector.__name__ = name
    return selector


def get_selector(name: str) -> Selector:
    """The selector called ``name`` with its default parameters."""
    return build_selector(name)

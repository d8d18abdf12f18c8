import pytest
import torch

from lavis_sevila.models.keyframes import get_selector, topk_in_time_order


def test_topk_returns_the_best_frames_in_time_order():
    scores = torch.tensor([[0.1, 5.0, 0.3, 4.0, 9.0, 0.2], [3.0, 2.0, 1.0, 0.0, -1.0, 7.0]])
    assert topk_in_time_order(scores, 3).tolist() == [[1, 3, 4], [0, 1, 5]]


def test_ties_go_to_the_lower_frame_index():
    scores = torch.tensor([[1.0, 2.0, 2.0, 2.0, 2.0, 0.0]], dtype=torch.bfloat16)
    assert topk_in_time_order(scores, 2).tolist() == [[1, 2]]


def test_bad_k_and_unknown_selector():
    with pytest.raises(ValueError):
        topk_in_time_order(torch.zeros(1, 3), 4)
    with pytest.raises(ValueError):
        get_selector("random_frames")


# -- other strategies (model.keyframe_selection / keyframe_selection_args) -------------------
from lavis_sevila.models.keyframes import build_selector, topk_min_gap  # noqa: E402


def test_min_gap_one_is_the_papers_rule():
    scores = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(topk_min_gap(scores, 4, min_gap=1), topk_in_time_order(scores, 4))


def test_min_gap_keeps_chosen_frames_apart_and_takes_the_best_eligible():
    # a wide peak on frames 3-6: top-k would take all four, min_gap=3 takes 5, then 2 and 8
    scores = torch.tensor([[0.0, 0.1, 1.0, 8.0, 9.0, 10.0, 7.0, 0.5, 2.0, 0.2, 0.0, 0.0]])
    assert topk_in_time_order(scores, 3).tolist() == [[3, 4, 5]]
    assert topk_min_gap(scores, 3, min_gap=3).tolist() == [[2, 5, 8]]
    many = torch.randn(50, 32, generator=torch.Generator().manual_seed(1))
    picked = topk_min_gap(many, 4, min_gap=4)
    assert (picked.diff(dim=-1) >= 4).all()


def test_min_gap_refuses_too_few_frames_up_front():
    with pytest.raises(ValueError, match="needs at least 10 frames"):
        topk_min_gap(torch.zeros(1, 9), 4, min_gap=2)


def test_score_sampling_is_seeded_distinct_and_follows_the_scores():
    scores = torch.tensor([[0.0] * 8 + [6.0, 6.0] + [0.0] * 6])
    first = build_selector("score_sampling", {"seed": 3})(scores.repeat(200, 1), 2)
    again = build_selector("score_sampling", {"seed": 3})(scores.repeat(200, 1), 2)
    assert torch.equal(first, again)
    assert (first.diff(dim=-1) > 0).all()  # distinct frames, time order
    # the two high frames carry ~0.98 of the mass each draw: nearly every pair is (8, 9)
    assert (first == torch.tensor([8, 9])).all(dim=-1).float().mean() > 0.8
    flat = build_selector("score_sampling", {"temperature": 1e6, "seed": 0})(scores.repeat(400, 1), 2)
    assert (flat == torch.tensor([8, 9])).all(dim=-1).float().mean() < 0.1  # ~uniform


def test_selector_arguments_are_checked():
    with pytest.raises(ValueError, match="known: \\['min_gap'\\]"):
        build_selector("topk_min_gap", {"min_gp": 2})
    with pytest.raises(ValueError, match="known: none"):
        build_selector("topk_in_time_order", {"min_gap": 2})
    with pytest.raises(ValueError, match="temperature"):
        build_selector("score_sampling", {"temperature": 0})


def test_the_model_uses_the_configured_strategy():
    from conftest import build_tiny

    model = build_tiny(keyframe_selection="topk_min_gap", keyframe_selection_args={"min_gap": 3})
    scores = torch.tensor([[0.0, 0.1, 1.0, 8.0, 9.0, 10.0, 7.0, 0.5, 2.0, 0.2, 0.0, 0.0]])
    assert model.select_keyframes(scores, 3).tolist() == [[2, 5, 8]]
    with pytest.raises(ValueError, match="keyframe_selection_args"):
        build_tiny(keyframe_selection_args={"min_gap": 3})

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

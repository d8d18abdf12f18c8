"""Frame yes/no answers -> windows, and the fork's per-frame accuracy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lavis_sevila.tasks.metrics.moment_retrieval import evaluate_submission
from lavis_sevila.tasks.metrics.spans import (
    frame_spans,
    frames_to_windows,
    p_yes,
    per_frame_accuracy,
    uniform_bounds,
)

L3 = math.log(3.0)  # yes - no = +log 3 -> P(yes) = 3/4 ; -log 3 -> 1/4


def logits(diffs):
    """(yes, no) logits with the given differences (no logit 0)."""
    return np.array(diffs, float), np.zeros(len(diffs))


def test_p_yes_is_the_two_way_softmax_and_does_not_overflow():
    np.testing.assert_allclose(p_yes([L3, -L3, 0.0], [0, 0, 0]), [0.75, 0.25, 0.5], rtol=0, atol=1e-15)
    assert p_yes([1000.0, -1000.0], [0.0, 0.0]).tolist() == [1.0, 0.0]


def test_spans_allow_short_gaps_and_split_on_long_ones():
    yes = np.zeros(20, bool)
    yes[[0, 1, 4, 8, 9, 16]] = True
    # threshold 2: gap of 2 "no" frames (2, 3) merges, gap of 3 (5..7) and 6 (10..15) split
    assert frame_spans(yes, 2) == [(0, 4), (8, 9), (16, 16)]
    assert frame_spans(yes, 6) == [(0, 16)]
    assert frame_spans(yes, 5) == [(0, 9), (16, 16)]
    assert frame_spans(yes, 0) == [(0, 1), (4, 4), (8, 9), (16, 16)]
    assert frame_spans(np.zeros(5, bool), 6) == []


def test_default_threshold_is_six_frames():
    yes = np.zeros(30, bool)
    yes[[0, 7, 15]] = True  # gaps of 6 (merge) then 7 (split)
    yes_l, no_l = logits(np.where(yes, 1.0, -1.0))
    got = frames_to_windows(yes_l, no_l, np.arange(31.0), duration=30)
    assert sorted(w[:2] for w in got) == [[0.0, 8.0], [15.0, 16.0]]


def test_windows_in_seconds_scored_by_mean_p_yes_over_the_span():
    # frames: yes, no, yes, no, no ; threshold 1 -> one span over frames 0..2
    yes_l, no_l = logits([L3, -L3, L3, -L3, -L3])
    got = frames_to_windows(yes_l, no_l, [0, 2, 4, 6, 8, 10], duration=10, span_threshold=1)
    assert len(got) == 1
    start, end, score = got[0]
    assert (start, end) == (0.0, 6.0)
    assert score == pytest.approx((0.75 + 0.25 + 0.75) / 3, abs=1e-12)


def test_windows_sorted_by_score_and_clipped_to_the_video():
    # span A: frames 0..1 (P 3/4 each); span B: frame 4 (P ~ 0.88), ends past the video
    yes_l, no_l = logits([L3, L3, -L3, -L3, 2.0])
    got = frames_to_windows(yes_l, no_l, [0, 3, 6, 9, 12, 15], duration=13.5, span_threshold=1)
    assert [w[:2] for w in got] == [[12.0, 13.5], [0.0, 6.0]]
    assert got[0][2] == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert got[1][2] == pytest.approx(0.75)


def test_tie_is_no_and_no_yes_frame_falls_back_to_the_best_frame():
    yes_l = np.array([0.0, 1.0, 2.0, 2.0])
    no_l = np.array([1.0, 1.5, 2.0, 2.0])  # every frame "no" (ties included)
    got = frames_to_windows(yes_l, no_l, [0, 1, 2, 3, 4], duration=4)
    # best P(yes) = 1/2 at frames 2 and 3 -> the earlier one
    assert got == [[2.0, 3.0, 0.5]]


def test_span_entirely_outside_the_video_is_dropped():
    yes_l, no_l = logits([-1.0, -2.0, 1.0])
    got = frames_to_windows(yes_l, no_l, [0, 2, 4, 6], duration=4)
    assert got == [[0.0, 2.0, pytest.approx(1 / (1 + math.e))]]  # fallback: best frame inside


@pytest.mark.parametrize(
    "yes, no, bounds, duration, thr, message",
    [
        ([1, 2], [0], [0, 1, 2], 2, 6, "same non-zero length"),
        ([], [], [0], 2, 6, "same non-zero length"),
        ([1, 2], [0, 0], [0, 1], 2, 6, "need 3 time bounds"),
        ([1, 2], [0, 0], [0, 2, 1], 2, 6, "non-decreasing"),
        ([1, float("nan")], [0, 0], [0, 1, 2], 2, 6, "finite"),
        ([1, 2], [0, 0], [0, 1, 2], 0, 6, "duration"),
        ([1, 2], [0, 0], [0, 1, 2], 2, -1, "span_threshold"),
        ([1, 2], [0, 0], [0, 1, 2], 2, 1.5, "span_threshold"),
        ([1, 2], [0, 0], [5, 6, 7], 2, 6, "no frame lies inside"),
    ],
)
def test_bad_frame_input_raises(yes, no, bounds, duration, thr, message):
    with pytest.raises(ValueError, match=message):
        frames_to_windows(yes, no, bounds, duration, thr)


def test_uniform_bounds_follow_the_sampler_intervals():
    # linspace(0, 100, 5) = 0, 25, 50, 75, 100 frames ; at 25 fps
    assert uniform_bounds(0, 100, 4, 25.0).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    # truncated to whole frames like the sampler: linspace(0, 10, 4) = 0, 3.33, 6.67, 10
    assert uniform_bounds(0, 10, 3, 1.0).tolist() == [0.0, 3.0, 6.0, 10.0]


def test_windows_feed_the_official_metrics():
    # 75 frames over a 150 s video; frames 10..19 say yes = GT window [20, 40]
    diffs = np.full(75, -3.0)
    diffs[10:20] = 3.0
    windows = frames_to_windows(diffs, np.zeros(75), uniform_bounds(0, 150, 75, 1.0), duration=150)
    assert windows == [[20.0, 40.0, pytest.approx(1 / (1 + math.exp(-3.0)))]]
    m = evaluate_submission(
        [{"qid": 7, "pred_relevant_windows": windows}],
        [{"qid": 7, "duration": 150, "relevant_windows": [[20, 40]]}],
    )
    assert m["brief"]["MR-full-R1@0.7"] == 100.0 and m["brief"]["MR-full-mAP"] == 100.0


def test_per_frame_accuracy():
    yes = [2.0, 0.0, 1.0, 1.0]
    no = [1.0, 1.0, 1.0, 0.0]  # answers: yes, no, no (tie), yes
    assert per_frame_accuracy(yes, no, [1, 0, 1, 0]) == 50.0
    assert per_frame_accuracy(np.array([yes, yes]), np.array([no, no]), np.array([[1, 0, 0, 1]] * 2)) == 100.0
    with pytest.raises(ValueError, match="one non-empty shape"):
        per_frame_accuracy(yes, no, [1, 0])
    with pytest.raises(ValueError, match="0/1"):
        per_frame_accuracy(yes, no, [1, 0, 2, 0])

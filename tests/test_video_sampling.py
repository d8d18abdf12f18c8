"""The frame index rule of spec section 4 (lavis_sevila.video.sampling)."""
import numpy as np
import pytest

from lavis_sevila.video import EmptyWindowError, frame_indices


@pytest.mark.parametrize(
    "num_frames,n,expected",
    [
        # 101/7: edges 0, 14, 28, 43, 57, 72, 86, 101 (linspace truncated) -> midpoints
        (101, 7, [7, 21, 35, 50, 64, 79, 93]),
        (32, 32, list(range(32))),  # one frame per interval: the frame itself
        (10, 2, [2, 7]),  # edges 0, 5, 10
    ],
)
def test_uniform_takes_interval_midpoints(num_frames, n, expected):
    indices = frame_indices(num_frames, 30.0, n)
    assert indices.dtype == np.int64 and indices.shape == (n,)
    assert indices.tolist() == expected


def test_uniform_32_frames_4_keyframes():
    assert frame_indices(32, 8.0, 4).tolist() == [4, 12, 20, 28]


def test_window_maps_seconds_with_truncation_and_clamps():
    # [1.26 s, 2.99 s] at 10 fps -> frames int(12.6)=12 .. int(29.9)=29
    assert frame_indices(100, 10.0, 4, window=(1.26, 2.99)).tolist() == [14, 18, 22, 26]  # frames 12..29: edges 12, 16, 20, 24, 29
    # an end past the video is clamped to the frame count; a negative start to 0
    assert frame_indices(50, 10.0, 4, window=(3.0, 99.0)).tolist() == [32, 37, 42, 47]  # clamped to frames 30..50
    assert frame_indices(50, 10.0, 4, window=(-2.0, 1.0)).tolist() == [1, 3, 6, 8]  # clamped to frames 0..10: edges 0, 2, 5, 7, 10


def test_video_shorter_than_n_repeats_indices():
    indices = frame_indices(5, 10.0, 8)
    assert indices.tolist() == [0, 0, 1, 1, 2, 3, 3, 4]
    assert len(indices) == 8 and set(indices.tolist()) == set(range(5))


def test_window_shorter_than_one_frame_repeats_its_frame():
    assert frame_indices(100, 10.0, 4, window=(2.01, 2.05)).tolist() == [20, 20, 20, 20]
    assert frame_indices(100, 10.0, 4, mode="random", window=(2.01, 2.05), rng=np.random.default_rng(0)).tolist() == [20] * 4


@pytest.mark.parametrize("window", [(10.0, 12.0), (5.0, 6.0), (-3.0, -1.0)])
def test_window_outside_the_video_is_an_error(window):
    with pytest.raises(EmptyWindowError, match="holds no frame"):
        frame_indices(50, 10.0, 4, window=window)


def test_window_ending_before_it_starts_is_an_error():
    with pytest.raises(ValueError, match="ends before it starts"):
        frame_indices(50, 10.0, 4, window=(3.0, 2.0))


def test_random_stays_inside_each_interval_and_follows_the_generator():
    num_frames, n = 300, 32
    edges = np.linspace(0, num_frames, n + 1).astype(int)
    first = frame_indices(num_frames, 30.0, n, mode="random", rng=np.random.default_rng(7))
    again = frame_indices(num_frames, 30.0, n, mode="random", rng=np.random.default_rng(7))
    other = frame_indices(num_frames, 30.0, n, mode="random", rng=np.random.default_rng(8))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.all(first >= edges[:-1]) and np.all(first < edges[1:])


def test_random_uses_the_interval_start_when_it_is_empty():
    indices = frame_indices(5, 10.0, 8, mode="random", rng=np.random.default_rng(0))
    edges = np.linspace(0, 5, 9).astype(int)
    empty = edges[1:] == edges[:-1]
    assert empty.any()
    assert np.array_equal(indices[empty], edges[:-1][empty])


@pytest.mark.parametrize("kwargs,message", [
    ({"num_frames": 0}, "num_frames"),
    ({"n": 0}, "n must be"),
    ({"mode": "headtail"}, "mode must be"),
    ({"fps": 0.0, "window": (0.0, 1.0)}, "fps must be"),
])
def test_bad_arguments_are_refused(kwargs, message):
    arguments = {"num_frames": 10, "fps": 10.0, "n": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        frame_indices(**arguments)

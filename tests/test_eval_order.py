"""Evaluation keeps a video's questions together, on one process or many, none lost or repeated."""
from __future__ import annotations

import pytest

from lavis_sevila.runners.runner_sevila import video_groups
from lavis_sevila.runners.sampling import ResumableSampler

VIDEOS = ["a", "b", "a", "c", "b", "a", "d", "c", "a", "b", "e"]


@pytest.mark.parametrize("world", [1, 2, 3, 4, 16])
def test_grouped_order_covers_every_index_once_and_keeps_videos_together(world):
    shares = [list(ResumableSampler(len(VIDEOS), shuffle=False, seed=0, rank=r, world_size=world, pad=False,
                                    groups=VIDEOS)) for r in range(world)]
    joined = [i for share in shares for i in share]
    assert sorted(joined) == list(range(len(VIDEOS)))  # exactly once over all ranks
    assert [len(share) for share in shares] == [len(range(r * 11 // world, (r + 1) * 11 // world)) for r in range(world)]
    for share in shares:  # inside a rank: a video's questions are consecutive, in file order
        runs = [VIDEOS[i] for i in share]
        seen = [v for k, v in enumerate(runs) if k == 0 or runs[k - 1] != v]
        assert len(seen) == len(set(seen)), runs
        for video in set(runs):
            rows = [i for i in share if VIDEOS[i] == video]
            assert rows == sorted(rows)
    if world == 1:
        assert [VIDEOS[i] for i in joined] == ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d", "e"]


def test_grouped_order_with_padding_gives_every_rank_the_same_count():
    shares = [list(ResumableSampler(len(VIDEOS), shuffle=False, seed=0, rank=r, world_size=4, groups=VIDEOS))
              for r in range(4)]
    assert [len(s) for s in shares] == [3, 3, 3, 3]
    assert set(i for s in shares for i in s) == set(range(len(VIDEOS)))


def test_groups_are_refused_with_shuffling_or_the_wrong_count():
    with pytest.raises(ValueError, match="shuffle=False"):
        ResumableSampler(len(VIDEOS), shuffle=True, seed=0, groups=VIDEOS)
    with pytest.raises(ValueError, match="one group label per index"):
        ResumableSampler(3, shuffle=False, seed=0, groups=VIDEOS)


def test_video_groups_reads_records_and_rows_and_gives_up_when_unknown():
    class Record:
        def __init__(self, video):
            self.video = video

    class Data:
        def __init__(self, annotation):
            self.annotation = annotation

        def __len__(self):
            return len(self.annotation)

    assert video_groups(Data([Record("x"), Record("y")])) == ["x", "y"]
    assert video_groups(Data([{"video": "x"}, {"video": "z"}])) == ["x", "z"]
    assert video_groups(Data([{"image": "x"}])) is None
    assert video_groups([1, 2]) is None

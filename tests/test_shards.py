"""WebDataset shards: building, reading back, and one pass over every question per epoch."""
import json
import warnings
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from dataset_builders import shards as builder
from dataset_builders.synthetic import SyntheticConfig, generate
from lavis_sevila.data.samples import Skipped, collate, make_sample
from lavis_sevila.data.schema import read_annotations, write_annotations
from lavis_sevila.data.shards import (
    ShardDataset,
    ShardIndex,
    ShardIndexError,
    clip_key,
)
from lavis_sevila.datasets.video_dataset import FrameSource
from lavis_sevila.processors import SevilaVideoEvalProcessor, SevilaVideoTrainProcessor
from lavis_sevila.video import read_clip

N, SIZE = 8, 64

# the fixture's "lost" question makes every dataset warn once; test_missing_clip_... checks the warning
pytestmark = pytest.mark.filterwarnings("ignore:1 of 15 questions have no clip")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12 synthetic videos; questions with and without windows, two sharing a clip, one on a missing video."""
    root = tmp_path_factory.mktemp("shards")
    paths = generate(root / "synthetic", SyntheticConfig(train=0, val=0, test=12, seed=3, size=64))
    questions = read_annotations(paths["test"])
    extra = [
        questions[0].model_copy(update={"qid": "windowed_a", "start": 1.0, "end": 3.0}),
        questions[0].model_copy(update={"qid": "windowed_b", "start": 1.0, "end": 3.0}),  # same clip as windowed_a
        questions[1].model_copy(update={"qid": "lost", "video": "no_such_video"}),
    ]
    annotations = root / "test_all.jsonl"
    write_annotations(annotations, questions + extra)
    source = FrameSource(root=paths["videos"], pattern="{video}.mp4")
    options = builder.BuildOptions(n_frms=N, image_size=SIZE, quality=95)
    index = builder.build_shards([annotations, paths["test_moment"]], source, root / "out", options,
                                 min_shards=4, workers=2, log=lambda *_: None)
    return {"root": root, "videos": paths["videos"], "annotations": annotations, "moments": paths["test_moment"],
            "index": index, "records": read_annotations(annotations), "source": source}


def eval_dataset(data, **kwargs):
    kwargs.setdefault("on_unreadable", "unanswered")
    return ShardDataset(data["index"].root, data["records"], SevilaVideoEvalProcessor(image_size=SIZE),
                        training=False, n_frms=N, image_size=SIZE, **kwargs)


def question_ids(dataset, num_workers):
    loader = DataLoader(dataset, batch_size=4, num_workers=num_workers, collate_fn=collate)
    return [qid for batch in loader for qid in batch.get("question_id", [])] + \
        [item["qid"] for batch in loader for item in batch["skipped"]]


def test_index_lists_clips_shards_and_failures(data):
    index = ShardIndex.load(data["index"].root / "index.json")
    # 12 videos x (whole video) + 1 windowed clip; the 12 moment records reuse the whole-video clips
    assert len(index.clips) == 13
    assert len(index.shards) >= 4 and sum(s["clips"] for s in index.shards) == 13
    assert sorted(set(index.clips.values())) == sorted(s["file"] for s in index.shards)
    assert (index.n_frms, index.image_size, index.quality, index.mode) == (N, SIZE, 95, "uniform")
    [failure] = index.failed
    assert failure["video"] == "no_such_video" and failure["questions"] == ["lost"]
    assert "no_such_video.mp4" in failure["path"] and "no such file or directory" in failure["reason"]
    raw = json.loads((index.root / "index.json").read_text())
    assert raw["count"] == 13 and raw["num_failed"] == 1


def test_frames_from_shards_equal_frames_from_the_video(data):
    dataset = eval_dataset(data)
    processor = SevilaVideoEvalProcessor(image_size=SIZE)
    by_qid = {r.qid: r for r in data["records"]}
    seen = 0
    for sample in dataset:
        if not sample["video_ok"]:
            continue
        record = by_qid[sample["question_id"]]
        window = None if record.start is None else (record.start, record.end)
        clip = read_clip(data["videos"] / f"{record.video}.mp4", N, window=window, image_size=SIZE)
        raw = make_sample(record, clip, processor)
        assert torch.equal(sample["frame_indices"], raw["frame_indices"])
        assert torch.equal(sample["timestamps"], raw["timestamps"])
        assert torch.equal(sample["frame_labels"], raw["frame_labels"])
        for key in ("qa_input", "loc_input", "qa_output", "answer_idx", "question_id", "duration"):
            assert sample[key] == raw[key]
        # back to 0..255 levels: JPEG at quality 95 moves pixels by about 1 on average
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        levels = (sample["video"] - raw["video"]).abs() * std * 255
        assert levels.mean() < 3
        seen += 1
    assert seen == len(data["records"]) - 1


@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_every_question_once_per_evaluation_epoch(data, num_workers):
    dataset = eval_dataset(data)
    qids = question_ids(dataset, num_workers)
    assert Counter(qids) == Counter(r.qid for r in data["records"])
    assert len(dataset) == len(data["records"])


def test_two_ranks_split_the_questions(data):
    seen = []
    for rank in (0, 1):
        dataset = eval_dataset(data, rank=rank, world_size=2)
        mine = question_ids(dataset, num_workers=2)
        assert len(mine) == len(dataset) > 0
        seen.extend(mine)
    assert Counter(seen) == Counter(r.qid for r in data["records"])


def test_evaluation_order_is_fixed(data):
    dataset = eval_dataset(data)
    first = [s["question_id"] for s in dataset]
    assert first == [s["question_id"] for s in dataset]
    assert first == question_ids(eval_dataset(data), num_workers=0)


def test_missing_clip_is_unanswered_or_an_error(data):
    with pytest.warns(UserWarning, match="1 of 15 questions have no clip in the shards; they are reported as unanswered"):
        dataset = eval_dataset(data)
    unanswered = [s for s in dataset if not s["video_ok"]]
    assert [s["question_id"] for s in unanswered] == ["lost"]
    assert "no such file or directory" in unanswered[0]["video_error"]
    with pytest.raises(ShardIndexError, match=r"1 of 15 questions have no clip.*\n  lost: video no_such_video"):
        eval_dataset(data, on_unreadable="fail")


def test_training_shuffles_and_reports_missing_as_skipped(data):
    def epoch(seed):
        torch.manual_seed(seed)
        dataset = ShardDataset(data["index"].root, data["records"], SevilaVideoTrainProcessor(image_size=SIZE),
                               training=True, n_frms=N, image_size=SIZE, shuffle_buffer=4)
        return [s.qid if isinstance(s, Skipped) else s["question_id"] for s in dataset]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b, c = epoch(0), epoch(0), epoch(1)
    assert a == b and a != c
    assert Counter(a) == Counter(r.qid for r in data["records"])


def test_moment_records_share_the_clips(data):
    moments = read_annotations(data["moments"])
    dataset = ShardDataset(data["index"].root, moments, SevilaVideoEvalProcessor(image_size=SIZE),
                           training=False, n_frms=N, image_size=SIZE)
    samples = list(dataset)
    assert sorted(s["question_id"] for s in samples) == sorted(r.qid for r in moments)
    assert all(s["frame_labels"].sum() >= 0 and s["qa_input"] == "" for s in samples)


def test_other_sampling_is_refused(data):
    with pytest.raises(ShardIndexError, match="hold 8 uniform frames at 64 px; 16 uniform frames"):
        ShardDataset(data["index"].root, data["records"], SevilaVideoEvalProcessor(image_size=SIZE),
                     training=False, n_frms=16, image_size=SIZE)


def test_not_an_index(tmp_path):
    (tmp_path / "index.json").write_text(json.dumps({"format": "something else", "version": 1}))
    with pytest.raises(ShardIndexError, match="is not a lavis_sevila.shards index"):
        ShardIndex.load(tmp_path)
    with pytest.raises(ShardIndexError, match="no shard index"):
        ShardIndex.load(tmp_path / "nowhere")


def test_clip_keys_are_dot_free_and_distinct():
    keys = {clip_key("v.1", None, 8, 64), clip_key("v.1", (1.0, 2.5), 8, 64), clip_key("v.1", None, 16, 64),
            clip_key("v.1", None, 8, 224)}
    assert len(keys) == 4 and all("." not in key and "/" not in key for key in keys)


def test_too_few_shards_warns(data):
    dataset = eval_dataset(data, rank=0, world_size=8)
    with pytest.warns(UserWarning, match="some workers get no data"):
        list(dataset)


def test_builder_refuses_to_mix_with_old_shards(data, tmp_path):
    out = tmp_path / "out"
    args = ["--annotations", str(data["moments"]), "--videos", str(data["videos"]), "--output", str(out),
            "--n-frms", "4", "--image-size", "32", "--workers", "1", "--min-shards", "2"]
    builder.main(args)
    first = ShardIndex.load(out)
    assert len(first.clips) == 12 and len(first.shards) == 2 and not first.failed
    with pytest.raises(FileExistsError, match="--overwrite"):
        builder.main(args)
    builder.main(args + ["--overwrite", "--maxcount", "5"])
    assert len(ShardIndex.load(out).shards) == 3

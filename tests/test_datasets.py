"""Map-style datasets over real (tiny, PyAV-written) videos: samples, sampling, bad videos."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from lavis_sevila.data import prompts
from lavis_sevila.data.samples import SkipCounter, Skipped, TooManySkipped, collate, frame_labels
from lavis_sevila.data.schema import Annotation, AnnotationError, write_annotations
from lavis_sevila.datasets import FrameSource, SevilaVideoDataset, UnreadableSampleError
from lavis_sevila.data.schema import load_records
from lavis_sevila.video.writer import level_index, numbered_frames, write_video

SIZE = 32
FPS = 10
NUM_FRAMES = 40  # 4 s


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """Stands in for the sevila_video_* processors: uint8 -> float in [0, 1]."""
    return frames.float() / 255


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "clip.mp4", numbered_frames(NUM_FRAMES, SIZE, SIZE), FPS)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    folder = root / "frames_clip"
    folder.mkdir()
    for i, array in enumerate(numbered_frames(NUM_FRAMES, SIZE, SIZE)):
        Image.fromarray(array).save(folder / f"{i:05d}.png")
    return root


def mc(qid="q1", video="clip", **changes) -> Annotation:
    fields = dict(schema_version=1, dataset="nextqa", kind="multiple_choice", qid=qid, video=video,
                  question="what happens?", options=["a.", "b.", "c.", "d.", "e."], answer=2, qtype="TN")
    fields.update(changes)
    return Annotation(**fields)


def moment(qid="m1", video="clip", **changes) -> Annotation:
    fields = dict(schema_version=1, dataset="qvh", kind="moment", qid=qid, video=video, question="a grey square",
                  duration=4.0, relevant_windows=[[0.0, 1.0], [3.0, 3.6]])
    fields.update(changes)
    return Annotation(**fields)


def dataset(root, records, *, training=False, n=4, source=None, **kwargs) -> SevilaVideoDataset:
    source = source or FrameSource(root=root, pattern="{video}.mp4")
    return SevilaVideoDataset(records, source, to_float, n_frms=n, training=training, image_size=SIZE, **kwargs)


def decoded_indices(video: torch.Tensor) -> list[int]:
    """Which numbered frame each processed frame shows (grey level of its top half)."""
    return [level_index(float(frame[:, : SIZE // 2].mean()) * 255) for frame in video]


def test_eval_sample_of_a_multiple_choice_question(video_root):
    sample = dataset(video_root, [mc()])[0]
    expected = prompts.multiple_choice("what happens?", ["a.", "b.", "c.", "d.", "e."], 2)
    assert sample["frame_indices"].tolist() == [5, 15, 25, 35]  # midpoints of 4 equal intervals
    assert decoded_indices(sample["video"]) == [5, 15, 25, 35]
    assert sample["video"].dtype == torch.float32 and sample["video"].shape == (4, 3, SIZE, SIZE)
    assert sample["timestamps"].tolist() == pytest.approx([0.5, 1.5, 2.5, 3.5])
    assert (sample["qa_input"], sample["loc_input"], sample["qa_output"]) == (
        expected.qa_input, expected.loc_input, "Option C")
    assert (sample["answer_idx"], sample["num_options"], sample["question_id"], sample["question_type"]) == (2, 5, "q1", "TN")
    assert (sample["video_id"], sample["dataset"], sample["duration"], sample["relevant_windows"]) == ("clip", "nextqa", -1, [])
    assert sample["frame_labels"].tolist() == [-1, -1, -1, -1]
    assert sample["video_ok"] is True and sample["video_error"] == ""


def test_window_restricts_the_frames(video_root):
    sample = dataset(video_root, [mc(start=1.0, end=2.0)])[0]
    # frames 10..20: linspace(10, 20, 5).astype(int) = [10, 12, 15, 17, 20] -> midpoints
    assert sample["frame_indices"].tolist() == [11, 13, 16, 18]
    assert decoded_indices(sample["video"]) == [11, 13, 16, 18]


def test_moment_sample_labels_frames_inside_relevant_windows(video_root):
    sample = dataset(video_root, [moment()], n=8)[0]
    assert sample["timestamps"].tolist() == pytest.approx([0.2, 0.7, 1.2, 1.7, 2.2, 2.7, 3.2, 3.7])
    assert sample["frame_labels"].tolist() == [1, 1, 0, 0, 0, 0, 1, 0]
    assert sample["loc_input"] == prompts.qvh_loc_input("a grey square")
    assert (sample["qa_input"], sample["qa_output"], sample["answer_idx"], sample["num_options"]) == ("", "", -1, 0)
    assert (sample["duration"], sample["relevant_windows"]) == (4.0, [[0.0, 1.0], [3.0, 3.6]])
    unlabelled = dataset(video_root, [moment(relevant_windows=None)], n=8)[0]
    assert unlabelled["frame_labels"].tolist() == [-1] * 8


def test_frame_labels_include_window_ends():
    assert frame_labels(np.array([0.9, 1.0, 2.0, 2.1]), [[1.0, 2.0]]).tolist() == [0, 1, 1, 0]
    assert frame_labels(np.array([0.5]), None).tolist() == [-1]


def test_next_event_sample(video_root):
    record = Annotation(schema_version=1, dataset="vlep", kind="next_event", qid="VLEP_1", video="clip",
                        options=["he sits.", "he leaves."], answer=1, start=0.0, end=4.0)
    sample = dataset(video_root, [record])[0]
    expected = prompts.next_event(["he sits.", "he leaves."], 1)
    assert (sample["qa_input"], sample["loc_input"], sample["qa_output"], sample["num_options"]) == (
        expected.qa_input, expected.loc_input, "Option B", 2)


def test_frame_folders_read_like_videos(video_root):
    source = FrameSource(root=video_root, pattern="frames_{video}", fps=FPS)
    sample = dataset(video_root, [mc()], source=source)[0]
    assert sample["frame_indices"].tolist() == [5, 15, 25, 35]
    assert decoded_indices(sample["video"]) == [5, 15, 25, 35]


def test_training_samples_randomly_inside_each_interval_and_repeats_with_the_seed(video_root):
    torch.manual_seed(3)
    data = dataset(video_root, [mc()], training=True, n=4)
    samples = [data[0] for _ in range(4)]
    draws = [sample["frame_indices"].tolist() for sample in samples]
    torch.manual_seed(3)
    again = dataset(video_root, [mc()], training=True, n=4)
    assert [again[0]["frame_indices"].tolist() for _ in range(4)] == draws
    assert len({tuple(draw) for draw in draws}) > 1  # not the same frames every time
    for sample, draw in zip(samples, draws):
        assert [index // 10 for index in draw] == [0, 1, 2, 3]  # one frame per 10-frame interval
        assert decoded_indices(sample["video"]) == draw


def test_training_skips_unreadable_videos_and_collate_reports_them(video_root):
    records = [mc("ok1"), mc("missing", video="nope"), mc("broken", video="broken"),
               mc("outside", start=10.0, end=12.0), mc("ok2")]
    data = dataset(video_root, records, training=True)
    items = [data[i] for i in range(len(data))]
    skipped = [item for item in items if isinstance(item, Skipped)]
    assert [s.qid for s in skipped] == ["missing", "broken", "outside"]
    assert "nope.mp4" in skipped[0].reason and "broken.mp4" in skipped[1].reason
    assert "holds no frame" in skipped[2].reason
    batch = data.collater(items)
    assert batch["num_samples"] == 2 and batch["question_id"] == ["ok1", "ok2"]
    assert batch["video"].shape == (2, 4, 3, SIZE, SIZE) and batch["answer_idx"].tolist() == [2, 2]
    assert [s["qid"] for s in batch["skipped"]] == ["missing", "broken", "outside"]
    empty = collate([Skipped("x", "v", "gone")])
    assert empty == {"num_samples": 0, "skipped": [{"qid": "x", "video": "v", "reason": "gone"}]}


def test_skip_counter_sums_batches_from_several_workers(video_root):
    records = [mc(f"q{i}") for i in range(6)] + [mc("bad1", video="nope"), mc("bad2", video="broken")]
    data = dataset(video_root, records, training=True)
    loader = DataLoader(data, batch_size=3, num_workers=2, collate_fn=data.collater)
    counter = SkipCounter()
    for batch in loader:
        counter.update(batch)
    assert (counter.seen, counter.skipped) == (8, 2)
    counter.check(0.25)
    with pytest.raises(TooManySkipped, match="skipped 2 of 8") as caught:
        counter.check(0.2)
    assert "bad1" in str(caught.value) and "bad2" in str(caught.value)
    counter.reset()
    assert (counter.seen, counter.skipped, counter.fraction) == (0, 0, 0.0)


def test_evaluation_fails_on_an_unreadable_video_by_default(video_root):
    data = dataset(video_root, [mc("lost", video="nope")])
    with pytest.raises(UnreadableSampleError, match=r"question lost: cannot read video .*nope\.mp4"):
        data[0]


def test_evaluation_can_keep_unreadable_questions_as_unanswered(video_root):
    data = dataset(video_root, [mc("ok"), mc("lost", video="broken")], on_unreadable="unanswered")
    lost = data[1]
    assert lost["video_ok"] is False and "broken.mp4" in lost["video_error"]
    assert lost["video"].shape == (4, 3, SIZE, SIZE) and not lost["video"].any()
    assert lost["answer_idx"] == 2 and lost["question_id"] == "lost"  # still scored: counted wrong
    batch = collate([data[0], lost])
    assert batch["video_ok"].tolist() == [True, False] and batch["skipped"] == []


def test_a_processor_that_does_not_make_float_frames_is_refused(video_root):
    data = SevilaVideoDataset([mc()], FrameSource(root=video_root), lambda frames: frames, n_frms=4,
                              training=False, image_size=SIZE)
    with pytest.raises(TypeError, match="vis processor must return float frames"):
        data[0]


def test_configuration_errors_are_not_taken_for_bad_videos(video_root):
    # fps given for a video file is a configuration error: raised even in training
    data = dataset(video_root, [mc()], training=True, source=FrameSource(root=video_root, fps=FPS))
    with pytest.raises(ValueError, match="pass fps only for frame folders"):
        data[0]
    with pytest.raises(ValueError, match="on_unreadable"):
        dataset(video_root, [mc()], on_unreadable="skip")
    with pytest.raises(ValueError, match="must contain"):
        FrameSource(root=video_root, pattern="clip.mp4")


def test_records_of_a_split_must_have_unique_qids_across_files(tmp_path):
    write_annotations(tmp_path / "a.jsonl", [mc("q1"), mc("q2")])
    write_annotations(tmp_path / "b.jsonl", [mc("q2")])
    assert [r.qid for r in load_records([tmp_path / "a.jsonl"])] == ["q1", "q2"]
    with pytest.raises(AnnotationError, match="duplicate qid 'q2'"):
        load_records([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])

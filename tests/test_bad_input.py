"""Bad input that used to get through (issue 7, item 6): each gives a clear error or a counted skip.

The tests run as root on the CI machine, where ``chmod 000`` does not stop a read; the
refusal is therefore made by the file system layer Python calls (``Path.stat``), for
paths under a folder named ``locked`` only, exactly as the kernel reports it.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from lavis_sevila.data.samples import Skipped, UnreadableSampleError, collate
from lavis_sevila.data.schema import Annotation, write_annotations
from lavis_sevila.datasets import FrameSource, SevilaVideoDataset
from lavis_sevila.diskspace import NoSpaceLeft, explain_full_disk
from lavis_sevila.video.writer import numbered_frames, write_video

SIZE, FPS, FRAMES = 32, 10, 40  # a 4 s video


def to_float(frames: torch.Tensor) -> torch.Tensor:
    return frames.float() / 255


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    write_video(root / "clip.mp4", numbered_frames(FRAMES, SIZE, SIZE), FPS)
    (root / "locked").mkdir()
    shutil.copy(root / "clip.mp4", root / "locked" / "clip.mp4")
    return root


@pytest.fixture
def locked(monkeypatch):
    """Every path under a folder named "locked" refuses stat(), as an unreadable parent does."""
    real = Path.stat

    def stat(self, *args, **kwargs):
        if "locked" in self.parts and self.name != "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)


def mc(qid: str, video: str = "clip", **changes) -> Annotation:
    fields = dict(schema_version=1, dataset="nextqa", kind="multiple_choice", qid=qid, video=video,
                  question="what happens?", options=["a.", "b.", "c.", "d.", "e."], answer=2, qtype="TN")
    return Annotation(**{**fields, **changes})


def moment(qid: str, windows, video: str = "clip", duration: float = 150.0) -> Annotation:
    return Annotation(schema_version=1, dataset="qvh", kind="moment", qid=qid, video=video, question="a square",
                      duration=duration, relevant_windows=windows)


def dataset(root, records, *, training, **kwargs) -> SevilaVideoDataset:
    return SevilaVideoDataset(records, FrameSource(root=root), to_float, n_frms=4, training=training,
                              image_size=SIZE, **kwargs)


# ------------------------------------------------------------ unreadable folder (PermissionError)


def test_a_video_in_an_unreadable_folder_is_a_counted_skip_in_training(root, locked):
    data = dataset(root, [mc("ok"), mc("denied", video="locked/clip")], training=True)
    items = [data[0], data[1]]
    assert isinstance(items[1], Skipped) and "Permission denied" in items[1].reason
    assert "locked/clip.mp4" in items[1].reason
    batch = collate(items)
    assert batch["num_samples"] == 1 and [s["qid"] for s in batch["skipped"]] == ["denied"]


def test_a_video_in_an_unreadable_folder_at_evaluation(root, locked):
    kept = dataset(root, [mc("denied", video="locked/clip")], training=False, on_unreadable="unanswered")[0]
    assert kept["video_ok"] is False and "Permission denied" in kept["video_error"]
    with pytest.raises(UnreadableSampleError, match="question denied: cannot read video .*locked/clip.mp4.*Permission denied"):
        dataset(root, [mc("denied", video="locked/clip")], training=False)[0]


def test_the_shard_builder_lists_a_video_in_an_unreadable_folder_and_writes_its_index(root, locked, tmp_path):
    from dataset_builders.shards import BuildOptions, build_shards
    from lavis_sevila.data.shards import INDEX_NAME

    write_annotations(tmp_path / "a.jsonl", [mc("ok"), mc("denied", video="locked/clip")])
    index = build_shards([tmp_path / "a.jsonl"], FrameSource(root=root), tmp_path / "out",
                         BuildOptions(n_frms=4, image_size=SIZE), min_shards=1, workers=1, log=lambda *a: None)
    assert (tmp_path / "out" / INDEX_NAME).is_file()
    (failed,) = index.failed
    assert failed["questions"] == ["denied"] and "Permission denied" in failed["reason"]
    assert len(index.clips) == 1


# ------------------------------------------------------------ windows beyond the decoded video


def test_windows_after_the_decoded_end_are_skipped_in_training_not_labelled_all_no(root):
    # the annotation says 150 s; the video holds 4 s: the moment is not in these frames
    data = dataset(root, [moment("fits", [[1.0, 2.0]]), moment("beyond", [[100.0, 110.0]]),
                          moment("edge", [[3.0, 4.8]])], training=True)
    items = [data[i] for i in range(3)]
    assert not isinstance(items[0], Skipped) and not isinstance(items[2], Skipped)  # within the tolerance
    assert isinstance(items[1], Skipped)
    assert "[[100.0, 110.0]] end after the decoded video's end (4.00 s: 40 frames at 10 fps)" in items[1].reason


def test_windows_after_the_decoded_end_at_evaluation(root):
    with pytest.raises(UnreadableSampleError, match="question beyond: relevant window"):
        dataset(root, [moment("beyond", [[100.0, 110.0]])], training=False)[0]
    kept = dataset(root, [moment("beyond", [[100.0, 110.0]])], training=False, on_unreadable="unanswered")[0]
    assert kept["video_ok"] is False and "decoded video's end" in kept["video_error"]


def test_validate_with_videos_counts_records_that_do_not_fit_their_video(root, tmp_path, capsys):
    from dataset_builders import validate

    path = tmp_path / "qvh.jsonl"
    write_annotations(path, [moment("fits", [[1.0, 2.0]]), moment("beyond", [[100.0, 110.0]]),
                             moment("gone", [[1.0, 2.0]], video="absent")])
    assert validate.main([str(path)]) == 0  # the schema alone cannot know the video's length
    capsys.readouterr()
    assert validate.main([str(path), "--videos", str(root)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: relevant_windows: relevant window(s) [[100.0, 110.0]] end after the decoded video's end" in err
    assert f"{path}:3: video: cannot read video" in err
    assert "2 of 3 record(s) do not fit their decoded video" in err


# ------------------------------------------------------------ empty checkpoints


@pytest.mark.parametrize("payload", [{}, {"model": {}}])
def test_an_empty_checkpoint_is_refused(tmp_path, tiny, payload):
    from lavis_sevila.models.checkpoint import CheckpointError

    path = tmp_path / "empty.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"empty.pth: holds no tensors: no weights for this model"):
        tiny.load_checkpoint(str(path))


def test_an_empty_checkpoint_in_model_finetuned_fails_the_build(tmp_path):
    from conftest import build_tiny
    from lavis_sevila.models.checkpoint import CheckpointError

    path = tmp_path / "empty.pth"
    torch.save({"model": {}}, path)
    with pytest.raises(CheckpointError, match="holds no tensors"):
        build_tiny(finetuned=[str(path)])


# ------------------------------------------------------------ full disk


def _full_open(real_open):
    def fake(path, mode="r", *args, **kwargs):
        if "w" in mode:
            return real_open("/dev/full", mode, *args, **kwargs)  # every write fails with ENOSPC
        return real_open(path, mode, *args, **kwargs)

    return fake


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_predictions_on_a_full_disk_say_so_with_the_path_and_leave_no_half_file(tmp_path, monkeypatch):
    import builtins

    from lavis_sevila.tasks import base

    monkeypatch.setattr(base, "open", _full_open(builtins.open), raising=False)
    target = tmp_path / "result" / "predictions_val.jsonl"
    with pytest.raises(NoSpaceLeft, match=f"no space left on device while writing {target}"):
        base.write_jsonl(target, [{"question_id": str(i), "prediction": 0} for i in range(5000)])
    assert list((tmp_path / "result").iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_torch_save_on_a_full_disk_is_named(tmp_path, monkeypatch):
    """torch.save's writer says "unexpected pos" / "iostream error"; with no free space it is named."""
    import lavis_sevila.diskspace as diskspace

    target = tmp_path / "checkpoint_0.pth"
    with pytest.raises(RuntimeError) as plain:  # plenty of space here: the writer's own error stays
        with explain_full_disk(target):
            torch.save({"w": torch.zeros(10000)}, "/dev/full")
    assert not isinstance(plain.value, NoSpaceLeft)
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 0)
    with pytest.raises(NoSpaceLeft, match=f"no space left on device while writing {target}"):
        with explain_full_disk(target):
            torch.save({"w": torch.zeros(10000)}, "/dev/full")


def test_shards_on_a_full_disk_say_so_and_leave_no_tar_without_index(root, tmp_path, monkeypatch):
    from dataset_builders import shards

    class FullWriter:
        def __init__(self, pattern, **kwargs):
            self.fname = pattern % 0
            Path(self.fname).write_bytes(b"partial")

        def write(self, sample):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    monkeypatch.setattr(shards.wds, "ShardWriter", FullWriter)
    write_annotations(tmp_path / "a.jsonl", [mc("ok")])
    out = tmp_path / "out"
    with pytest.raises(NoSpaceLeft, match=f"no space left on device while writing {out}"):
        shards.build_shards([tmp_path / "a.jsonl"], FrameSource(root=root), out,
                            shards.BuildOptions(n_frms=4, image_size=SIZE), min_shards=1, workers=1, log=lambda *a: None)
    assert list(out.iterdir()) == []


# ------------------------------------------------------------ what the predictions file says


def test_the_reason_a_video_was_unreadable_is_in_its_prediction(root, tiny, tmp_path):
    from lavis_sevila.tasks.videoqa import VideoQATask

    data = dataset(root, [mc("TN_clip_1"), mc("TN_absent_2", video="absent")], training=False, on_unreadable="unanswered")
    batch = collate([data[0], data[1]])
    task = VideoQATask(inference="uniform", output_dir=str(tmp_path))
    records = task.predict_batch(tiny, batch)
    assert "video_error" not in records[0]
    assert records[1]["prediction"] == -1 and "absent.mp4" in records[1]["video_error"]
    task.after_evaluation(records, "val", "best")
    written = [json.loads(line) for line in (tmp_path / "result" / "predictions_val_best.jsonl").read_text().splitlines()]
    assert "absent.mp4: no such file" in written[1]["video_error"]


def test_moment_retrieval_refuses_unanswered_queries_at_start(monkeypatch):
    from lavis import tasks

    from lavis_sevila.cli import load_config

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    cfg = load_config("projects/sevila/synthetic/eval_moment.yaml",
                      ["datasets.sevila_synthetic.build_info.on_unreadable=unanswered"])
    monkeypatch.setattr("lavis_sevila.datasets.builders.SevilaDatasetBuilder.build",
                        lambda self: pytest.fail("datasets were built before the policy was checked"))
    with pytest.raises(ValueError, match="on_unreadable is 'unanswered', but moment retrieval cannot score"):
        tasks.setup_task(cfg).build_datasets(cfg)

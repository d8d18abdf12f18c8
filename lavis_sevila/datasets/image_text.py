"""Stage-0 data (image-text pairs on single frames) and the question-blind probe.

* :class:`ImageTextDataset` -- ``pretrain_backbone`` trains a tiny backbone from scratch,
  the stand-in for BLIP-2's pre-training: each record is one frame of a video and a
  question about it with a free-text answer (``{"video", "frame", "question", "answer"}``,
  one JSON object per line; the synthetic benchmark writes ``train_image_text.jsonl``).
  The frames are decoded once, up front: a record reads one frame, and decoding its whole
  video per record would cost more than the training step.
* :class:`QuestionBlindDataset` -- a video QA split whose localizer prompt has the
  question removed (options kept), so a row can show what a localizer that does not read
  the question scores.  The answerer still reads the full question.

Both are LAVIS builders configured like the other datasets (``sevila_image_text``,
``sevila_synthetic_blind``).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from lavis.common.registry import registry
from torch.utils.data import Dataset

from lavis_sevila.data import prompts
from lavis_sevila.datasets.builders import SevilaDatasetBuilder, register
from lavis_sevila.datasets.video_dataset import FrameSource, SevilaVideoDataset
from lavis_sevila.video import read_clip

IMAGE_TEXT_KEYS = ("video", "frame", "question", "answer")


def read_image_text(path: Path) -> list[dict[str, Any]]:
    """Records of an image-text jsonl, each checked (a bad line names its file and line)."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error})") from None
        missing = [key for key in IMAGE_TEXT_KEYS if key not in row]
        if missing:
            raise ValueError(f"{path}:{number}: missing {missing} (an image-text record has {IMAGE_TEXT_KEYS})")
        if not isinstance(row["frame"], int) or row["frame"] < 0:
            raise ValueError(f"{path}:{number}: frame must be an int >= 0, got {row['frame']!r}")
        if not all(isinstance(row[key], str) and row[key] for key in ("video", "question", "answer")):
            raise ValueError(f"{path}:{number}: video, question and answer must be non-empty strings")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no image-text records")
    return rows


class ImageTextDataset(Dataset):
    """One frame and one question per sample: ``image`` [1, 3, H, W], ``text_input``, ``text_output``."""

    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        source: FrameSource,
        vis_processor: Callable[[torch.Tensor], torch.Tensor],
        *,
        frames_per_video: int,
        image_size: int,
    ) -> None:
        self.annotation = list(rows)
        self.vis_processor = vis_processor
        self.frames: dict[str, torch.Tensor] = {}  # video -> uint8 [T, 3, H, W]
        for video in sorted({row["video"] for row in self.annotation}):
            path = source.path(_VideoName(video))
            clip = read_clip(path, frames_per_video, mode="uniform", image_size=image_size,
                             backend=source.backend, fps=source.fps)
            if clip.indices.tolist() != list(range(frames_per_video)):
                raise ValueError(f"{path}: expected {frames_per_video} frames, got indices {clip.indices.tolist()[:5]}...")
            self.frames[video] = clip.frames
        for row in self.annotation:
            if row["frame"] >= frames_per_video:
                raise ValueError(f"{row['video']}: frame {row['frame']} >= frames_per_video {frames_per_video}")

    def __len__(self) -> int:
        return len(self.annotation)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.annotation[index]
        frame = self.frames[row["video"]][row["frame"]: row["frame"] + 1]
        return {"image": self.vis_processor(frame), "text_input": row["question"], "text_output": row["answer"]}

    def collater(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {
            "image": torch.stack([s["image"] for s in samples]),
            "text_input": [s["text_input"] for s in samples],
            "text_output": [s["text_output"] for s in samples],
            "num_samples": len(samples),
            "skipped": [],
        }


class _VideoName:
    """What FrameSource.path reads from a record: its video name."""

    def __init__(self, video: str) -> None:
        self.video = video


def blind_loc_input(record) -> str:
    """The localizer prompt of a record with its question removed (options kept)."""
    if record.kind != "multiple_choice":
        raise ValueError(f"{record.qid}: the question-blind probe needs multiple-choice records, got {record.kind!r}")
    return prompts.mc_loc_input("", record.options)


class QuestionBlindDataset(Dataset):
    """A :class:`SevilaVideoDataset` whose samples carry the question-blind localizer prompt."""

    def __init__(self, inner: SevilaVideoDataset) -> None:
        self.inner = inner
        self.annotation = inner.annotation
        self.blind = {record.qid: blind_loc_input(record) for record in inner.annotation}

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int):
        sample = self.inner[index]
        if isinstance(sample, dict):
            sample = {**sample, "loc_input": self.blind[sample["question_id"]]}
        return sample

    def collater(self, samples):
        return self.inner.collater(samples)


@register("sevila_image_text")
class ImageTextBuilder(SevilaDatasetBuilder):
    """``build_info``: annotations.<split>.storage (image-text jsonl), videos, image_size, and
    ``n_frms.train``: the frames decoded per video, which the records' ``frame`` indexes."""

    DATASET_CONFIG_DICT = {"default": "configs/datasets/sevila_synthetic/image_text.yaml"}
    DATA_TYPE = "images"

    def build(self) -> dict[str, Any]:
        self.build_processors()
        info = self.settings.build_info
        source = self._frame_source(info.videos)
        datasets = {}
        for split, files in info.annotations.items():
            paths = [Path(p) for p in files]
            missing = [str(path) for path in paths if not path.is_file()]
            if missing:
                raise FileNotFoundError(f"{self._name()} {split} annotations not found: {', '.join(missing)}")
            rows = [row for path in paths for row in read_image_text(path)]
            processor = self.vis_processors["train" if split == "train" else "eval"]
            datasets[split] = ImageTextDataset(rows, source, processor, frames_per_video=info.n_frms.train,
                                               image_size=info.image_size)
            logging.info("%s %s: %d image-text records", self._name(), split, len(rows))
        return datasets


@register("sevila_synthetic_blind")
class QuestionBlindBuilder(SevilaDatasetBuilder):
    """The synthetic benchmark with the question removed from the localizer's prompt."""

    DATASET_CONFIG_DICT = {"default": "configs/datasets/sevila_synthetic/question_blind.yaml"}

    def build(self) -> dict[str, Any]:
        return {split: QuestionBlindDataset(dataset) for split, dataset in super().build().items()}

"""NExT-QA (official ``train.csv`` / ``val.csv`` / ``test.csv`` + ``map_vid_vidorID.json``) -> our jsonl.

Texts follow the authors' preprocessed annotations (spec section 3): the question gets a
final "?" and every option a final "." (appended to the released text as is, without
stripping); the qid is ``"{type}_{video}_{qid}"``; ``video`` is the mapped relative path
("0101/2909445186"), the raw video id and question number are kept in ``extra`` because
the official result file is keyed by ``"{video_id}_{qid}"``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from dataset_builders.common import (
    ConverterCli,
    FieldError,
    InputError,
    RecordConverter,
    int_field,
    optional_int_field,
    read_csv,
    record,
    text_field,
)

NUM_OPTIONS = 5
COLUMNS = ("video", "question", "qid", "type") + tuple(f"a{j}" for j in range(NUM_OPTIONS))
VIDEO_FACTS = ("frame_count", "width", "height")  # kept in extra when the csv has them


def load_video_map(path: Path) -> dict[str, str]:
    """``map_vid_vidorID.json``: raw video id -> "folder/video" path inside NExTVideo."""
    try:
        with open(path, encoding="utf-8") as handle:
            mapping = json.load(handle)
    except ValueError as error:
        raise InputError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v for v in mapping.values()):
        raise InputError(f"{path}: expected an object mapping video ids to relative paths")
    return mapping


def make_converter(args: argparse.Namespace) -> RecordConverter:
    video_map = load_video_map(args.video_map)
    map_name = Path(args.video_map).name

    def convert(raw: dict) -> dict:
        video_id = text_field(raw, "video")
        if video_id not in video_map:
            raise FieldError("video", f"video id {video_id} is not in {map_name}")
        qtype = text_field(raw, "type")
        number = int_field(raw, "qid", text=True)
        extra = {"video_id": video_id, "qid": number}
        extra.update({name: int_field(raw, name, text=True) for name in VIDEO_FACTS if name in raw})
        return record(
            "nextqa",
            "multiple_choice",
            qid=f"{qtype}_{video_id}_{number}",
            video=video_map[video_id],
            question=text_field(raw, "question") + "?",
            options=[text_field(raw, f"a{j}") + "." for j in range(NUM_OPTIONS)],
            answer=optional_int_field(raw, "answer", text=True),
            qtype=qtype,
            extra=extra,
        )

    return convert


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video-map", required=True, type=Path, help="map_vid_vidorID.json of the release")


CLI = ConverterCli(
    dataset="nextqa",
    description=__doc__.splitlines()[0],
    read=lambda path: read_csv(path, COLUMNS),
    make_converter=make_converter,
    source_fields={"qid": "type,video,qid", "video": "video", "question": "question", "options": "a0..a4",
                   "answer": "answer", "qtype": "type"},
    add_arguments=add_arguments,
)

if __name__ == "__main__":
    CLI.run()

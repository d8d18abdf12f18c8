"""VLEP (official ``vlep_{train,dev,test}_release.jsonl``) -> our jsonl.

Per line: ``example_id``, ``vid_name``, ``ts`` ``[start, end]`` (the premise event),
``events`` (2 candidate next events), ``answer`` (absent on test).  Kind ``next_event``,
qid ``"VLEP_{example_id}"``, options = the two events.

``video`` names the file to read, as the authors' loader resolves it: a TV-show clip
("friends_s03e09_seg02_clip_07_ep") is TVQA's video without the ``_ep`` suffix, a YouTube
clip (its name holds ':' from the time range) is read under its full name.  The released
``vid_name`` and the source ("tv" / "youtube") are kept in ``extra``.
"""
from __future__ import annotations

import argparse

from dataset_builders.common import (
    ConverterCli,
    FieldError,
    RecordConverter,
    int_field,
    optional_int_field,
    pair_field,
    read_jsonl,
    record,
    text_field,
    text_list_field,
)

TV_SUFFIX = "_ep"


def video_file_id(vid_name: str) -> tuple[str, str]:
    """(file id, source) for a released VLEP ``vid_name``."""
    if ":" in vid_name:
        return vid_name, "youtube"
    if not vid_name.endswith(TV_SUFFIX) or len(vid_name) == len(TV_SUFFIX):
        raise FieldError("vid_name", f"{vid_name!r}: a TV-show clip name must end with {TV_SUFFIX!r}")
    return vid_name[: -len(TV_SUFFIX)], "tv"


def make_converter(args: argparse.Namespace) -> RecordConverter:
    def convert(raw: dict) -> dict:
        vid_name = text_field(raw, "vid_name")
        video, source = video_file_id(vid_name)
        start, end = pair_field(raw, "ts")
        extra = {"vid_name": vid_name, "source": source}
        if "split" in raw:
            extra["split"] = text_field(raw, "split")
        return record(
            "vlep",
            "next_event",
            qid=f"VLEP_{int_field(raw, 'example_id')}",
            video=video,
            options=text_list_field(raw, "events"),
            answer=optional_int_field(raw, "answer"),
            start=start,
            end=end,
            extra=extra,
        )

    return convert


CLI = ConverterCli(
    dataset="vlep",
    description=__doc__.splitlines()[0],
    read=read_jsonl,
    make_converter=make_converter,
    source_fields={"qid": "example_id", "video": "vid_name", "options": "events", "answer": "answer",
                   "start": "ts", "end": "ts"},
)

if __name__ == "__main__":
    CLI.run()

"""TVQA and How2QA share one release layout (the VALUE benchmark's jsonl): one converter.

Per line: ``vid_name``, ``q``, ``a0``..``a{m-1}``, ``answer_idx`` (absent on test splits),
``ts`` as ``"start-end"`` seconds and, where released, an integer ``qid``.  The authors'
code numbered these questions by line (``TVQA_{i}``); we keep the release's own id, which
is what the official evaluation servers key on, and only where a release has none derive a
stable id from the content (never the line number, which changes when a file is filtered).

A few released ``ts`` give no window: ``"NaN-NaN"``, an empty string, or a zero-length range
(TVQA test_public has five).  Dropping them would lose test questions that a submission must
answer, so they are kept without a window (the whole video is sampled) and flagged in
``extra.flag``; the converter counts and prints them.  A reversed range stays an error.
"""
from __future__ import annotations

import argparse
import hashlib
from typing import Callable

from dataset_builders.common import (
    FLAG,
    RecordConverter,
    int_field,
    numbered_options,
    optional_int_field,
    record,
    text_field,
    ts_range_field,
)

_NO_WINDOW = ("nan-nan", "")


def window_or_flag(raw: dict) -> tuple[float | None, float | None, str | None]:
    """(start, end, flag): the ``ts`` window, or no window and why when ``ts`` gives none."""
    if "ts" not in raw:
        ts_range_field(raw, "ts")  # raises "ts: missing"
    value = raw["ts"]
    if isinstance(value, str) and value.strip().lower() in _NO_WINDOW:
        return None, None, f"ts {value!r} gives no window; the whole video is sampled"
    start, end = ts_range_field(raw, "ts")
    if start == end:
        return None, None, f"ts {value!r} is a zero-length window; the whole video is sampled"
    return start, end, None

SOURCE_FIELDS = {
    "qid": "qid",
    "video": "vid_name",
    "question": "q",
    "answer": "answer_idx",
    "start": "ts",
    "end": "ts",
}


def content_qid(vid_name: str, question: str, ts: str) -> str:
    """A stable id for a question without a released id: hash of video, question and window."""
    digest = hashlib.sha1("\n".join((vid_name, question, ts)).encode("utf-8")).hexdigest()
    return digest[:16]


def make_value_converter(
    dataset: str,
    num_options: int,
    qid_prefix: str,
    qid_required: bool,
    extra_fields: tuple[str, ...] = (),
) -> Callable[[argparse.Namespace], RecordConverter]:
    """The per-record converter for one VALUE-layout dataset."""

    def make_converter(args: argparse.Namespace) -> RecordConverter:
        def convert(raw: dict) -> dict:
            vid_name = text_field(raw, "vid_name")
            question = text_field(raw, "q")
            start, end, flag = window_or_flag(raw)
            extra = {name: text_field(raw, name) for name in extra_fields}
            if flag is not None:
                extra[FLAG] = flag
            if qid_required or "qid" in raw:
                release_qid = int_field(raw, "qid")
                qid = f"{qid_prefix}_{release_qid}"
                extra["qid"] = release_qid
            else:
                qid = f"{qid_prefix}_{content_qid(vid_name, question, raw['ts'])}"
            return record(
                dataset,
                "multiple_choice",
                qid=qid,
                video=vid_name,
                question=question,
                options=numbered_options(raw, "a", num_options),
                answer=optional_int_field(raw, "answer_idx"),
                start=start,
                end=end,
                extra=extra,
            )

        return convert

    return make_converter

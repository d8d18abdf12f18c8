"""QVHighlights (official ``highlight_{train,val,test}_release.jsonl``) -> our jsonl.

Per line: ``qid``, ``query``, ``vid``, ``duration`` and, except on test,
``relevant_windows`` (seconds), ``relevant_clip_ids`` and ``saliency_scores``.  Kind
``moment``; our qid is ``"QVHighlight_{qid}"`` (the integer qid, which the official
evaluation keys on, is kept in ``extra``); the query is kept as released (the prompt adds
the final "." the authors' prompt adds); clip ids and saliency scores go to ``extra`` for
highlight metrics.
"""
from __future__ import annotations

import argparse

from dataset_builders.common import (
    ConverterCli,
    FieldError,
    RecordConverter,
    int_field,
    pair_field,
    read_jsonl,
    record,
    seconds_field,
    text_field,
)

HIGHLIGHT_FIELDS = ("relevant_clip_ids", "saliency_scores")


def _windows(raw: dict) -> list[list[float]] | None:
    if "relevant_windows" not in raw:
        return None
    windows = raw["relevant_windows"]
    if not isinstance(windows, list):
        raise FieldError("relevant_windows", f"expected a list of [start, end], got {windows!r}")
    return [list(pair_field({f"relevant_windows[{i}]": w}, f"relevant_windows[{i}]")) for i, w in enumerate(windows)]


def make_converter(args: argparse.Namespace) -> RecordConverter:
    def convert(raw: dict) -> dict:
        number = int_field(raw, "qid")
        extra = {"qid": number}
        extra.update({name: raw[name] for name in HIGHLIGHT_FIELDS if name in raw})
        return record(
            "qvh",
            "moment",
            qid=f"QVHighlight_{number}",
            video=text_field(raw, "vid"),
            question=text_field(raw, "query"),
            duration=seconds_field(raw, "duration"),
            relevant_windows=_windows(raw),
            extra=extra,
        )

    return convert


CLI = ConverterCli(
    dataset="qvh",
    description=__doc__.splitlines()[0],
    read=read_jsonl,
    make_converter=make_converter,
    source_fields={"qid": "qid", "video": "vid", "question": "query", "duration": "duration",
                   "relevant_windows": "relevant_windows"},
)

if __name__ == "__main__":
    CLI.run()

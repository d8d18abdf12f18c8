"""STAR (official ``STAR_train.json`` / ``STAR_val.json`` / ``STAR_test.json``) -> our jsonl.

The release is a JSON list; each question has ``question_id`` ("Interaction_T1_13"),
``question``, ``video_id``, ``start``/``end`` (seconds), ``answer`` (the correct choice's
text; absent on test) and ``choices`` (``[{"choice_id", "choice", ...}]``).  Options are
the choices' texts in list order; the answer index is the one choice whose text equals
``answer``; the question category (qtype) is the prefix of the question id.  Programs and
situation graphs are not carried over.
"""
from __future__ import annotations

import argparse

from dataset_builders.common import (
    ConverterCli,
    FieldError,
    RecordConverter,
    read_json_list,
    record,
    seconds_field,
    text_field,
)
from lavis_sevila.data.schema import STAR_CATEGORIES


def _choices(raw: dict) -> list[str]:
    choices = raw.get("choices")
    if not isinstance(choices, list):
        raise FieldError("choices", f"expected a list of choices, got {choices!r}")
    texts = []
    for index, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise FieldError(f"choices[{index}]", f"expected an object, got {choice!r}")
        texts.append(text_field(choice, "choice", name=f"choices[{index}].choice"))
    return texts


def _answer_index(raw: dict, options: list[str]) -> int | None:
    if "answer" not in raw:
        return None
    answer = text_field(raw, "answer")
    matches = [index for index, text in enumerate(options) if text == answer]
    if len(matches) != 1:
        found = "no choice" if not matches else f"{len(matches)} choices ({matches})"
        raise FieldError("answer", f"{answer!r} matches {found}; it must equal exactly one choice text")
    return matches[0]


def _category(question_id: str) -> str:
    category = question_id.split("_", 1)[0]
    if category not in STAR_CATEGORIES:
        raise FieldError("question_id", f"{question_id!r} does not start with a STAR category ({', '.join(STAR_CATEGORIES)})")
    return category


def make_converter(args: argparse.Namespace) -> RecordConverter:
    def convert(raw: dict) -> dict:
        question_id = text_field(raw, "question_id")
        options = _choices(raw)
        return record(
            "star",
            "multiple_choice",
            qid=question_id,
            video=text_field(raw, "video_id"),
            question=text_field(raw, "question"),
            options=options,
            answer=_answer_index(raw, options),
            qtype=_category(question_id),
            start=seconds_field(raw, "start"),
            end=seconds_field(raw, "end"),
        )

    return convert


CLI = ConverterCli(
    dataset="star",
    description=__doc__.splitlines()[0],
    read=read_json_list,
    make_converter=make_converter,
    source_fields={"qid": "question_id", "video": "video_id", "question": "question", "options": "choices",
                   "answer": "answer", "qtype": "question_id", "start": "start", "end": "end"},
)

if __name__ == "__main__":
    CLI.run()

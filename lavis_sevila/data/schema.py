"""The one annotation format every SeViLA dataset is converted to (schema version 1).

Each benchmark ships its own layout; converting them all to one validated jsonl means the
datasets, shards and metrics read a single format, and a bad record is found once, at
conversion time, with its file, line and field, instead of as a crash or a silently wrong
sample in the middle of a training run.

This module imports neither torch nor lavis itself; importing it through the
``lavis_sevila`` package still loads LAVIS (the package registers on import).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1

#: ``extra`` key of a record kept with a caveat (e.g. a TVQA question whose ``ts`` gives no
#: window, so the whole video is sampled): converters print and count such records and
#: dataset builders report how many a split holds; the caveat travels with the record
FLAG = "flag"

DatasetName = Literal["nextqa", "star", "how2qa", "tvqa", "vlep", "qvh", "synthetic"]
Kind = Literal["multiple_choice", "next_event", "moment"]

#: Which kinds of record each dataset holds.
DATASET_KINDS: dict[str, frozenset[str]] = {
    "nextqa": frozenset({"multiple_choice"}),
    "star": frozenset({"multiple_choice"}),
    "how2qa": frozenset({"multiple_choice"}),
    "tvqa": frozenset({"multiple_choice"}),
    "vlep": frozenset({"next_event"}),
    "qvh": frozenset({"moment"}),
    "synthetic": frozenset({"multiple_choice", "moment"}),
}

#: Allowed number of options (inclusive range) per dataset; moment records have none.
OPTION_COUNTS: dict[str, tuple[int, int]] = {
    "nextqa": (5, 5),
    "star": (4, 4),
    "how2qa": (4, 4),
    "tvqa": (5, 5),
    "vlep": (2, 2),
    "synthetic": (2, 5),
}

#: NExT-QA question type codes and the group the official evaluation reports them under.
NEXTQA_TYPE_GROUP: dict[str, str] = {
    "CW": "Causal",
    "CH": "Causal",
    "TN": "Temporal",
    "TC": "Temporal",
    "TP": "Temporal",
    "DL": "Descriptive",
    "DO": "Descriptive",
    "DC": "Descriptive",
}

#: STAR question categories (the prefix of the question id).
STAR_CATEGORIES: tuple[str, ...] = ("Interaction", "Sequence", "Prediction", "Feasibility")

#: Allowed question types per dataset; datasets not listed accept any non-empty qtype.
QTYPES: dict[str, frozenset[str]] = {
    "nextqa": frozenset(NEXTQA_TYPE_GROUP),
    "star": frozenset(STAR_CATEGORIES),
}

FIELD_ORDER: tuple[str, ...] = (
    "schema_version", "dataset", "kind", "qid", "video", "question", "options", "answer",
    "qtype", "start", "end", "duration", "relevant_windows", "extra",
)


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError("annotation", message)


def _check_text(value: str, what: str) -> str:
    if not value.strip():
        raise _invalid(f"{what} is empty")
    return value


class Annotation(BaseModel):
    """One question (or moment query) about one video.

    Cross-field rules are checked in the validator of the later field, so every error
    names the field it is about (pydantic validates fields in declaration order).
    """

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, allow_inf_nan=False, validate_default=True
    )

    schema_version: Literal[1]
    dataset: DatasetName
    kind: Kind
    qid: str
    video: str = Field(description="video id; the dataset config maps it to a file or frame folder")
    question: Optional[str] = Field(default=None, description="the question; for moments the query")
    options: Optional[list[str]] = None
    answer: Optional[int] = Field(default=None, description="index into options; null when unknown")
    qtype: Optional[str] = None
    start: Optional[float] = Field(default=None, description="clip window start, seconds")
    end: Optional[float] = Field(default=None, description="clip window end, seconds")
    duration: Optional[float] = Field(default=None, description="video duration, seconds")
    relevant_windows: Optional[list[list[float]]] = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _kind_fits_dataset(cls, kind: str, info: ValidationInfo) -> str:
        dataset = info.data.get("dataset")
        if dataset is not None and kind not in DATASET_KINDS[dataset]:
            allowed = ", ".join(sorted(DATASET_KINDS[dataset]))
            raise _invalid(f"dataset {dataset} holds only {allowed} records, not {kind}")
        return kind

    @field_validator("qid", "video")
    @classmethod
    def _non_empty_id(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, info.field_name)

    @field_validator("question")
    @classmethod
    def _question_fits_kind(cls, question: Optional[str], info: ValidationInfo) -> Optional[str]:
        kind = info.data.get("kind")
        if kind == "next_event":
            if question is not None:
                raise _invalid("next_event records have no question (the prompt is fixed)")
            return None
        if kind is not None and question is None:
            raise _invalid(f"{kind} records need a question")
        return None if question is None else _check_text(question, "question")

    @field_validator("options")
    @classmethod
    def _options_fit_dataset(cls, options: Optional[list[str]], info: ValidationInfo) -> Optional[list[str]]:
        kind, dataset = info.data.get("kind"), info.data.get("dataset")
        if kind == "moment":
            if options is not None:
                raise _invalid("moment records have no options")
            return None
        if kind is None or dataset is None:
            return options
        if options is None:
            raise _invalid(f"{kind} records need options")
        low, high = OPTION_COUNTS[dataset]
        if not low <= len(options) <= high:
            wanted = str(low) if low == high else f"{low}..{high}"
            raise _invalid(f"{dataset} needs {wanted} options, got {len(options)}")
        for index, text in enumerate(options):
            _check_text(text, f"option {index}")
        return options

    @field_validator("answer")
    @classmethod
    def _answer_in_range(cls, answer: Optional[int], info: ValidationInfo) -> Optional[int]:
        if answer is None:
            return None
        if info.data.get("kind") == "moment":
            raise _invalid("moment records have no answer index (their truth is relevant_windows)")
        options = info.data.get("options")
        if options is not None and not 0 <= answer < len(options):
            raise _invalid(f"answer {answer} is outside 0..{len(options) - 1}")
        return answer

    @field_validator("qtype")
    @classmethod
    def _known_qtype(cls, qtype: Optional[str], info: ValidationInfo) -> Optional[str]:
        if qtype is None:
            return None
        _check_text(qtype, "qtype")
        allowed = QTYPES.get(info.data.get("dataset", ""))
        if allowed is not None and qtype not in allowed:
            raise _invalid(f"unknown {info.data['dataset']} question type {qtype!r} (known: {', '.join(sorted(allowed))})")
        return qtype

    @field_validator("start")
    @classmethod
    def _start_non_negative(cls, start: Optional[float]) -> Optional[float]:
        if start is not None and start < 0:
            raise _invalid(f"start {start} is negative")
        return start

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: Optional[float], info: ValidationInfo) -> Optional[float]:
        if "start" not in info.data:  # start itself was invalid; already reported
            return end
        start = info.data["start"]
        if (start is None) != (end is None):
            raise _invalid("start and end must both be given or both be null")
        if end is not None and not start < end:
            raise _invalid(f"window [{start}, {end}] is empty: start must be < end")
        return end

    @field_validator("duration")
    @classmethod
    def _duration_holds_window(cls, duration: Optional[float], info: ValidationInfo) -> Optional[float]:
        if duration is None:
            return None
        if duration <= 0:
            raise _invalid(f"duration {duration} is not positive")
        end = info.data.get("end")
        if end is not None and end > duration:
            raise _invalid(f"clip window ends at {end} s, after the video's duration {duration} s")
        return duration

    @field_validator("relevant_windows")
    @classmethod
    def _windows_inside_video(cls, windows: Optional[list[list[float]]], info: ValidationInfo) -> Optional[list[list[float]]]:
        if windows is None:
            return None
        if not windows:
            raise _invalid("empty list: use null when the windows are unknown")
        duration = info.data.get("duration")
        for index, window in enumerate(windows):
            if len(window) != 2:
                raise _invalid(f"window {index} has {len(window)} numbers, expected [start, end]")
            start, end = window
            if not 0 <= start < end:
                raise _invalid(f"window {index} {window} needs 0 <= start < end")
            if duration is not None and end > duration:
                raise _invalid(f"window {index} {window} ends after the duration {duration} s")
        return windows

    @field_validator("extra")
    @classmethod
    def _extra_is_json(cls, extra: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(extra, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise _invalid(f"not plain JSON: {error}") from None
        return extra

    def to_json_line(self) -> str:
        """The record as one jsonl line, fields in the documented order."""
        data = self.model_dump(mode="json")
        return json.dumps({name: data[name] for name in FIELD_ORDER}, ensure_ascii=False, allow_nan=False)

    @property
    def window(self) -> Optional[tuple[float, float]]:
        """The clip window in seconds, or None for the whole video."""
        return None if self.start is None else (float(self.start), float(self.end))


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input record, printed as ``location: field: message``."""

    location: str  # "file:line" for line-based files, "file[index]" for JSON lists
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.field}: {self.message}"


class AnnotationError(ValueError):
    """Raised with every problem found in a file (not only the first)."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        shown = "\n".join(str(problem) for problem in self.problems[:50])
        more = len(self.problems) - 50
        tail = f"\n... and {more} more" if more > 0 else ""
        super().__init__(f"{len(self.problems)} annotation problem(s):\n{shown}{tail}")


def validation_problems(error: ValidationError, location: str) -> list[Problem]:
    """Turn a pydantic error into Problems naming the field (``options.2``) it is about."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<record>"
        problems.append(Problem(location, field, item["msg"]))
    return problems


def parse_record(data: Any, location: str) -> tuple[Optional[Annotation], list[Problem]]:
    """Validate one decoded JSON value; returns the record or the problems."""
    if not isinstance(data, dict):
        return None, [Problem(location, "<record>", f"expected a JSON object, got {type(data).__name__}")]
    try:
        return Annotation.model_validate(data), []
    except ValidationError as error:
        return None, validation_problems(error, location)


def duplicate_qid_problems(records: Iterable[tuple[str, Annotation]]) -> list[Problem]:
    """A qid names one question: a second record with the same qid is an error."""
    first_seen: dict[str, str] = {}
    problems = []
    for location, record in records:
        if record.qid in first_seen:
            problems.append(Problem(location, "qid", f"duplicate qid {record.qid!r} (first at {first_seen[record.qid]})"))
        else:
            first_seen[record.qid] = location
    return problems


def utf8_lines(path: str | os.PathLike) -> Iterator[tuple[int, Optional[str], Optional[str]]]:
    """(line number, text, problem) per line; a line that is not UTF-8 is a problem, not the end.

    Decoding the whole file at once would stop at the first bad byte with a byte offset and
    leave the rest unchecked; line by line, every bad line is named and the others are read.
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8"), None
            except UnicodeDecodeError as error:
                bad = raw[error.start : error.start + 4]
                yield number, None, f"not UTF-8: byte(s) {bad!r} at column {error.start + 1}; re-save the file as UTF-8"


def jsonl_values(path: str | os.PathLike) -> Iterator[tuple[str, Any, Optional[Problem]]]:
    """(location, decoded value, problem) per line: an empty line, bad bytes or bad JSON is a problem."""
    path = Path(path)
    for number, line, encoding_problem in utf8_lines(path):
        location = f"{path}:{number}"
        if encoding_problem is not None:
            yield location, None, Problem(location, "<encoding>", encoding_problem)
            continue
        if not line.strip():
            yield location, None, Problem(location, "<line>", "empty line")
            continue
        try:
            yield location, json.loads(line, parse_constant=reject_json_constant), None
        except ValueError as error:
            yield location, None, Problem(location, "<json>", str(error))


def check_annotations(path: str | os.PathLike) -> tuple[list[Annotation], list[Problem]]:
    """Read a jsonl file and return its valid records and every problem found."""
    located, problems = check_located_annotations(path)
    return [record for _, record in located], problems


def check_located_annotations(path: str | os.PathLike) -> tuple[list[tuple[str, Annotation]], list[Problem]]:
    """:func:`check_annotations` with each valid record's ``file:line``."""
    records: list[tuple[str, Annotation]] = []
    problems: list[Problem] = []
    for location, data, problem in jsonl_values(path):
        if problem is not None:
            problems.append(problem)
            continue
        record, found = parse_record(data, location)
        problems.extend(found)
        if record is not None:
            records.append((location, record))
    problems.extend(duplicate_qid_problems(records))
    return records, problems


def reject_json_constant(name: str) -> float:
    """``parse_constant`` hook: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def load_records(paths: Iterable[str | os.PathLike]) -> list[Annotation]:
    """The records of one split, possibly from several files; qids must stay unique across them."""
    located: list[tuple[str, Annotation]] = []
    for path in paths:
        located.extend((f"{path} (record {i + 1})", record) for i, record in enumerate(read_annotations(path)))
    problems = duplicate_qid_problems(located)
    if problems:
        raise AnnotationError(problems)
    return [record for _, record in located]


def read_annotations(path: str | os.PathLike) -> list[Annotation]:
    """All records of a jsonl file; raises AnnotationError listing every problem."""
    records, problems = check_annotations(path)
    if problems:
        raise AnnotationError(problems)
    return records


def write_annotations(path: str | os.PathLike, records: Iterable[Annotation]) -> int:
    """Write records as jsonl (atomically: a failed write leaves no half file); returns the count."""
    records = list(records)
    for index, record in enumerate(records):
        if not isinstance(record, Annotation):
            raise TypeError(f"record {index} is a {type(record).__name__}, not an Annotation")
    problems = duplicate_qid_problems((f"record {index}", record) for index, record in enumerate(records))
    if problems:
        raise AnnotationError(problems)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from lavis_sevila.diskspace import explain_full_disk  # here: importing the package loads LAVIS

    partial = path.with_name(path.name + ".partial")
    try:
        with explain_full_disk(path):
            with open(partial, "w", encoding="utf-8") as handle:
                for record in records:
                    handle.write(record.to_json_line() + "\n")
            os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return len(records)


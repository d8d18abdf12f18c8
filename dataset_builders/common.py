"""What every converter shares: reading the release files, reporting bad input, the CLI.

A converter only says how one released record becomes one of our records
(:class:`lavis_sevila.data.schema.Annotation`).  Everything about bad input lives here so
that every dataset reports it the same way: each problem names the file, the line (or the
index in a JSON list) and the released field; nothing is dropped unless ``--skip-invalid``
is given, and then every skipped record is printed and counted.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from lavis_sevila.data.schema import (
    FLAG,
    SCHEMA_VERSION,
    Annotation,
    Problem,
    duplicate_qid_problems,
    jsonl_values,
    parse_record,
    reject_json_constant,
    utf8_lines,
    write_annotations,
)

RecordConverter = Callable[[dict], dict]


class FieldError(ValueError):
    """A released record's field is missing or malformed; ``field`` is the released name."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class InputError(RuntimeError):
    """The input file as a whole cannot be read (no record can be converted)."""


@dataclass(frozen=True)
class SourceRecord:
    """One released record and where it came from; ``problem`` is set when it could not be decoded."""

    location: str
    data: Any = None
    problem: Optional[Problem] = None


# ---------------------------------------------------------------- readers


def read_jsonl(path: Path) -> list[SourceRecord]:
    """One record per line (VALUE / QVHighlights / VLEP releases)."""
    return [SourceRecord(location, data, problem) for location, data, problem in jsonl_values(path)]


def _not_utf8(path: Path) -> list[Problem]:
    """Every line of ``path`` that is not UTF-8, as ``file:line`` problems."""
    return [Problem(f"{path}:{number}", "<encoding>", problem)
            for number, _, problem in utf8_lines(path) if problem is not None]


def read_json_list(path: Path) -> list[SourceRecord]:
    """A JSON array of records (STAR); locations are list indices."""
    bad = _not_utf8(path)
    if bad:  # one JSON document: it cannot be parsed around a bad line
        raise InputError(f"{path}: not UTF-8 text:\n" + "\n".join(map(str, bad)))
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle, parse_constant=reject_json_constant)
    except ValueError as error:
        raise InputError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return [SourceRecord(f"{path}[{index}]", item) for index, item in enumerate(data)]


def read_csv(path: Path, required_columns: Sequence[str]) -> list[SourceRecord]:
    """A CSV with a header (NExT-QA); locations are file lines (the header is line 1).

    A line that is not UTF-8 is reported as its own problem and its row is not converted;
    the other rows are still read (the bad bytes are replaced only to keep the parser going).
    """
    bad = {problem.location: problem for problem in _not_utf8(path)}
    if f"{path}:1" in bad:
        raise InputError(str(bad[f"{path}:1"]))
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in required_columns if name not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}:1: header lacks column(s) {', '.join(missing)}")
        sources = []
        for row in reader:
            location = f"{path}:{reader.line_num}"
            if location in bad:
                sources.append(SourceRecord(location, problem=bad[location]))
            elif None in row or any(value is None for value in row.values()):
                problem = Problem(location, "<row>", f"expected {len(reader.fieldnames)} columns")
                sources.append(SourceRecord(location, problem=problem))
            else:
                sources.append(SourceRecord(location, dict(row)))
    return sources


# ---------------------------------------------------------------- field access


def text_field(raw: Mapping[Any, Any], key: Any, name: Optional[str] = None) -> str:
    """A required string field, kept exactly as released (no stripping); ``name`` is the
    field's name in messages when it is nested (``choices[2].choice``)."""
    name = name or str(key)
    if key not in raw:
        raise FieldError(name, "missing")
    value = raw[key]
    if not isinstance(value, str):
        raise FieldError(name, f"expected a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise FieldError(name, "is empty")
    return value


def int_field(raw: Mapping[str, Any], key: str, *, text: bool = False) -> int:
    """A required integer: a JSON int; with ``text`` (CSV cells, which are all text) its digits.

    A JSON release that writes ``"answer_idx": "1"`` is malformed and reported, not coerced.
    """
    if key not in raw:
        raise FieldError(key, "missing")
    value = raw[key]
    if text and isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise FieldError(key, f"expected an integer, got {value!r}")


def optional_int_field(raw: Mapping[str, Any], key: str, *, text: bool = False) -> Optional[int]:
    """An integer that test splits leave out (answers)."""
    return int_field(raw, key, text=text) if key in raw else None


def numbered_options(raw: Mapping[str, Any], prefix: str, count: int) -> list[str]:
    """Options ``{prefix}0..{prefix}{count-1}``; a further ``{prefix}{j}`` is an error, not dropped."""
    extra = sorted(k for k in raw if isinstance(k, str) and re.fullmatch(rf"{re.escape(prefix)}\d+", k)
                   and int(k[len(prefix):]) >= count)
    if extra:
        raise FieldError(extra[0], f"this dataset has {count} options {prefix}0..{prefix}{count - 1}; "
                                   f"the record also has {', '.join(extra)}")
    return [text_field(raw, f"{prefix}{j}") for j in range(count)]


def seconds_field(raw: Mapping[Any, Any], key: Any, name: Optional[str] = None) -> float:
    """A required finite number of seconds."""
    name = name or str(key)
    if key not in raw:
        raise FieldError(name, "missing")
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FieldError(name, f"expected a finite number of seconds, got {value!r}")
    return float(value)


_TS_RANGE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*")


def ts_range_field(raw: Mapping[str, Any], key: str) -> tuple[float, float]:
    """A VALUE-style ``"start-end"`` string of seconds, e.g. ``"48.62-60.02"``."""
    value = text_field(raw, key)
    match = _TS_RANGE.fullmatch(value)
    if match is None:
        raise FieldError(key, f"expected 'start-end' in seconds, got {value!r}")
    return float(match.group(1)), float(match.group(2))


def pair_field(raw: Mapping[str, Any], key: str) -> tuple[float, float]:
    """A ``[start, end]`` JSON pair of seconds."""
    if key not in raw:
        raise FieldError(key, "missing")
    value = raw[key]
    if not isinstance(value, list) or len(value) != 2:
        raise FieldError(key, f"expected [start, end], got {value!r}")
    items = dict(enumerate(value))
    return seconds_field(items, 0, f"{key}[0]"), seconds_field(items, 1, f"{key}[1]")


def text_list_field(raw: Mapping[str, Any], key: str) -> list[str]:
    """A JSON list of strings (VLEP events)."""
    if key not in raw:
        raise FieldError(key, "missing")
    value = raw[key]
    if not isinstance(value, list):
        raise FieldError(key, f"expected a list, got {type(value).__name__}")
    items = dict(enumerate(value))
    return [text_field(items, index, f"{key}[{index}]") for index in items]


def record(dataset: str, kind: str, qid: str, video: str, **fields: Any) -> dict:
    """The fields of one of our records (validated by the caller, in one place)."""
    return {"schema_version": SCHEMA_VERSION, "dataset": dataset, "kind": kind, "qid": qid, "video": video, **fields}


# ---------------------------------------------------------------- conversion


@dataclass
class Conversion:
    """The outcome of converting one file: good records and every problem, by record."""

    records: list[Annotation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    total: int = 0
    flagged: list[Problem] = field(default_factory=list)  # kept records with a caveat (extra.flag)

    @property
    def bad_locations(self) -> list[str]:
        """The rejected records, in order (every problem names the record it rejects)."""
        return list(dict.fromkeys(problem.location for problem in self.problems))


def convert_sources(
    sources: Sequence[SourceRecord],
    convert_one: RecordConverter,
    source_fields: Mapping[str, str],
) -> Conversion:
    """Convert every record, collecting problems instead of stopping at the first."""
    result = Conversion(total=len(sources))
    good: list[tuple[str, Annotation]] = []

    for source in sources:
        if source.problem is not None:
            result.problems.append(source.problem)
            continue
        if not isinstance(source.data, dict):
            result.problems.append(
                Problem(source.location, "<record>", f"expected a JSON object, got {type(source.data).__name__}")
            )
            continue
        try:
            fields = convert_one(source.data)
        except FieldError as error:
            result.problems.append(Problem(source.location, error.field, error.message))
            continue
        annotation, problems = parse_record(fields, source.location)
        if annotation is None:
            result.problems.extend(_name_source_field(problem, source_fields) for problem in problems)
        else:
            good.append((source.location, annotation))
    duplicates = duplicate_qid_problems(good)
    result.problems.extend(_name_source_field(problem, source_fields) for problem in duplicates)
    duplicated = {problem.location for problem in duplicates}
    result.records = [annotation for location, annotation in good if location not in duplicated]
    result.flagged = [
        Problem(location, FLAG, annotation.extra[FLAG])
        for location, annotation in good
        if location not in duplicated and FLAG in annotation.extra
    ]
    return result


def _name_source_field(problem: Problem, source_fields: Mapping[str, str]) -> Problem:
    """Name the released field a schema problem comes from: ``ts (end): ...``."""
    schema_field = problem.field.split(".")[0]
    source = source_fields.get(schema_field)
    if source is None or source == problem.field:
        return problem
    return Problem(problem.location, f"{source} ({problem.field})", problem.message)


# ---------------------------------------------------------------- CLI


@dataclass(frozen=True)
class ConverterCli:
    """``python -m dataset_builders.<name> --input ... --output OUT.jsonl [--skip-invalid]``."""

    dataset: str
    description: str
    read: Callable[[Path], list[SourceRecord]]
    make_converter: Callable[[argparse.Namespace], RecordConverter]
    source_fields: Mapping[str, str]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None

    def parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=f"python -m dataset_builders.{self.dataset}", description=self.description)
        parser.add_argument("--input", required=True, type=Path, help="the official annotation file")
        parser.add_argument("--output", required=True, type=Path, help="our annotation jsonl to write")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="skip records that cannot be converted (each one is printed and counted) instead of failing",
        )
        self.add_arguments(parser)
        return parser

    def convert(self, args: argparse.Namespace) -> Conversion:
        convert_one = self.make_converter(args)
        return convert_sources(self.read(args.input), convert_one, self.source_fields)

    def main(self, argv: Optional[Sequence[str]] = None) -> int:
        args = self.parser().parse_args(argv)
        began = time.perf_counter()
        try:
            result = self.convert(args)
        except (InputError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        if result.problems and not args.skip_invalid:
            for problem in result.problems:
                print(problem, file=sys.stderr)
            print(
                f"error: {len(result.problems)} problem(s) in {len(result.bad_locations)} of {result.total} "
                f"record(s) of {args.input}; nothing written (fix the input, or pass --skip-invalid "
                "to skip these records)",
                file=sys.stderr,
            )
            return 1
        for problem in result.problems:
            print(f"skipped: {problem}", file=sys.stderr)
        if result.bad_locations:
            print(f"skipped {len(result.bad_locations)} of {result.total} record(s) of {args.input}", file=sys.stderr)
        if not result.records:
            print(f"error: no record of {args.input} could be converted; nothing written", file=sys.stderr)
            return 1
        for flagged in result.flagged:
            print(f"kept, flagged: {flagged}", file=sys.stderr)
        if result.flagged:
            print(f"kept {len(result.flagged)} of {result.total} record(s) of {args.input} with a flag "
                  f"(extra.{FLAG})", file=sys.stderr)
        written = write_annotations(args.output, result.records)
        elapsed = time.perf_counter() - began
        print(f"{self.dataset}: wrote {written} record(s) to {args.output} in {elapsed:.2f} s")
        return 0

    def run(self) -> None:
        sys.exit(self.main())

"""The annotation schema: what it accepts, what it refuses (with the field), and file I/O."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from lavis_sevila.data.schema import (
    FIELD_ORDER,
    Annotation,
    AnnotationError,
    check_annotations,
    read_annotations,
    write_annotations,
)

REPO = Path(__file__).resolve().parent.parent


def mc(**changes) -> dict:
    record = {
        "schema_version": 1, "dataset": "nextqa", "kind": "multiple_choice", "qid": "CW_1_0", "video": "0001/1",
        "question": "why?", "options": ["a.", "b.", "c.", "d.", "e."], "answer": 2, "qtype": "CW",
    }
    record.update(changes)
    return record


def moment(**changes) -> dict:
    record = {
        "schema_version": 1, "dataset": "qvh", "kind": "moment", "qid": "QVHighlight_1", "video": "abc_0.0_150.0",
        "question": "a man talks", "duration": 150, "relevant_windows": [[0, 10], [20, 30]],
    }
    record.update(changes)
    return record


def vlep(**changes) -> dict:
    record = {
        "schema_version": 1, "dataset": "vlep", "kind": "next_event", "qid": "VLEP_1", "video": "friends_x",
        "options": ["he sits.", "he leaves."], "answer": 1, "start": 1.5, "end": 3.0,
    }
    record.update(changes)
    return record


def errors_of(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        Annotation.model_validate(data)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in caught.value.errors()]


@pytest.mark.parametrize("data", [mc(), moment(), vlep(), mc(answer=None), moment(relevant_windows=None),
                                  mc(dataset="synthetic", qtype=None, options=["x", "y"], answer=1),
                                  moment(dataset="synthetic", duration=None)])
def test_valid_records_round_trip(tmp_path, data):
    record = Annotation.model_validate(data)
    path = tmp_path / "a.jsonl"
    assert write_annotations(path, [record]) == 1
    line = path.read_text().splitlines()[0]
    assert list(json.loads(line)) == list(FIELD_ORDER)
    assert read_annotations(path) == [record]


@pytest.mark.parametrize(
    "data, field, message",
    [
        (mc(schema_version=2), "schema_version", "Input should be 1"),
        (mc(dataset="msrvtt"), "dataset", "Input should be"),
        (mc(kind="moment"), "kind", "holds only multiple_choice"),
        (mc(qid=" "), "qid", "qid is empty"),
        (mc(video=""), "video", "video is empty"),
        (mc(question=None), "question", "need a question"),
        (mc(question=" "), "question", "question is empty"),
        (mc(options=["a", "b", "c", "d"]), "options", "nextqa needs 5 options, got 4"),
        (mc(options=["a", "b", " ", "d", "e"]), "options", "option 2 is empty"),
        (mc(options=None), "options", "need options"),
        (mc(answer=5), "answer", "outside 0..4"),
        (mc(answer=-1), "answer", "outside 0..4"),
        (mc(answer="1"), "answer", "valid integer"),
        (mc(answer=True), "answer", "valid integer"),
        (mc(qtype="XX"), "qtype", "unknown nextqa question type"),
        (mc(dataset="star", qtype="CW", options=["a", "b", "c", "d"]), "qtype", "unknown star question type"),
        (mc(start=1.0), "end", "both be given or both be null"),
        (mc(start=2.0, end=2.0), "end", "start must be < end"),
        (mc(start=-0.5, end=2.0), "start", "negative"),
        (mc(start=float("nan"), end=2.0), "start", "finite"),
        (mc(dataset="synthetic", qtype=None, options=["only one"], answer=0), "options", "2..5 options"),
        (mc(surprise=1), "surprise", "Extra inputs"),
        (mc(extra={"x": float("inf")}), "extra", "not plain JSON"),
        (vlep(question="what next?"), "question", "no question"),
        (vlep(options=["a", "b", "c"]), "options", "vlep needs 2 options"),
        (moment(options=["yes", "no"]), "options", "no options"),
        (moment(answer=0), "answer", "no answer index"),
        (moment(relevant_windows=[]), "relevant_windows", "use null"),
        (moment(relevant_windows=[[5, 5]]), "relevant_windows", "0 <= start < end"),
        (moment(relevant_windows=[[-1, 5]]), "relevant_windows", "0 <= start < end"),
        (moment(relevant_windows=[[140, 152]]), "relevant_windows", "ends after the duration 150"),
        (moment(relevant_windows=[[1, 2, 3]]), "relevant_windows", "expected [start, end]"),
        (moment(duration=0), "duration", "not positive"),
        (moment(start=10, end=160), "duration", "after the video's duration"),
    ],
)
def test_invalid_records_name_the_field(data, field, message):
    errors = errors_of(data)
    assert any(loc == field and message in text for loc, text in errors), errors


def test_read_reports_every_problem_with_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps(mc(qid="q1")),
        json.dumps(mc(qid="q2", answer=9)),
        "{not json",
        "",
        json.dumps(mc(qid="q1")),
        json.dumps(moment(relevant_windows=[[10, 1]])),
        json.dumps([1, 2]),
    ]
    path.write_text("\n".join(lines) + "\n")
    records, problems = check_annotations(path)
    assert [r.qid for r in records] == ["q1", "q1"]  # lines 1 and 5 parse; 5 is then a duplicate
    rendered = [str(p) for p in problems]
    assert f"{path}:2: answer: answer 9 is outside 0..4" in rendered
    assert any(r.startswith(f"{path}:3: <json>: ") for r in rendered)
    assert f"{path}:4: <line>: empty line" in rendered
    assert f"{path}:5: qid: duplicate qid 'q1' (first at {path}:1)" in rendered
    assert any(r.startswith(f"{path}:6: relevant_windows: ") for r in rendered)
    assert any(r.startswith(f"{path}:7: <record>: expected a JSON object") for r in rendered)
    assert len(problems) == 6
    with pytest.raises(AnnotationError) as caught:
        read_annotations(path)
    assert len(caught.value.problems) == 6
    assert f"{path}:2: answer" in str(caught.value)


def test_write_refuses_duplicates_and_non_records(tmp_path):
    record = Annotation.model_validate(mc())
    with pytest.raises(AnnotationError, match="duplicate qid"):
        write_annotations(tmp_path / "a.jsonl", [record, record])
    with pytest.raises(TypeError, match="not an Annotation"):
        write_annotations(tmp_path / "a.jsonl", [mc()])
    assert list(tmp_path.iterdir()) == []


def test_records_are_immutable():
    record = Annotation.model_validate(mc())
    with pytest.raises(ValidationError):
        record.answer = 0


def test_schema_module_imports_neither_torch_nor_lavis():
    # loaded as a plain file: the package __init__ (which registers in LAVIS) is not involved
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('schema', {str(REPO / 'lavis_sevila/data/schema.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); sys.modules['schema'] = module\n"
        "spec.loader.exec_module(module)\n"
        "heavy = sorted(m for m in ('torch', 'lavis', 'numpy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

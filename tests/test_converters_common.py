"""Shared converter machinery: field parsing, problem reports, --skip-invalid, the CLI."""
from __future__ import annotations

import json

import pytest

from dataset_builders import common
from dataset_builders.common import FieldError, InputError
from lavis_sevila.data.schema import read_annotations


@pytest.mark.parametrize("text, expected", [("48.62-60.02", (48.62, 60.02)), ("0-9.5", (0.0, 9.5)), (" 3 - 4. ", (3.0, 4.0))])
def test_ts_range_parses_value_windows(text, expected):
    assert common.ts_range_field({"ts": text}, "ts") == expected


@pytest.mark.parametrize("text", ["NaN-NaN", "12.5", "1-2-3", "-1-2", "a-b", ""])
def test_ts_range_refuses_malformed_windows(text):
    with pytest.raises(FieldError) as caught:
        common.ts_range_field({"ts": text}, "ts")
    assert caught.value.field == "ts"


def test_field_readers_name_the_released_field():
    with pytest.raises(FieldError, match="q: missing"):
        common.text_field({}, "q")
    with pytest.raises(FieldError, match="q: expected a string"):
        common.text_field({"q": 3}, "q")
    with pytest.raises(FieldError, match=r"choices\[1\].choice: is empty"):
        common.text_field({"choice": " "}, "choice", name="choices[1].choice")
    with pytest.raises(FieldError, match="answer_idx: expected an integer"):
        common.int_field({"answer_idx": 1.5}, "answer_idx")
    with pytest.raises(FieldError, match="answer_idx: expected an integer"):
        common.int_field({"answer_idx": True}, "answer_idx")
    assert common.int_field({"qid": "17"}, "qid", text=True) == 17  # CSV cells are text
    with pytest.raises(FieldError, match="answer_idx: expected an integer, got '1'"):
        common.int_field({"answer_idx": "1"}, "answer_idx")  # a JSON string is not coerced
    assert common.optional_int_field({}, "answer") is None
    with pytest.raises(FieldError, match=r"ts\[1\]: expected a finite number"):
        common.pair_field({"ts": [1.0, "2"]}, "ts")
    with pytest.raises(FieldError, match=r"events\[1\]: is empty"):
        common.text_list_field({"events": ["a", ""]}, "events")


def test_readers_locate_records(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"a": 1}\n\n{bad\n')
    sources = common.read_jsonl(jsonl)
    assert [s.location for s in sources] == [f"{jsonl}:1", f"{jsonl}:2", f"{jsonl}:3"]
    assert sources[0].data == {"a": 1} and sources[1].problem.field == "<line>" and sources[2].problem.field == "<json>"
    listed = tmp_path / "a.json"
    listed.write_text('[{"a": 1}, {"a": 2}]')
    assert [s.location for s in common.read_json_list(listed)] == [f"{listed}[0]", f"{listed}[1]"]
    listed.write_text('{"a": 1}')
    with pytest.raises(InputError, match="expected a JSON list"):
        common.read_json_list(listed)
    table = tmp_path / "a.csv"
    table.write_text("x,y\n1,2\n3\n")
    rows = common.read_csv(table, ["x", "y"])
    assert rows[0].location == f"{table}:2" and rows[0].data == {"x": "1", "y": "2"}
    assert rows[1].problem is not None and rows[1].location == f"{table}:3"
    with pytest.raises(InputError, match="lacks column"):
        common.read_csv(table, ["x", "z"])


def _toy_cli() -> common.ConverterCli:
    """A converter for a made-up release: {"id", "text", "choices", "right"}."""

    def make_converter(args):
        def convert(raw):
            return common.record("synthetic", "multiple_choice", qid=f"T_{common.int_field(raw, 'id')}", video="v",
                                 question=common.text_field(raw, "text"), options=raw.get("choices"),
                                 answer=common.optional_int_field(raw, "right"))
        return convert

    return common.ConverterCli("synthetic", "toy", common.read_jsonl, make_converter,
                               {"question": "text", "options": "choices", "answer": "right", "qid": "id"})


def _write_lines(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


GOOD = {"id": 1, "text": "which?", "choices": ["x", "y"], "right": 0}


def test_cli_fails_on_any_problem_and_writes_nothing(tmp_path, capsys):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_lines(source, [GOOD, {**GOOD, "id": 2, "right": 2}, {**GOOD, "id": 3, "text": 5}, {**GOOD}])
    assert _toy_cli().main(["--input", str(source), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{source}:2: right (answer): answer 2 is outside 0..1" in err
    assert f"{source}:3: text: expected a string" in err
    assert f"{source}:4: id (qid): duplicate qid 'T_1' (first at {source}:1)" in err
    assert "3 problem(s) in 3 of 4 record(s)" in err and "nothing written" in err
    assert not out.exists()


def test_cli_skip_invalid_prints_and_counts_every_skipped_record(tmp_path, capsys):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_lines(source, [GOOD, {**GOOD, "id": 2, "right": 2}, {**GOOD, "id": 3}])
    assert _toy_cli().main(["--input", str(source), "--output", str(out), "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert f"skipped: {source}:2: right (answer): answer 2 is outside 0..1" in captured.err
    assert "skipped 1 of 3 record(s)" in captured.err
    assert "wrote 2 record(s)" in captured.out
    assert [r.qid for r in read_annotations(out)] == ["T_1", "T_3"]


def test_cli_fails_when_nothing_is_left(tmp_path, capsys):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_lines(source, [{**GOOD, "right": 7}])
    assert _toy_cli().main(["--input", str(source), "--output", str(out), "--skip-invalid"]) == 1
    assert "no record" in capsys.readouterr().err and not out.exists()


def test_cli_reports_unreadable_input(tmp_path, capsys):
    assert _toy_cli().main(["--input", str(tmp_path / "absent.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 1
    assert "absent.jsonl" in capsys.readouterr().err

"""``python -m dataset_builders.validate``: every problem printed, exit status, summary."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dataset_builders.validate import main

REPO = Path(__file__).resolve().parent.parent

MC = {"schema_version": 1, "dataset": "tvqa", "kind": "multiple_choice", "qid": "TVQA_1", "video": "s01e01_clip",
      "question": "who?", "options": ["a", "b", "c", "d", "e"], "answer": 0, "start": 1.0, "end": 2.0}
MOMENT = {"schema_version": 1, "dataset": "qvh", "kind": "moment", "qid": "QVHighlight_1", "video": "v",
          "question": "a dog", "duration": 10}


def write(path: Path, rows) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_good_files_print_a_summary(tmp_path, capsys):
    first = write(tmp_path / "a.jsonl", [MC, {**MC, "qid": "TVQA_2", "answer": None}, MOMENT])
    second = write(tmp_path / "b.jsonl", [MOMENT])
    assert main([str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert f"{first}: 3 record(s)" in out and f"{second}: 1 record(s)" in out
    assert "tvqa       multiple_choice        2  with ground truth: 1" in out
    assert "qvh        moment                 1  with ground truth: 0" in out


def test_every_problem_is_printed_and_the_exit_status_is_1(tmp_path, capsys):
    good = write(tmp_path / "good.jsonl", [MC])
    bad = write(tmp_path / "bad.jsonl", [MC, {**MC, "qid": "TVQA_2", "answer": 5}, "{oops", {**MC, "end": 0.5}, MC])
    assert main([str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{good}: 1 record(s)" in captured.out
    lines = captured.err.splitlines()
    assert f"{bad}:2: answer: answer 5 is outside 0..4" in lines
    assert any(line.startswith(f"{bad}:3: <json>: ") for line in lines)
    assert f"{bad}:4: end: window [1.0, 0.5] is empty: start must be < end" in lines
    assert f"{bad}:5: qid: duplicate qid 'TVQA_1' (first at {bad}:1)" in lines
    assert f"{bad}: 4 problem(s)" in lines


def test_missing_file_fails(tmp_path, capsys):
    assert main([str(tmp_path / "nope.jsonl")]) == 1
    assert "nope.jsonl: cannot read" in capsys.readouterr().err


def test_runs_as_a_module(tmp_path):
    bad = write(tmp_path / "bad.jsonl", [{**MC, "options": ["a"]}])
    result = subprocess.run([sys.executable, "-m", "dataset_builders.validate", str(bad)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"{bad}:1: options: tvqa needs 5 options, got 1" in result.stderr


def test_non_utf8_lines_are_named_by_line_and_the_rest_is_still_checked(tmp_path, capsys):
    from lavis_sevila.data.schema import check_annotations

    good = {"schema_version": 1, "dataset": "qvh", "kind": "moment", "qid": "m1", "video": "v",
            "question": "a dog.", "duration": 10.0, "relevant_windows": [[0.0, 2.0]]}
    path = tmp_path / "a.jsonl"
    lines = [json.dumps(good).encode(), json.dumps({**good, "qid": "m2", "question": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
             json.dumps({**good, "qid": "m3", "duration": -1}).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    records, problems = check_annotations(path)
    assert [r.qid for r in records] == ["m1"]
    assert [p.location for p in problems] == [f"{path}:2", f"{path}:3"]  # line 3 is still checked
    assert problems[0].field == "<encoding>" and "not UTF-8" in problems[0].message and "column" in problems[0].message
    assert main([str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: <encoding>: not UTF-8" in err and f"{path}:3: duration" in err

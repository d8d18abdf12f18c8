"""How2QA and TVQA (one VALUE layout): fixture, the official TVQA test file, broken lines."""
from __future__ import annotations

import json
from pathlib import Path

from dataset_builders import how2qa, tvqa
from converter_helpers import convert, convert_rows
from lavis_sevila.data.schema import read_annotations

FIXTURE = Path(__file__).parent / "fixtures" / "how2qa_val_sample.jsonl"


def test_how2qa_fixture_keeps_release_ids_and_windows(tmp_path):
    code, out = convert(how2qa.CLI, tmp_path, FIXTURE)
    assert code == 0
    records = read_annotations(out)
    assert [r.qid for r in records] == ["HOW2QA_2001", "HOW2QA_2002", "HOW2QA_2003", "HOW2QA_2004"]
    first = records[0]
    assert (first.video, first.start, first.end, first.answer) == ("aB3dE5fG7hI_60_120", 12.4, 27.9, 3)
    assert first.question == "Why does the man use the rolling pin?"
    assert first.options[3] == "To roll the dough flat." and len(first.options) == 4
    assert (records[2].start, records[2].end) == (31.0, 48.25)


def test_how2qa_without_release_ids_gets_content_ids_not_line_numbers(tmp_path):
    lines = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    for line in lines:
        del line["qid"]
    forward, backward = tmp_path / "f.jsonl", tmp_path / "b.jsonl"
    forward.write_text("".join(json.dumps(line) + "\n" for line in lines))
    backward.write_text("".join(json.dumps(line) + "\n" for line in reversed(lines)))
    _, out_f = convert(how2qa.CLI, tmp_path, forward)
    ids_forward = {r.video + r.question: r.qid for r in read_annotations(out_f)}
    _, out_b = convert(how2qa.CLI, tmp_path, backward)
    ids_backward = {r.video + r.question: r.qid for r in read_annotations(out_b)}
    assert ids_forward == ids_backward
    # pinned: sha1("video\nquestion\nts")[:16], worked out by hand; a changed hash breaks every saved id
    assert ids_forward["aB3dE5fG7hI_60_120Why does the man use the rolling pin?"] == "HOW2QA_2e463dfe3e769fbb"


def test_how2qa_broken_lines(tmp_path, capsys):
    good = json.loads(FIXTURE.read_text().splitlines()[0])
    rows = [good, {**good, "qid": 1, "answer_idx": 4}, {**good, "qid": 2, "ts": "20-10"},
            {**good, "qid": 3, "ts": "NaN-NaN"}, {k: v for k, v in {**good, "qid": 4}.items() if k != "a3"}]
    code, source = convert_rows(how2qa.CLI, tmp_path, rows, "how2qa_val_release.jsonl")
    err = capsys.readouterr().err
    assert code == 1
    assert f"{source}:2: answer_idx (answer): answer 4 is outside 0..3" in err
    assert f"{source}:3: ts (end): window [20.0, 10.0] is empty" in err
    assert f"{source}:4: ts: expected 'start-end' in seconds, got 'NaN-NaN'" in err
    assert f"{source}:5: a3: missing" in err


def test_tvqa_official_test_public_reports_its_five_unusable_windows(tmp_path, reference_dir, capsys):
    source = reference_dir / "tvqa/tvqa_test_public.jsonl"
    code, out = convert(tvqa.CLI, tmp_path, source)
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    for line in (179, 2565, 2815):
        assert f"{source}:{line}: ts: expected 'start-end' in seconds, got 'NaN-NaN'" in err
    assert f"{source}:1142: ts (end): window [0.0, 0.0] is empty" in err
    assert f"{source}:4178: ts (end): window [19.18, 19.18] is empty" in err
    code, out = convert(tvqa.CLI, tmp_path, source, "--skip-invalid")
    assert code == 0 and "skipped 5 of 7623" in capsys.readouterr().err
    records = read_annotations(out)
    assert len(records) == 7618
    first = records[0]
    assert (first.qid, first.video, first.start, first.end, first.answer) == ("TVQA_137292", "s03e21_seg02_clip_08", 48.62, 60.02, None)
    assert first.options[0] == "The yogurt manufacturer. "  # kept exactly as released
    assert first.extra == {"show_name": "The Big Bang Theory", "qid": 137292}

"""STAR converter: the published format (fixture) and broken records made here."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from dataset_builders.star import CLI
from converter_helpers import convert as run_converter
from lavis_sevila.data.schema import read_annotations

FIXTURE = Path(__file__).parent / "fixtures" / "star_val_sample.json"


def convert(tmp_path, source, *extra):
    return run_converter(CLI, tmp_path, source, *extra)


def test_fixture_converts(tmp_path):
    code, out = convert(tmp_path, FIXTURE)
    assert code == 0
    records = read_annotations(out)
    assert [r.qtype for r in records] == ["Interaction", "Sequence", "Prediction", "Feasibility"]
    first = records[0]
    assert (first.qid, first.video, first.start, first.end) == ("Interaction_T1_13", "6H78U", 11.1, 19.6)
    assert first.question == "Which object was tidied up by the person?"
    assert first.options == ["The closet/cabinet.", "The blanket.", "The clothes.", "The table."]
    assert [r.answer for r in records] == [0, 1, 2, 3]
    assert first.extra == {}  # programs and situation graphs are not carried over


def test_broken_records_are_reported_by_list_index(tmp_path, capsys):
    items = json.loads(FIXTURE.read_text())
    no_match, two_matches, bad_prefix, bad_window, no_choices = (copy.deepcopy(items[0]) for _ in range(5))
    no_match.update(question_id="Interaction_T1_90", answer="The sofa.")
    two_matches.update(question_id="Interaction_T1_91")
    two_matches["choices"][1]["choice"] = "The closet/cabinet."
    bad_prefix.update(question_id="Counting_T1_92")
    bad_window.update(question_id="Interaction_T1_93", start=8.0, end=8.0)
    no_choices.update(question_id="Interaction_T1_94")
    del no_choices["choices"][2]["choice"]
    source = tmp_path / "STAR_val.json"
    source.write_text(json.dumps([items[1], no_match, two_matches, bad_prefix, bad_window, no_choices, items[1]]))
    code, out = convert(tmp_path, source)
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert f"{source}[1]: answer: 'The sofa.' matches no choice" in err
    assert f"{source}[2]: answer: 'The closet/cabinet.' matches 2 choices ([0, 1])" in err
    assert f"{source}[3]: question_id: 'Counting_T1_92' does not start with a STAR category" in err
    assert f"{source}[4]: end: window [8.0, 8.0] is empty" in err
    assert f"{source}[5]: choices[2].choice: missing" in err
    assert f"{source}[6]: question_id (qid): duplicate qid 'Sequence_T3_2101' (first at {source}[0])" in err
    code, out = convert(tmp_path, source, "--skip-invalid")
    assert code == 0 and [r.qid for r in read_annotations(out)] == ["Sequence_T3_2101"]


def test_test_split_without_answers(tmp_path):
    items = json.loads(FIXTURE.read_text())
    for item in items:
        del item["answer"]
    source = tmp_path / "STAR_test.json"
    source.write_text(json.dumps(items))
    code, out = convert(tmp_path, source)
    assert code == 0 and all(r.answer is None for r in read_annotations(out))

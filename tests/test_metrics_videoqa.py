"""Video QA metrics: NExT-QA as the official eval_mc.py, STAR as the fork, bookkeeping errors."""
from __future__ import annotations

import csv

import pytest

from lavis_sevila.tasks.metrics.videoqa import (
    accuracy,
    check_complete,
    dedupe,
    nextqa_accuracy,
    nextqa_result_file,
    nextqa_table,
    split_nextqa_id,
    star_accuracy,
)


def rec(question_id, answer, prediction, question_type=None):
    r = {"question_id": question_id, "answer": answer, "prediction": prediction}
    if question_type is not None:
        r["question_type"] = question_type
    return r


# type, video, qid, answer, prediction ; correct?
NEXTQA_ROWS = [
    ("CW", "1001", "0", 0, 0),  # yes
    ("CW", "1001", "1", 1, 2),  # no
    ("CW", "1002", "0", 3, 3),  # yes
    ("CH", "1002", "1", 4, 4),  # yes
    ("CH", "1003", "0", 2, -1),  # no (unanswered)
    ("TN", "1003", "1", 0, 0),  # yes
    ("TP", "1004", "0", 1, 1),  # yes
    ("TP", "1004", "1", 2, 0),  # no
    ("TC", "1005", "0", 3, 1),  # no
    ("DL", "1005", "1", 0, 0),  # yes
    ("DO", "1006", "0", 1, 1),  # yes
    ("DC", "1006", "1", 4, 3),  # no
    ("DC", "1007", "0", 2, 2),  # yes
]


@pytest.fixture
def nextqa_records():
    return [rec(f"{t}_{v}_{q}", a, p, t) for t, v, q, a, p in NEXTQA_ROWS]


def test_nextqa_per_type_hand_computed(nextqa_records):
    m = nextqa_accuracy(nextqa_records)
    expected = {
        "CW": 2 / 3 * 100,  # 2 of 3
        "CH": 50.0,  # 1 of 2 (the unanswered one is wrong)
        "TN": 2 / 3 * 100,  # TN 1 of 1 plus TP 1 of 2, folded together
        "TC": 0.0,  # 0 of 1
        "DC": 50.0,  # 1 of 2
        "DL": 100.0,
        "DO": 100.0,
        "Causal": 60.0,  # pooled: 3 of 5 (not the mean of CW and CH, 58.33)
        "Temporal": 50.0,  # pooled: TN + TP + TC = 2 of 4 (mean of sub-types would be 33.33)
        "Descriptive": 75.0,  # 3 of 4
        "all": 8 / 13 * 100,
    }
    assert {k: m[k] for k in expected} == pytest.approx(expected, abs=1e-12)
    assert m["total"] == 13 and m["unanswered"] == 1


def test_nextqa_table_prints_like_the_official(nextqa_records):
    assert nextqa_table(nextqa_accuracy(nextqa_records)) == (
        "Why\tHow\tBef&Aft\tWhen\tCnt\tLoc\tOther\tAcc_C\tAcc_T\tAcc_D\n"
        "66.67\t50.00\t66.67\t0.00\t50.00\t100.00\t100.00\t60.00\t50.00\t75.00\n"
        "Acc: 61.54"
    )


def test_nextqa_empty_type_is_none():
    m = nextqa_accuracy([rec("CW_1_0", 0, 0, "CW")])
    assert m["CW"] == 100.0 and m["TC"] is None and m["Temporal"] is None and m["all"] == 100.0


def test_nextqa_result_file(nextqa_records):
    result = nextqa_result_file(nextqa_records)
    assert len(result) == len(NEXTQA_ROWS)
    assert result["1001_1"] == {"answer": 1, "prediction": 2}
    assert result["1003_0"] == {"answer": 2, "prediction": -1}
    assert split_nextqa_id("TP_4010069381_6") == ("TP", "4010069381", "6")
    with pytest.raises(ValueError, match="not a NExT-QA question id"):
        nextqa_result_file([rec("XX_1_0", 0, 0)])
    with pytest.raises(ValueError, match="not a NExT-QA question id"):
        nextqa_result_file([rec("CW_1", 0, 0)])


def test_nextqa_matches_official_procedure_on_val_csv(reference_dir):
    """On the real val split: our numbers equal eval_mc.py's procedure (csv rows + result file)."""
    path = reference_dir / "nextqa" / "val.csv"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    records = []
    for i, row in enumerate(rows):
        answer = int(row["answer"])
        prediction = answer if i % 3 else (answer + 1) % 5  # about 2/3 right
        if i % 17 == 0:
            prediction = -1
        records.append(rec(f"{row['type']}_{row['video']}_{row['qid']}", answer, prediction, row["type"]))
    result = nextqa_result_file(records)

    # the official procedure, written out: sample rows grouped by type (TP as TN), looked up in the result file
    hits: dict[str, list[bool]] = {}
    for row in rows:
        sub = "TN" if row["type"] == "TP" else row["type"]
        entry = result[f"{row['video']}_{row['qid']}"]
        hits.setdefault(sub, []).append(entry["answer"] == entry["prediction"])
    official = {sub: sum(h) * 100.0 / len(h) for sub, h in hits.items()}
    for letter, group in (("C", "Causal"), ("T", "Temporal"), ("D", "Descriptive")):
        pooled = [x for sub, h in hits.items() if sub[0] == letter for x in h]
        official[group] = sum(pooled) * 100.0 / len(pooled)
    official["all"] = sum(sum(h) for h in hits.values()) * 100.0 / len(rows)

    ours = nextqa_accuracy(records)
    assert {k: ours[k] for k in official} == official
    assert ours["total"] == len(rows) == 4996


def test_nextqa_unknown_type_raises():
    with pytest.raises(ValueError, match="unknown NExT-QA question_type 'XX'"):
        nextqa_accuracy([rec("XX_1_0", 0, 0, "XX")])
    with pytest.raises(ValueError, match="question_type None"):
        nextqa_accuracy([rec("CW_1_0", 0, 0)])


# --------------------------------------------------------------------------- STAR


STAR_RECORDS = [
    rec("Interaction_T1_1", 0, 0),
    rec("Interaction_T1_2", 1, 1),
    rec("Interaction_T1_3", 2, 3),
    rec("Interaction_T1_4", 3, 3),  # Interaction 3 of 4 = 75
    rec("Sequence_T1_1", 0, 0),
    rec("Sequence_T2_2", 1, 0),  # Sequence 1 of 2 = 50
    rec("Prediction_T1_1", 2, -1),  # Prediction 0 of 1 (unanswered)
    rec("Feasibility_T1_1", 3, 3),  # Feasibility 1 of 1 = 100
]


def test_star_mean_of_categories_is_the_headline():
    m = star_accuracy(STAR_RECORDS)
    assert (m["Interaction"], m["Sequence"], m["Prediction"], m["Feasibility"]) == (75.0, 50.0, 0.0, 100.0)
    assert m["mean"] == (75.0 + 50.0 + 0.0 + 100.0) / 4 == 56.25
    assert m["all"] == 5 / 8 * 100 == 62.5  # pooled accuracy differs from the headline
    assert m["total"] == 8 and m["unanswered"] == 1


def test_star_missing_category_has_no_mean_and_bad_prefix_raises():
    m = star_accuracy(STAR_RECORDS[:6])
    assert m["Prediction"] is None and m["mean"] is None and m["all"] == pytest.approx(4 / 6 * 100)
    with pytest.raises(ValueError, match="STAR category"):
        star_accuracy([rec("Interactions_T1_1", 0, 0)])


# --------------------------------------------------------------------------- overall and bookkeeping


def test_accuracy_counts_unanswered_as_wrong():
    m = accuracy([rec("a", 0, 0), rec("b", 1, -1), rec("c", 2, 1), rec("d", 3, 3)])
    assert m == {"accuracy": 50.0, "correct": 2, "total": 4, "unanswered": 1}


@pytest.mark.parametrize(
    "records, message",
    [
        ([rec("a", 0, 0), rec("a", 0, 0)], "more than once .*dedupe"),
        ([rec("a", 0, True)], "prediction must be"),
        ([rec("a", 0, -2)], "prediction must be"),
        ([rec("a", 0, 1.0)], "prediction must be"),
        ([rec("a", -1, 0)], "answer must be"),
        ([{"question_id": "a", "prediction": 0}], "no 'answer'"),
        ([], "no records"),
    ],
)
def test_bad_records_raise(records, message):
    with pytest.raises(ValueError, match=message):
        accuracy(records)


def test_dedupe_drops_identical_repeats_and_keeps_order():
    a, b = rec("a", 0, 1), rec("b", 2, 2)
    assert dedupe([a, b, dict(a), dict(b), dict(a)]) == [a, b]


def test_dedupe_raises_when_repeats_disagree():
    with pytest.raises(ValueError, match="'a' has two different records"):
        dedupe([rec("a", 0, 1), rec("b", 0, 0), rec("a", 0, 2)])


def test_check_complete_names_missing_and_extra_ids():
    records = [rec("q1", 0, 0), rec("q2", 0, 0), rec("zz", 0, 0)]
    check_complete(records[:2], ["q2", "q1"])  # complete: no error
    with pytest.raises(ValueError) as err:
        check_complete(records, ["q1", "q2", "q3", "q4"])
    message = str(err.value)
    assert "2 expected questions have no record: 'q3', 'q4'" in message
    assert "1 records are for unknown questions: 'zz'" in message
    with pytest.raises(ValueError, match="repeat question ids .*'q1'"):
        check_complete([rec("q1", 0, 0), rec("q1", 0, 0)], ["q1"])

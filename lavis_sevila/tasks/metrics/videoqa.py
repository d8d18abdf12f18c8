"""Multiple-choice video QA metrics: overall, NExT-QA per type, STAR per category.

Input: one record per question, ``{"question_id", "prediction", "answer", "question_type", ...}``
with integer option indices (``prediction`` -1 = the model gave no answer; it counts as
wrong).  The NExT-QA numbers equal the official ``eval_mc.py`` (doc-doc/NExT-QA); the STAR
headline is the SeViLA fork's mean of the four category accuracies.  All accuracies are
percentages.  Records must be unique per question: LAVIS's distributed sampler pads the
last batch with repeats, so run :func:`dedupe` first, and :func:`check_complete` against
the annotation so a lost shard cannot shrink the denominator unnoticed.
"""
from __future__ import annotations

import numbers
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

UNANSWERED = -1

# NExT-QA question type codes; TP (previous) is folded into TN (next) in the official table.
NEXTQA_TYPES = ("CW", "CH", "TN", "TC", "TP", "DL", "DO", "DC")
NEXTQA_SUBTYPES = ("CW", "CH", "TN", "TC", "DC", "DL", "DO")  # official table order
NEXTQA_GROUPS = {"C": "Causal", "T": "Temporal", "D": "Descriptive"}
# column names the official script prints, for the same table (see nextqa_table)
NEXTQA_TABLE_NAMES = {
    "CW": "Why", "CH": "How", "TN": "Bef&Aft", "TC": "When", "DC": "Cnt", "DL": "Loc", "DO": "Other",
    "Causal": "Acc_C", "Temporal": "Acc_T", "Descriptive": "Acc_D",
}  # fmt: skip
STAR_CATEGORIES = ("Interaction", "Sequence", "Prediction", "Feasibility")

Record = Mapping[str, Any]


def few_ids(ids: Iterable[Any], n: int = 10) -> str:
    """Up to n ids for an error message, sorted, with how many more there are."""
    ids = sorted(ids, key=str)
    more = f" ... (+{len(ids) - n} more)" if len(ids) > n else ""
    return ", ".join(map(repr, ids[:n])) + more


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _checked(records: Sequence[Record]) -> list[Record]:
    """The records, after checking ids are unique and prediction/answer are option indices."""
    if len(records) == 0:
        raise ValueError("no records to evaluate")
    seen: set[Any] = set()
    for i, rec in enumerate(records):
        for key in ("question_id", "prediction", "answer"):
            if key not in rec:
                raise ValueError(f"record #{i} has no '{key}'")
        qid = rec["question_id"]
        if qid in seen:
            raise ValueError(f"question_id {qid!r} occurs more than once (run dedupe() first)")
        seen.add(qid)
        if not (_is_int(rec["answer"]) and rec["answer"] >= 0):
            raise ValueError(f"question {qid!r}: answer must be an option index >= 0, got {rec['answer']!r}")
        if not (_is_int(rec["prediction"]) and rec["prediction"] >= UNANSWERED):
            raise ValueError(
                f"question {qid!r}: prediction must be an option index or {UNANSWERED}, got {rec['prediction']!r}"
            )
    return list(records)


def _correct(rec: Record) -> bool:
    return rec["prediction"] == rec["answer"]  # -1 never equals an answer


def _percent(correct: int, total: int) -> float | None:
    """Same expression as the official scripts (correct * 100 / total); None for an empty group."""
    return correct * 100.0 / total if total else None


def accuracy(records: Sequence[Record]) -> dict[str, Any]:
    """{"accuracy": %, "correct", "total", "unanswered"}; unanswered questions count as wrong."""
    recs = _checked(records)
    correct = sum(_correct(r) for r in recs)
    unanswered = sum(r["prediction"] == UNANSWERED for r in recs)
    return {"accuracy": _percent(correct, len(recs)), "correct": correct, "total": len(recs), "unanswered": unanswered}


# --------------------------------------------------------------------------- NExT-QA


def split_nextqa_id(question_id: str) -> tuple[str, str, str]:
    """``"{type}_{video}_{qid}"`` -> (type, video, qid), the id our NExT-QA dataset gives."""
    parts = str(question_id).split("_")
    if len(parts) < 3 or parts[0] not in NEXTQA_TYPES or not parts[-1]:
        raise ValueError(f"{question_id!r} is not a NExT-QA question id '<type>_<video>_<qid>'")
    return parts[0], "_".join(parts[1:-1]), parts[-1]


def nextqa_accuracy(records: Sequence[Record]) -> dict[str, Any]:
    """Accuracy per NExT-QA sub-type, per group and overall, as the official ``eval_mc.py``.

    Keys: the sub-types CW, CH, TN (with TP), TC, DC, DL, DO; the groups Causal (CW, CH),
    Temporal (TN, TC, TP), Descriptive (DL, DO, DC); "all".  Group and overall accuracies
    pool the questions (correct / count), they are not means of sub-type accuracies.
    A group without questions gets None (the official divides by zero).  The type comes
    from each record's "question_type".  Also "total" and "unanswered" counts.
    """
    recs = _checked(records)
    correct = dict.fromkeys(NEXTQA_SUBTYPES, 0)
    count = dict.fromkeys(NEXTQA_SUBTYPES, 0)
    for rec in recs:
        qtype = rec.get("question_type")
        if qtype not in NEXTQA_TYPES:
            raise ValueError(f"question {rec['question_id']!r}: unknown NExT-QA question_type {qtype!r}")
        sub = "TN" if qtype == "TP" else qtype
        count[sub] += 1
        correct[sub] += _correct(rec)
    out: dict[str, Any] = {sub: _percent(correct[sub], count[sub]) for sub in NEXTQA_SUBTYPES}
    for letter, group in NEXTQA_GROUPS.items():
        subs = [s for s in NEXTQA_SUBTYPES if s[0] == letter]
        out[group] = _percent(sum(correct[s] for s in subs), sum(count[s] for s in subs))
    out["all"] = _percent(sum(correct.values()), len(recs))
    out["total"] = len(recs)
    out["unanswered"] = sum(r["prediction"] == UNANSWERED for r in recs)
    return out


def nextqa_table(metrics: Mapping[str, Any]) -> str:
    """The table the official script prints (tab-separated, 2 decimals), from :func:`nextqa_accuracy`."""
    keys = list(NEXTQA_TABLE_NAMES)

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    header = "\t".join(NEXTQA_TABLE_NAMES[k] for k in keys)
    values = "\t".join(fmt(metrics[k]) for k in keys)
    return f"{header}\n{values}\nAcc: {fmt(metrics['all'])}"


def nextqa_result_file(records: Sequence[Record]) -> dict[str, dict[str, int]]:
    """The official result format ``{"<video>_<qid>": {"answer": a, "prediction": p}}``.

    Question ids must be ``"{type}_{video}_{qid}"``; unanswered questions keep -1.
    """
    out: dict[str, dict[str, int]] = {}
    for rec in _checked(records):
        _, video, qid = split_nextqa_id(rec["question_id"])
        key = f"{video}_{qid}"
        if key in out:
            raise ValueError(f"two questions map to the result key {key!r}")
        out[key] = {"answer": int(rec["answer"]), "prediction": int(rec["prediction"])}
    return out


# --------------------------------------------------------------------------- STAR


def star_category(question_id: str) -> str:
    """The STAR category is the question id's prefix, e.g. "Interaction_T1_13" -> "Interaction"."""
    prefix = str(question_id).split("_")[0]
    if prefix not in STAR_CATEGORIES:
        raise ValueError(f"question id {question_id!r} does not start with a STAR category {STAR_CATEGORIES}")
    return prefix


def star_accuracy(records: Sequence[Record]) -> dict[str, Any]:
    """Accuracy per STAR category, their mean and the overall accuracy.

    "mean" (the unweighted mean of the four category accuracies) is the SeViLA fork's
    headline STAR number; "all" pools every question.  A category without questions gets
    None, and so does "mean" then (the fork reports no mean in that case).  Also "total"
    and "unanswered" counts.
    """
    recs = _checked(records)
    correct = dict.fromkeys(STAR_CATEGORIES, 0)
    count = dict.fromkeys(STAR_CATEGORIES, 0)
    for rec in recs:
        cat = star_category(rec["question_id"])
        count[cat] += 1
        correct[cat] += _correct(rec)
    out: dict[str, Any] = {cat: _percent(correct[cat], count[cat]) for cat in STAR_CATEGORIES}
    per_cat = [out[c] for c in STAR_CATEGORIES]
    out["mean"] = None if None in per_cat else sum(per_cat) / len(per_cat)
    out["all"] = _percent(sum(correct.values()), len(recs))
    out["total"] = len(recs)
    out["unanswered"] = sum(r["prediction"] == UNANSWERED for r in recs)
    return out


# --------------------------------------------------------------------------- bookkeeping


def dedupe(records: Sequence[Record]) -> list[Record]:
    """Drop repeated records of one question (distributed padding), keeping the first.

    Repeats must be identical: two different records for one question_id mean two
    questions share an id or a rank computed something else, and raise ValueError.
    """
    first: dict[Any, Record] = {}
    for i, rec in enumerate(records):
        if "question_id" not in rec:
            raise ValueError(f"record #{i} has no 'question_id'")
        qid = rec["question_id"]
        if qid not in first:
            first[qid] = rec
        elif first[qid] != rec:
            raise ValueError(f"question_id {qid!r} has two different records: {dict(first[qid])!r} vs {dict(rec)!r}")
    return list(first.values())


def check_complete(records: Sequence[Record], expected_ids: Iterable[Any]) -> None:
    """Raise ValueError unless the records hold each expected question exactly once and nothing else."""
    expected = list(expected_ids)
    expected_set = set(expected)
    if len(expected_set) != len(expected):
        raise ValueError("expected_ids contains duplicates")
    ids = []
    for i, rec in enumerate(records):
        if "question_id" not in rec:
            raise ValueError(f"record #{i} has no 'question_id'")
        ids.append(rec["question_id"])
    repeated = [q for q, n in Counter(ids).items() if n > 1]
    if repeated:
        raise ValueError(f"records repeat question ids (run dedupe() first): {few_ids(repeated)}")
    missing = expected_set - set(ids)
    extra = set(ids) - expected_set
    problems = []
    if missing:
        problems.append(f"{len(missing)} expected questions have no record: {few_ids(missing)}")
    if extra:
        problems.append(f"{len(extra)} records are for unknown questions: {few_ids(extra)}")
    if problems:
        raise ValueError("; ".join(problems))

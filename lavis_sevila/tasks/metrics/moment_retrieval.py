"""QVHighlights moment retrieval (MR) and highlight detection (HL) metrics.

These reproduce the official QVHighlights evaluation (jayleicn/moment_detr,
``standalone_eval/eval.py`` and its ``utils.py``) number for number, so results can be
compared with published ones; docs/metrics.md lists every rule and the few places where
bad input that the official would accept or crash on raises a clear error here instead.
Only numpy is used (the official needs scikit-learn for one precision-recall curve).

Run ``python -m lavis_sevila.tasks.metrics.moment_retrieval --submission X.jsonl --gt Y.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from lavis_sevila.tasks.metrics.videoqa import few_ids

logger = logging.getLogger(__name__)

# IoU thresholds 0.5:0.05:0.95, as exact 2-decimal numbers (their str() is the result key).
IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
MAX_PRED_WINDOWS = 10  # only the first 10 listed windows of a query enter MR-mAP
CLIP_SECONDS = 2  # QVHighlights saliency is annotated per 2-second clip
NUM_RATERS = 3  # three workers rate every relevant clip
# GT window length ranges (lo, hi] in seconds; "full" keeps every window unfiltered.
LENGTH_RANGES: dict[str, tuple[float, float]] = {"short": (0, 10), "middle": (10, 30), "long": (30, 150)}
SPLITS = ("full", "long", "middle", "short")
# HL: a clip is positive when its rating is >= the minimum of the level.
SALIENCY_LEVELS: tuple[tuple[str, int], ...] = (("Fair", 2), ("Good", 3), ("VeryGood", 4))

Record = Mapping[str, Any]


def percent(x: float) -> float:
    """100 * x rounded to 2 decimals the way the official rounds (formatting, half-even on the binary value)."""
    return float(format(100 * x, ".2f"))


# --------------------------------------------------------------------------- IoU


def iou_cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every window of ``a`` (N, 2) with every window of ``b`` (M, 2) -> (N, M).

    union = len(a) + len(b) - intersection; 0 where the union is empty (two zero-length
    windows), where the official would produce NaN.
    """
    inter = np.clip(np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def iou_paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]`` (N, 2) each -> (N,), with the official R1 union.

    The union is the hull ``max(end) - min(start)``: equal to the true union whenever the
    windows overlap (and the IoU is 0 otherwise); computed this way so that borderline
    values round exactly as in the official.
    """
    inter = np.maximum(0, np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]))
    hull = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])
    return np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)


# --------------------------------------------------------------------------- MR average precision


def _voc_ap(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """Area under the precision envelope (best precision at this recall or higher), VOC 2011 style.

    Row-wise over (T, P) arrays.  Recall is padded with 0 in front and 1 at the end
    (precision 0 there), so a query whose predictions never reach full recall gets nothing
    for the missing part.  Each row sums only the points where recall changes, in order,
    as the official does, so the floating-point result is the same to the last bit.
    """
    rows = len(precision)
    p = np.hstack((np.zeros((rows, 1)), precision, np.zeros((rows, 1))))
    r = np.hstack((np.zeros((rows, 1)), recall, np.ones((rows, 1))))
    p = np.maximum.accumulate(p[:, ::-1], axis=1)[:, ::-1]
    out = np.empty(rows)
    for t in range(rows):
        steps = np.flatnonzero(r[t, 1:] != r[t, :-1]) + 1
        out[t] = np.sum((r[t, steps] - r[t, steps - 1]) * p[t, steps])
    return out


def query_average_precision(
    gt_windows: np.ndarray, pred_windows: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS
) -> np.ndarray:
    """AP of one query at each IoU threshold -> (len(thresholds),).

    ``pred_windows`` is (P, 3) [start, end, score]; it is ranked by score (stable, so equal
    scores keep their listed order).  Walking down the ranking, a prediction is a true
    positive when some not-yet-matched GT window has IoU >= threshold with it; it takes the
    unmatched one with the highest IoU (IoU ties ordered as numpy's default argsort orders
    them, as the official).  Every GT window counts as a positive (recall denominator).
    """
    num_gt = len(gt_windows)
    if num_gt == 0:
        raise ValueError("a query without GT windows has no average precision")
    if len(pred_windows) == 0:
        return np.zeros(len(thresholds))
    ranked = pred_windows[np.argsort(-pred_windows[:, 2], kind="stable")]
    ious = iou_cross(ranked[:, :2], gt_windows)
    # candidate GT windows of each prediction, best IoU first
    candidates = [[(float(row[g]), int(g)) for g in np.argsort(row)[::-1]] for row in ious]
    tp = np.zeros((len(thresholds), len(ranked)))
    for t, thr in enumerate(thresholds):
        matched: set[int] = set()
        for p, cands in enumerate(candidates):
            for iou, g in cands:
                if iou < thr:
                    break
                if g not in matched:
                    matched.add(g)
                    tp[t, p] = 1
                    break
    tp_cum = np.cumsum(tp, axis=1)
    fp_cum = np.cumsum(1 - tp, axis=1)
    recall = tp_cum / float(num_gt)
    precision = tp_cum / (tp_cum + fp_cum)
    return _voc_ap(precision, recall)


# --------------------------------------------------------------------------- HL average precision


def ranking_average_precision(relevant: np.ndarray, scores: np.ndarray) -> float:
    """Interpolated AP of ranking clips by ``scores`` against binary ``relevant`` labels.

    The official's ``get_ap`` (video2gif style): precision at each distinct score threshold,
    made monotone (the best precision at this recall or higher), averaged over the thresholds
    where recall grows; tied scores form one threshold.  All-relevant gives 1, none 0.
    """
    relevant = np.asarray(relevant, dtype=float)
    if relevant.ndim != 1 or len(relevant) != len(scores):
        raise ValueError(f"{relevant.shape} labels for {np.shape(scores)} scores")
    return float(_ranking_ap_columns(relevant[:, None], np.asarray(scores, dtype=float))[0])


def _ranking_ap_columns(relevant: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """:func:`ranking_average_precision` of each column of ``relevant`` (n, C), one ranking for all."""
    if len(scores) == 0:
        raise ValueError("no clips to rank")
    order = np.argsort(scores, kind="mergesort")[::-1]
    sorted_scores = scores[order]
    last_of_tie = np.concatenate((np.flatnonzero(np.diff(sorted_scores)), [len(scores) - 1]))
    tps = np.cumsum(relevant[order], axis=0)[last_of_tie]  # (K, C) hits down to each threshold
    precision = tps / (last_of_tie + 1)[:, None]
    # from the lowest threshold (all clips retrieved) up, as scikit-learn orders its curve
    precision, tps = precision[::-1], tps[::-1]
    envelope = np.maximum.accumulate(precision, axis=0)
    recall_drops_next = tps > np.vstack((tps[1:], np.zeros((1, tps.shape[1]))))
    out = np.empty(relevant.shape[1])
    for c in range(relevant.shape[1]):
        column = relevant[:, c]
        if np.all(column == column[0]):
            out[c] = 1.0 if column[0] != 0 else 0.0
        else:
            out[c] = np.mean(envelope[recall_drops_next[:, c], c])
    return out


# --------------------------------------------------------------------------- input checking


def _by_qid(records: Sequence[Record], what: str) -> dict[Any, Record]:
    if len(records) == 0:
        raise ValueError(f"the {what} is empty")
    out: dict[Any, Record] = {}
    for i, rec in enumerate(records):
        if "qid" not in rec:
            raise ValueError(f"{what} record #{i} has no 'qid'")
        if rec["qid"] in out:
            raise ValueError(f"{what}: duplicate qid {rec['qid']!r}")
        out[rec["qid"]] = rec
    return out


def _check_same_qids(pred: Mapping[Any, Record], gt: Mapping[Any, Record]) -> None:
    missing = set(gt) - set(pred)
    unknown = set(pred) - set(gt)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"{len(missing)} ground-truth qids have no prediction: {few_ids(missing)}")
        if unknown:
            parts.append(f"{len(unknown)} predicted qids are not in the ground truth: {few_ids(unknown)}")
        raise ValueError("; ".join(parts))


def _all_or_none(records: Mapping[Any, Record], key: str) -> bool:
    having = [q for q, r in records.items() if key in r]
    if having and len(having) != len(records):
        lacking = [q for q, r in records.items() if key not in r]
        raise ValueError(f"'{key}' is given for some queries but not for {len(lacking)}: {few_ids(lacking)}")
    return bool(having)


def _windows(value: Any, qid: Any, key: str, width: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"qid {qid!r}: '{key}' is not a list of numeric windows: {err}") from None
    if arr.ndim != 2 or arr.shape[1] != width or len(arr) == 0:
        shape = "[start, end, score]" if width == 3 else "[start, end]"
        raise ValueError(f"qid {qid!r}: '{key}' must be a non-empty list of {shape}, got {value!r:.200}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"qid {qid!r}: '{key}' holds a non-finite number")
    if np.any(arr[:, 1] < arr[:, 0]):
        raise ValueError(f"qid {qid!r}: '{key}' has a window that ends before it starts")
    return arr


def _gt_saliency(gt: Record) -> np.ndarray:
    """(#clips, 3) ratings over the whole video (0 outside the relevant clips); #clips = int(duration / 2)."""
    qid = gt["qid"]
    absent = [k for k in ("duration", "relevant_clip_ids", "saliency_scores") if k not in gt]
    if absent:
        raise ValueError(f"qid {qid!r}: the ground truth lacks {absent}, needed for highlight metrics")
    num_clips = int(gt["duration"] / CLIP_SECONDS)
    if num_clips < 1:
        raise ValueError(f"qid {qid!r}: duration {gt['duration']} is shorter than one clip")
    ids = np.asarray(gt["relevant_clip_ids"], dtype=int).reshape(-1)
    ratings = np.asarray(gt["saliency_scores"], dtype=float)
    if ratings.shape != (len(ids), NUM_RATERS):
        raise ValueError(f"qid {qid!r}: saliency_scores must be {len(ids)} x {NUM_RATERS}, got {ratings.shape}")
    if len(ids) and (ids.min() < 0 or ids.max() >= num_clips):
        raise ValueError(f"qid {qid!r}: relevant_clip_ids outside 0..{num_clips - 1}")
    full = np.zeros((num_clips, NUM_RATERS))
    full[ids] = ratings
    return full


# --------------------------------------------------------------------------- metrics


def _in_range(gt_windows: np.ndarray, split: str) -> np.ndarray:
    if split == "full":
        return gt_windows
    lo, hi = LENGTH_RANGES[split]
    length = gt_windows[:, 1] - gt_windows[:, 0]
    return gt_windows[(length > lo) & (length <= hi)]


def moment_retrieval_metrics(
    preds: Mapping[Any, np.ndarray], gts: Mapping[Any, np.ndarray]
) -> dict[str, dict[str, Any]]:
    """{split: {"MR-mAP": {thr: .., "average": ..}, "MR-R1": {thr: ..}}} for the four splits.

    ``preds`` maps qid -> (P, 3) windows in ranked (listed) order, ``gts`` qid -> (M, 2).
    A split keeps the queries that have a GT window in its length range, with only those
    windows; a split with no query gets None for both metrics (the official crashes).
    """
    keys = [str(t) for t in IOU_THRESHOLDS]
    ap_cache: dict[tuple[Any, bytes], np.ndarray] = {}
    out: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        aps, hits = [], []
        for qid, pred in preds.items():
            gt = _in_range(gts[qid], split)
            if len(gt) == 0:
                continue
            cache_key = (qid, gt.tobytes())
            if cache_key not in ap_cache:
                ap_cache[cache_key] = query_average_precision(gt, pred[:MAX_PRED_WINDOWS])
            aps.append(ap_cache[cache_key])
            top1 = pred[:1, :2]  # the first listed window, whatever its score
            best_gt = gt[np.argmax(iou_cross(top1, gt)[0])]
            hits.append(iou_paired(top1, best_gt[None])[0])
        if not aps:
            out[split] = {"MR-mAP": None, "MR-R1": None}
            continue
        per_thr = np.array(aps).mean(0)
        mr_map = {k: percent(v) for k, v in zip(keys, per_thr)}
        mr_map["average"] = percent(np.mean(per_thr))
        ious = np.array(hits)
        r1 = {k: percent(np.mean(ious >= t)) for k, t in zip(keys, IOU_THRESHOLDS)}
        out[split] = {"MR-mAP": mr_map, "MR-R1": r1}
    return out


def highlight_metrics(
    saliency: Mapping[Any, np.ndarray], gt_ratings: Mapping[Any, np.ndarray]
) -> dict[str, dict[str, float]]:
    """{"HL-min-<level>": {"HL-mAP": .., "HL-Hit1": ..}} for Fair (>= 2), Good (>= 3), VeryGood (4).

    Predicted clip scores longer than the video's clip count are cut, shorter ones padded
    with 0 (as the official; its own sample predictions rely on it).  Hit1: the top-scored
    clip (first on ties) is a hit if any rater rates it at least the level.  mAP: the
    ranking AP per query and rater, averaged over all of them.
    """
    qids = list(saliency)
    levels = [m for _, m in SALIENCY_LEVELS]
    hit = np.zeros((len(qids), len(levels)))
    ap = np.zeros((len(levels), len(qids), NUM_RATERS))
    for i, qid in enumerate(qids):
        ratings, scores = gt_ratings[qid], saliency[qid]
        positive = np.stack([(ratings >= m).astype(float) for m in levels])  # (L, clips, raters)
        top = int(np.argmax(scores))
        if top < len(ratings):
            hit[i] = positive[:, top].max(axis=1)
        fitted = np.zeros(len(ratings))
        n = min(len(scores), len(ratings))
        fitted[:n] = scores[:n]
        columns = positive.transpose(1, 0, 2).reshape(len(ratings), -1)  # (clips, L * raters)
        ap[:, i] = _ranking_ap_columns(columns, fitted).reshape(len(levels), NUM_RATERS)
    return {
        f"HL-min-{name}": {"HL-mAP": percent(np.mean(ap[k])), "HL-Hit1": percent(np.mean(hit[:, k]))}
        for k, (name, _) in enumerate(SALIENCY_LEVELS)
    }


def evaluate_submission(submission: Sequence[Record], ground_truth: Sequence[Record]) -> dict[str, Any]:
    """QVHighlights metrics of a submission, in the official result layout.

    ``{"brief": {...}, "HL-min-Fair": .., "HL-min-Good": .., "HL-min-VeryGood": ..,
    "full": .., "long": .., "middle": .., "short": ..}``.  MR metrics need
    ``pred_relevant_windows`` ([[start, end, score], ...], best first) and HL metrics
    ``pred_saliency_scores`` (one score per 2-second clip); a submission without saliency
    scores (SeViLA predicts windows only) gets MR metrics only and no HL-* keys.
    Every ground-truth qid needs exactly one prediction and vice versa, or ValueError.
    """
    pred = _by_qid(submission, "submission")
    gt = _by_qid(ground_truth, "ground truth")
    _check_same_qids(pred, gt)
    has_mr = _all_or_none(pred, "pred_relevant_windows")
    has_hl = _all_or_none(pred, "pred_saliency_scores")
    if not (has_mr or has_hl):
        raise ValueError("the submission has neither 'pred_relevant_windows' nor 'pred_saliency_scores'")

    metrics: dict[str, Any] = {}
    brief: dict[str, Any] = {}
    if has_mr:
        windows = {q: _windows(r["pred_relevant_windows"], q, "pred_relevant_windows", 3) for q, r in pred.items()}
        gt_windows = {}
        for q in pred:
            if "relevant_windows" not in gt[q]:
                raise ValueError(f"qid {q!r}: the ground truth has no 'relevant_windows' (a test split?)")
            gt_windows[q] = _windows(gt[q]["relevant_windows"], q, "relevant_windows", 2)
        mr = moment_retrieval_metrics(windows, gt_windows)
        metrics.update(mr)

        def pick(split: str, metric: str, key: str) -> Any:
            return None if mr[split][metric] is None else mr[split][metric][key]

        mr_brief = {
            "MR-full-mAP": pick("full", "MR-mAP", "average"),
            "MR-full-mAP@0.5": pick("full", "MR-mAP", "0.5"),
            "MR-full-mAP@0.75": pick("full", "MR-mAP", "0.75"),
            "MR-short-mAP": pick("short", "MR-mAP", "average"),
            "MR-middle-mAP": pick("middle", "MR-mAP", "average"),
            "MR-long-mAP": pick("long", "MR-mAP", "average"),
            "MR-full-R1@0.5": pick("full", "MR-R1", "0.5"),
            "MR-full-R1@0.7": pick("full", "MR-R1", "0.7"),
        }
        brief.update(sorted(mr_brief.items()))
    if has_hl:
        saliency = {}
        for q, r in pred.items():
            scores = np.asarray(r["pred_saliency_scores"], dtype=float).reshape(-1)
            if len(scores) == 0 or not np.all(np.isfinite(scores)):
                raise ValueError(f"qid {q!r}: 'pred_saliency_scores' must be a non-empty list of finite numbers")
            saliency[q] = scores
        hl = highlight_metrics(saliency, {q: _gt_saliency(gt[q]) for q in pred})
        metrics.update(hl)
        for level, values in hl.items():
            brief[f"{level}-mAP"] = values["HL-mAP"]
            brief[f"{level}-Hit1"] = values["HL-Hit1"]
    else:
        logger.info("no 'pred_saliency_scores' in the submission: highlight (HL-*) metrics omitted")
    return {"brief": brief, **dict(sorted(metrics.items()))}


# --------------------------------------------------------------------------- command line


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """One JSON object per non-blank line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not valid JSON: {err}") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lavis_sevila.tasks.metrics.moment_retrieval",
        description="QVHighlights moment retrieval / highlight detection metrics (official definitions).",
    )
    parser.add_argument("--submission", required=True, help="predictions, one JSON object per line")
    parser.add_argument("--gt", required=True, help="ground truth, e.g. highlight_val_release.jsonl")
    parser.add_argument("--out", help="also write the metrics to this JSON file")
    args = parser.parse_args(argv)
    submission = load_jsonl(args.submission)
    metrics = evaluate_submission(submission, load_jsonl(args.gt))
    if not any(k.startswith("HL-") for k in metrics):
        print("note: the submission has no pred_saliency_scores; highlight (HL-*) metrics omitted", file=sys.stderr)
    text = json.dumps(metrics, indent=4)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")  # byte-identical to the official's file
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""QVHighlights metrics: the official golden file, hand-computed cases, bad input, the CLI."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from lavis_sevila.tasks.metrics.moment_retrieval import (
    IOU_THRESHOLDS,
    evaluate_submission,
    load_jsonl,
    main,
    query_average_precision,
    ranking_average_precision,
)

THR_KEYS = ["0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"]


# --------------------------------------------------------------------------- golden check


@pytest.fixture(scope="module")
def qvh_golden(reference_dir):
    folder = reference_dir / "qvhighlights"
    names = ("sample_val_preds.jsonl", "highlight_val_release.jsonl", "sample_val_preds_metrics_raw.json")
    absent = [n for n in names if not (folder / n).is_file()]
    if absent:
        pytest.skip(f"QVHighlights golden files absent from {folder}: {absent}")
    submission = load_jsonl(folder / names[0])
    gt = load_jsonl(folder / names[1])
    expected_text = (folder / names[2]).read_text()
    return submission, gt, expected_text


def test_golden_sample_predictions_reproduce_official_metrics(qvh_golden):
    submission, gt, expected_text = qvh_golden
    metrics = evaluate_submission(submission, gt)
    expected = json.loads(expected_text)
    assert metrics == expected
    # same layout and key order too: the official writes json.dumps(..., indent=4)
    assert json.dumps(metrics, indent=4) == expected_text.strip()


def test_golden_without_saliency_gives_the_same_mr_metrics_and_no_hl(qvh_golden):
    submission, gt, expected_text = qvh_golden
    windows_only = [{k: v for k, v in d.items() if k != "pred_saliency_scores"} for d in submission]
    metrics = evaluate_submission(windows_only, gt)
    expected = json.loads(expected_text)
    assert not any(k.startswith("HL") for k in metrics)
    assert not any(k.startswith("HL") for k in metrics["brief"])
    assert metrics["brief"] == {k: v for k, v in expected["brief"].items() if k.startswith("MR")}
    for split in ("full", "long", "middle", "short"):
        assert metrics[split] == expected[split]


# --------------------------------------------------------------------------- hand-computed MR


def ap(gt, pred):
    return query_average_precision(np.array(gt, float), np.array(pred, float))


def test_thresholds_are_the_official_keys():
    assert [str(t) for t in IOU_THRESHOLDS] == THR_KEYS


def test_ap_perfect_and_false_positive_first():
    assert ap([[0, 10]], [[0, 10, 0.9]]).tolist() == [1.0] * 10
    # ranked: miss (P=0), then hit (P=1/2, R=1) -> envelope 0.5 over recall 0..1
    assert ap([[0, 10]], [[20, 30, 0.9], [0, 10, 0.5]]).tolist() == [0.5] * 10


def test_ap_duplicate_hit_on_one_gt_is_a_false_positive():
    # two GT windows; ranked: hit g0, hit g0 again (already matched -> FP), hit g1
    # precision 1, 1/2, 2/3 ; recall 1/2, 1/2, 1 -> 1/2 * 1 + 1/2 * 2/3 = 5/6
    got = ap([[0, 10], [20, 30]], [[0, 10, 0.9], [0, 10, 0.8], [20, 30, 0.7]])
    np.testing.assert_allclose(got, 5 / 6, rtol=0, atol=1e-15)


def test_ap_iou_threshold_is_inclusive():
    # IoU([0,7], [0,10]) = 0.7 -> true positive at 0.5 .. 0.7, false positive above
    assert ap([[0, 10]], [[0, 7, 1.0]]).tolist() == [1.0] * 5 + [0.0] * 5


def test_ap_ranks_by_score_not_by_listed_order():
    assert ap([[0, 10]], [[20, 30, 0.1], [0, 10, 0.9]]).tolist() == [1.0] * 10


def gt_rec(qid, windows, duration=150):
    return {"qid": qid, "duration": duration, "relevant_windows": windows}


def pred_rec(qid, windows):
    return {"qid": qid, "pred_relevant_windows": windows}


def test_r1_uses_first_listed_window_while_map_uses_scores():
    gt = [gt_rec(1, [[0, 10]])]
    m = evaluate_submission([pred_rec(1, [[20, 30, 0.1], [0, 10, 0.9]])], gt)
    assert m["full"]["MR-mAP"]["average"] == 100.0
    assert m["full"]["MR-R1"] == dict.fromkeys(THR_KEYS, 0.0)


def test_only_first_ten_listed_windows_enter_map():
    listed = [[50 + i, 51 + i, 0.5] for i in range(10)] + [[0, 10, 0.99]]
    m = evaluate_submission([pred_rec(1, listed)], [gt_rec(1, [[0, 10]])])
    assert m["full"]["MR-mAP"]["average"] == 0.0


def test_r1_takes_the_best_matching_gt_window():
    # top-1 [20, 30] overlaps the second GT window fully
    m = evaluate_submission([pred_rec(1, [[20, 30, 1.0]])], [gt_rec(1, [[0, 10], [20, 30]])])
    assert m["full"]["MR-R1"]["0.95"] == 100.0
    # mAP: one of two GT windows found -> AP = 1/2 at every threshold
    assert m["full"]["MR-mAP"]["average"] == 50.0


def test_length_splits_filter_gt_windows_and_queries():
    gt = [
        gt_rec(1, [[0, 4]]),  # short (0, 10]
        gt_rec(2, [[0, 10], [20, 40]]),  # one short (exactly 10) and one middle window
        gt_rec(3, [[0, 60]]),  # long
    ]
    sub = [
        pred_rec(1, [[0, 4, 1.0]]),
        pred_rec(2, [[20, 40, 1.0]]),
        pred_rec(3, [[100, 120, 1.0]]),
    ]
    m = evaluate_submission(sub, gt)
    # short: q1 (AP 1, R1 hit) and q2 with only [0, 10] (miss) -> 50
    assert m["short"]["MR-mAP"]["average"] == 50.0
    assert m["short"]["MR-R1"]["0.5"] == 50.0
    # middle: q2 with only [20, 40] -> found
    assert m["middle"]["MR-mAP"]["average"] == 100.0
    assert m["middle"]["MR-R1"]["0.95"] == 100.0
    # long: q3 missed
    assert m["long"]["MR-mAP"]["average"] == 0.0
    # full: q1 AP 1, q2 AP 1/2 (one of two windows), q3 AP 0 -> 50 ; R1 2 of 3
    assert m["full"]["MR-mAP"]["average"] == 50.0
    assert m["full"]["MR-R1"]["0.5"] == 66.67
    assert m["brief"]["MR-long-mAP"] == 0.0 and m["brief"]["MR-middle-mAP"] == 100.0


def test_empty_split_reports_none():
    m = evaluate_submission([pred_rec(1, [[0, 60, 1.0]])], [gt_rec(1, [[0, 60]])])
    assert m["short"] == {"MR-mAP": None, "MR-R1": None}
    assert m["brief"]["MR-short-mAP"] is None
    assert m["brief"]["MR-long-mAP"] == 100.0


def test_result_layout_matches_official_order():
    m = evaluate_submission([pred_rec(1, [[0, 60, 1.0]])], [gt_rec(1, [[0, 60]])])
    assert list(m) == ["brief", "full", "long", "middle", "short"]
    assert list(m["brief"]) == sorted(m["brief"])
    assert list(m["full"]["MR-mAP"]) == THR_KEYS + ["average"]


# --------------------------------------------------------------------------- hand-computed HL


def test_ranking_ap_hand_cases():
    assert ranking_average_precision(np.array([0.0, 1, 1, 0]), np.array([0.1, 0.9, 0.5, 0.2])) == 1.0
    # the one positive ranked second -> precision 1/2
    assert ranking_average_precision(np.array([0.0, 0, 1, 0]), np.array([0.1, 0.9, 0.5, 0.2])) == 0.5
    # positives ranked 1st and 3rd -> (1 + 2/3) / 2
    got = ranking_average_precision(np.array([1.0, 0, 1]), np.array([0.9, 0.5, 0.1]))
    assert got == pytest.approx(5 / 6, abs=1e-15)
    # a tie is one threshold: both clips retrieved together -> precision 1/2
    assert ranking_average_precision(np.array([1.0, 0]), np.array([0.5, 0.5])) == 0.5
    # degenerate labels, as the official: all positive 1, none 0
    assert ranking_average_precision(np.ones(3), np.array([0.1, 0.2, 0.3])) == 1.0
    assert ranking_average_precision(np.zeros(3), np.array([0.1, 0.2, 0.3])) == 0.0


def hl_gt(qid, duration, clip_ids, ratings):
    return {
        "qid": qid,
        "duration": duration,
        "relevant_windows": [[0, 2]],
        "relevant_clip_ids": clip_ids,
        "saliency_scores": ratings,
    }


def test_highlight_metrics_hand_computed():
    gt = [
        # 4 clips; clip 1 rated (4, 2, 0), clip 2 rated (2, 2, 2)
        hl_gt(1, 8, [1, 2], [[4, 2, 0], [2, 2, 2]]),
        # 3 clips (int(7 / 2)); clip 0 rated (1, 1, 1)
        hl_gt(2, 7, [0], [[1, 1, 1]]),
    ]
    sub = [
        {"qid": 1, "pred_saliency_scores": [0.1, 0.9, 0.5, 0.2]},
        # shorter than the video: padded with 0; top clip 1 is unrated
        {"qid": 2, "pred_saliency_scores": [0.3, 0.8]},
    ]
    m = evaluate_submission(sub, gt)
    assert "full" not in m  # no windows submitted -> no MR metrics
    # Fair (>= 2): q1 raters AP 1, 1, 1/2; q2 no positive clip -> 0, 0, 0 -> 2.5 / 6
    assert m["HL-min-Fair"] == {"HL-mAP": 41.67, "HL-Hit1": 50.0}
    # Good (>= 3): q1 rater 0 only (clip 1 top) -> 1, 0, 0 ; q2 0 -> 1 / 6
    assert m["HL-min-Good"] == {"HL-mAP": 16.67, "HL-Hit1": 50.0}
    assert m["HL-min-VeryGood"] == {"HL-mAP": 16.67, "HL-Hit1": 50.0}
    assert list(m["brief"]) == [
        "HL-min-Fair-mAP", "HL-min-Fair-Hit1", "HL-min-Good-mAP",
        "HL-min-Good-Hit1", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1",
    ]  # fmt: skip


def test_highlight_top_clip_beyond_the_video_is_a_miss():
    gt = [hl_gt(1, 4, [0, 1], [[4, 4, 4], [4, 4, 4]])]  # 2 clips, both very good
    m = evaluate_submission([{"qid": 1, "pred_saliency_scores": [0.1, 0.2, 0.9]}], gt)
    assert m["HL-min-Fair"]["HL-Hit1"] == 0.0
    assert m["HL-min-Fair"]["HL-mAP"] == 100.0  # the extra score is cut for the ranking


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "submission, gt, message",
    [
        ([pred_rec(1, [[0, 1, 1]])], [gt_rec(1, [[0, 1]]), gt_rec(2, [[0, 1]])], "have no prediction: 2"),
        ([pred_rec(1, [[0, 1, 1]]), pred_rec(3, [[0, 1, 1]])], [gt_rec(1, [[0, 1]])], "not in the ground truth: 3"),
        ([pred_rec(1, [[0, 1, 1]]), pred_rec(1, [[0, 1, 1]])], [gt_rec(1, [[0, 1]])], "duplicate qid 1"),
        ([pred_rec(1, [[0, 1, 1]])], [gt_rec(1, [[0, 1]]), gt_rec(1, [[0, 1]])], "duplicate qid 1"),
        ([pred_rec(1, [])], [gt_rec(1, [[0, 1]])], "non-empty list"),
        ([pred_rec(1, [[0, 1]])], [gt_rec(1, [[0, 1]])], r"\[start, end, score\]"),
        ([pred_rec(1, [[5, 1, 1]])], [gt_rec(1, [[0, 1]])], "ends before it starts"),
        ([pred_rec(1, [[0, 1, 1]])], [{"qid": 1, "duration": 150}], "no 'relevant_windows'"),
        ([{"qid": 1}], [gt_rec(1, [[0, 1]])], "neither"),
        ([{"qid": 1, "pred_saliency_scores": [1.0]}], [gt_rec(1, [[0, 1]])], "lacks .*relevant_clip_ids"),
        ([{"qid": 1, "pred_saliency_scores": []}], [hl_gt(1, 4, [0], [[1, 1, 1]])], "non-empty list of finite"),
        ([], [gt_rec(1, [[0, 1]])], "empty"),
        (
            [pred_rec(1, [[0, 1, 1]]), {**pred_rec(2, [[0, 1, 1]]), "pred_saliency_scores": [1.0]}],
            [gt_rec(1, [[0, 1]]), gt_rec(2, [[0, 1]])],
            "'pred_saliency_scores' is given for some queries but not for 1",
        ),
    ],
)
def test_bad_input_raises_clearly(submission, gt, message):
    with pytest.raises(ValueError, match=message):
        evaluate_submission(submission, gt)


# --------------------------------------------------------------------------- CLI


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_cli_writes_metrics_and_says_hl_is_omitted(tmp_path, capsys):
    sub = write_jsonl(tmp_path / "sub.jsonl", [pred_rec(1, [[0, 10, 0.9]]), pred_rec(2, [[0, 10, 0.9]])])
    gt = write_jsonl(tmp_path / "gt.jsonl", [gt_rec(1, [[0, 10]]), gt_rec(2, [[40, 50]])])
    out = tmp_path / "metrics.json"
    assert main(["--submission", sub, "--gt", gt, "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written == evaluate_submission(load_jsonl(sub), load_jsonl(gt))
    assert written["brief"]["MR-full-R1@0.5"] == 50.0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == written
    assert "HL-*" in captured.err and "omitted" in captured.err


# --------------------------------------------------------------------------- package


def test_package_exports_load_lazily():
    import lavis_sevila.tasks.metrics as metrics

    assert metrics.evaluate_submission is evaluate_submission
    assert callable(metrics.star_accuracy) and callable(metrics.frames_to_windows)
    with pytest.raises(AttributeError):
        metrics.no_such_metric


ALLOWED_IMPORTS = {
    "__future__", "argparse", "collections", "importlib", "json", "logging", "math", "numbers",
    "pathlib", "sys", "typing", "numpy",
}  # fmt: skip


def test_metric_modules_import_only_numpy_and_the_standard_library():
    import lavis_sevila.tasks.metrics as metrics

    folder = Path(metrics.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                ok = (name.split(".")[0] in ALLOWED_IMPORTS or name.startswith("lavis_sevila.tasks.metrics")
                      or name == "lavis_sevila._lazy")  # the package's lazy exports: standard library only
                assert ok, f"{path.name} imports {name}"

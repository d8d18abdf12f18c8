"""VLEP and QVHighlights converters on the official files, and broken lines."""
from __future__ import annotations

import json
from collections import Counter

from dataset_builders import qvh, vlep
from converter_helpers import convert, convert_rows
from lavis_sevila.data.schema import read_annotations


def test_vlep_dev(tmp_path, reference_dir):
    code, out = convert(vlep.CLI, tmp_path, reference_dir / "vlep/vlep_dev_release.jsonl")
    assert code == 0
    records = read_annotations(out)
    assert len(records) == 4392
    first = records[0]
    assert (first.qid, first.kind, first.video, first.start, first.end, first.answer) == (
        "VLEP_20142", "next_event", "friends_s03e09_seg02_clip_07", 38.81, 40.37, 0)
    assert first.options == ["Ross will stop, turn and point at Monica.",
                             "Ross will stop and ask Monica why she is pointing at him."]
    assert first.extra == {"vid_name": "friends_s03e09_seg02_clip_07_ep", "source": "tv", "split": "dev"}
    assert Counter(r.extra["source"] for r in records) == {"tv": 3338, "youtube": 1054}
    youtube = next(r for r in records if r.extra["source"] == "youtube")
    assert youtube.video == youtube.extra["vid_name"] and youtube.video.endswith("_ep")


def test_vlep_broken_lines(tmp_path, capsys):
    good = {"example_id": 1, "vid_name": "castle_s01e01_seg02_clip_00_ep", "ts": [1.0, 2.0],
            "events": ["a", "b"], "answer": 1, "split": "dev"}
    rows = [good, {**good, "example_id": 2, "events": ["a", "b", "c"]}, {**good, "example_id": 3, "vid_name": "castle_clip"},
            {**good, "example_id": 4, "ts": [2.0]}, {**good, "example_id": 5, "answer": 2}]
    code, source = convert_rows(vlep.CLI, tmp_path, rows, "vlep.jsonl")
    err = capsys.readouterr().err
    assert code == 1
    assert f"{source}:2: events (options): vlep needs 2 options, got 3" in err
    assert f"{source}:3: vid_name: 'castle_clip': a TV-show clip name must end with '_ep'" in err
    assert f"{source}:4: ts: expected [start, end]" in err
    assert f"{source}:5: answer: answer 2 is outside 0..1" in err


def test_qvh_all_splits(tmp_path, reference_dir):
    counts = {}
    for split in ("train", "val", "test"):
        code, out = convert(qvh.CLI, tmp_path, reference_dir / f"qvhighlights/highlight_{split}_release.jsonl")
        assert code == 0
        records = read_annotations(out)
        counts[split] = len(records)
        assert all(r.kind == "moment" and r.duration is not None for r in records)
        assert all((r.relevant_windows is None) == (split == "test") for r in records)
    assert counts == {"train": 7218, "val": 1550, "test": 1542}
    first = read_annotations(out)[0]  # test split, line 1
    assert (first.qid, first.video, first.question, first.duration) == (
        "QVHighlight_3158", "_6hnl_BrFvs_360.0_510.0", "A video covering hill and water from a boat", 150.0)


def test_qvh_keeps_windows_and_highlight_scores(tmp_path, reference_dir):
    code, out = convert(qvh.CLI, tmp_path, reference_dir / "qvhighlights/highlight_val_release.jsonl")
    raw = json.loads((reference_dir / "qvhighlights/highlight_val_release.jsonl").open().readline())
    first = read_annotations(out)[0]
    assert first.relevant_windows == [[float(s), float(e)] for s, e in raw["relevant_windows"]]
    assert first.extra == {"qid": raw["qid"], "relevant_clip_ids": raw["relevant_clip_ids"],
                           "saliency_scores": raw["saliency_scores"]}


def test_qvh_broken_lines(tmp_path, capsys):
    good = {"qid": 1, "query": "a dog runs", "duration": 150, "vid": "x_0.0_150.0", "relevant_windows": [[0, 2]]}
    rows = [good, {**good, "qid": 2, "relevant_windows": [[10, 160]]}, {**good, "qid": 3, "relevant_windows": [[4, 2]]},
            {**good, "qid": 4, "query": ""}, {**good, "qid": 5, "relevant_windows": [[0, "2"]]}]
    code, source = convert_rows(qvh.CLI, tmp_path, rows, "qvh.jsonl")
    err = capsys.readouterr().err
    assert code == 1
    assert f"{source}:2: relevant_windows: window 0 [10.0, 160.0] ends after the duration 150.0 s" in err
    assert f"{source}:3: relevant_windows: window 0 [4.0, 2.0] needs 0 <= start < end" in err
    assert f"{source}:4: query: is empty" in err
    assert f"{source}:5: relevant_windows[0][1]: expected a finite number of seconds" in err

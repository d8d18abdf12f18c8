"""NExT-QA converter: on the official val.csv, and on broken rows made here."""
from __future__ import annotations

import json
from collections import Counter

from dataset_builders.nextqa import CLI
from lavis_sevila.data.schema import Annotation, read_annotations

HEADER = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"


def convert(tmp_path, csv_path, video_map, *extra):
    out = tmp_path / "out.jsonl"
    code = CLI.main(["--input", str(csv_path), "--video-map", str(video_map), "--output", str(out), *extra])
    return code, out


def test_official_val_converts_with_the_authors_texts(tmp_path, reference_dir):
    code, out = convert(tmp_path, reference_dir / "nextqa/val.csv", reference_dir / "nextqa/map_vid_vidorID.json")
    assert code == 0
    records = read_annotations(out)
    assert len(records) == 4996
    first = records[0]
    # val.csv line 2: 4010069381,369,640,480,how do the two man play the instrument,0,6,CH,roll the handle,...
    assert first == Annotation(
        schema_version=1, dataset="nextqa", kind="multiple_choice", qid="CH_4010069381_6", video="1106/4010069381",
        question="how do the two man play the instrument?",
        options=["roll the handle.", "tap their feet.", "strum the string.", "hit with sticks.", "pat with hand."],
        answer=0, qtype="CH",
        extra={"video_id": "4010069381", "qid": 6, "frame_count": 369, "width": 640, "height": 480},
    )
    assert Counter(r.qtype for r in records) == {"CW": 1924, "TN": 895, "CH": 683, "TC": 663, "DO": 305,
                                                  "DL": 295, "DC": 177, "TP": 54}
    assert all(len(r.options) == 5 and r.answer is not None and r.start is None for r in records)
    # texts are appended to as released, never stripped: a0 "catching toy " -> "catching toy ."
    assert any("catching toy ." in r.options for r in records)


def test_broken_rows_are_reported_with_line_and_column(tmp_path, capsys):
    video_map = tmp_path / "map.json"
    video_map.write_text(json.dumps({"11": "0001/11", "12": "0001/12"}))
    table = tmp_path / "val.csv"
    table.write_text(HEADER
                     + "11,100,640,480,what is it,1,0,DO,a,b,c,d,e\n"
                     + "99,100,640,480,what is it,1,0,DO,a,b,c,d,e\n"     # line 3: unmapped video
                     + "12,100,640,480,what is it,5,1,DO,a,b,c,d,e\n"     # line 4: answer 5
                     + "12,100,640,480,what is it,1,2,XX,a,b,c,d,e\n"     # line 5: unknown type
                     + "12,100,640,480,what is it,1,3,DO,a,b,,d,e\n"      # line 6: empty a2
                     + "12,100,640,480,what is it,x,4,DO,a,b,c,d,e\n")    # line 7: answer not a number
    code, out = convert(tmp_path, table, video_map)
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert f"{table}:3: video: video id 99 is not in map.json" in err
    assert f"{table}:4: answer: answer 5 is outside 0..4" in err
    assert f"{table}:5: type (qtype): unknown nextqa question type 'XX'" in err
    assert f"{table}:6: a2: is empty" in err
    assert f"{table}:7: answer: expected an integer, got 'x'" in err
    code, out = convert(tmp_path, table, video_map, "--skip-invalid")
    assert code == 0 and [r.qid for r in read_annotations(out)] == ["DO_11_0"]


def test_a_csv_without_answers_gives_unanswered_records(tmp_path):
    video_map = tmp_path / "map.json"
    video_map.write_text(json.dumps({"11": "0001/11"}))
    table = tmp_path / "test.csv"
    table.write_text("video,question,qid,type,a0,a1,a2,a3,a4\n11,what,0,TC,a,b,c,d,e\n")
    code, out = convert(tmp_path, table, video_map)
    assert code == 0
    (record,) = read_annotations(out)
    assert record.answer is None and record.extra == {"video_id": "11", "qid": 0}


def test_a_non_utf8_row_is_named_and_the_other_rows_are_converted(tmp_path, capsys):
    from dataset_builders.common import read_csv

    table = tmp_path / "val.csv"
    table.write_bytes(b"video,qid,question\n1,0,what?\n2,1,caf\xe9?\n3,2,why?\n")
    sources = read_csv(table, ["video", "qid", "question"])
    assert [s.location for s in sources] == [f"{table}:2", f"{table}:3", f"{table}:4"]
    assert sources[1].problem is not None and "not UTF-8" in sources[1].problem.message
    assert sources[0].data["question"] == "what?" and sources[2].data["question"] == "why?"

"""The pipeline runner and the demo's table/plot, end to end with 2 steps per stage.

The full demo (minutes) is `python -m lavis_sevila.demo`; test_demo_full runs it (slow).
"""
import json

import pytest

from lavis_sevila import demo
from lavis_sevila.pipeline import Pipeline


def test_demo_pipeline_runs_every_step_and_prints_the_table(tmp_path, capsys):
    summary = demo.main(["--output", str(tmp_path), "--options", "run.max_steps=2"])
    printed = capsys.readouterr().out
    for _, label in demo.QA_ROWS:
        assert label in printed
    assert "refined localizer vs uniform" in printed and (tmp_path / "localizer_scores.png").stat().st_size > 10_000
    runs = tmp_path / "runs"
    for step in ("pretrain_localizer", "finetune_answerer", "refine_localizer"):
        assert json.loads((runs / step / "log.jsonl").read_text().splitlines()[-1])["iteration"] == 2
    # every row read the checkpoints it was wired to
    refined = (runs / "eval_refined_localizer" / "config.yaml").read_text()
    for step in ("pretrain_localizer", "finetune_answerer", "refine_localizer"):
        assert f"{step}/checkpoint_final.pth" in refined
    assert set(summary["accuracy"]) == {step for step, _ in demo.QA_ROWS}


def test_pipeline_rejects_inputs_from_later_steps(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text(
        "pipeline:\n  output_dir: out\n  steps:\n"
        "    - {name: a, cfg: x.yaml, inputs: [b]}\n    - {name: b, cfg: y.yaml}\n"
    )
    with pytest.raises(ValueError, match="runs later"):
        Pipeline.load(str(bad))


@pytest.mark.slow
def test_demo_full_meets_its_target(tmp_path):
    summary = demo.main(["--output", str(tmp_path)])
    acc = summary["accuracy"]
    assert acc["eval_refined_localizer"] - acc["eval_uniform"] >= demo.TARGET_GAIN

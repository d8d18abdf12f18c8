"""python -m lavis_sevila.answer: offline on a video drawn here, through the model's public API."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from conftest import build_tiny
from lavis_sevila import answer as cli
from lavis_sevila.video import frame_indices
from webdemo_helpers import CHOICES, QUESTION, flash_video


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return flash_video(tmp_path_factory.mktemp("cli") / "flash.mp4")  # 40 frames at 8 fps


def test_prints_answer_probabilities_and_keyframe_times_and_writes_the_sheet(video, tmp_path, capsys):
    result = cli.main([str(video), "--question", QUESTION, "--choices", *CHOICES, "--frames", "16", "--keyframes", "3",
                       "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    # the same answer as the public API on the same file, with the same seeded tiny model
    expected = build_tiny(seed=0).answer(str(video), QUESTION, CHOICES, num_keyframes=3, num_frames=16)
    assert result.answer_index == expected.index and result.keyframes == expected.keyframes
    assert np.allclose(result.probabilities, expected.probabilities, atol=1e-6)
    assert np.allclose(result.frame_scores, expected.frame_scores, atol=1e-5)

    letter = "ABC"[expected.index]
    assert re.search(rf"^answer: {letter}\) {CHOICES[expected.index]}  \(p = {expected.probabilities[expected.index]:.3f}\)$", out, re.M)
    printed = {m[0]: float(m[2]) for m in re.findall(r"^  ([ABC])\) (\S+)\s+([0-9.]+)", out, re.M)}
    assert printed == pytest.approx({"ABC"[j]: round(p, 3) for j, p in enumerate(expected.probabilities)}, abs=1e-9)
    # keyframe timestamps are the sampled frames' video times: index / fps
    indices = frame_indices(40, 8.0, 16)
    times = [float(t) for t in re.findall(r"^\s+([0-9.]+) s  sampled frame #\d+", out, re.M)]
    assert times == pytest.approx([round(indices[k] / 8.0, 2) for k in expected.keyframes], abs=1e-9)
    assert len(times) == 3 and result.keyframe_times == pytest.approx([indices[k] / 8.0 for k in expected.keyframes])
    assert result.frame_indices == indices.tolist()

    sheet = tmp_path / "out" / "flash_sevila.png"
    assert f"contact sheet: {sheet}" in out
    assert Image.open(sheet).format == "PNG"
    assert "random initialisation" in out  # the tiny model's answer is labelled for what it is


def test_json_output_and_a_loaded_checkpoint(video, tmp_path, capsys):
    import torch

    from lavis_sevila.models.checkpoint import file_state

    donor = build_tiny(seed=7)
    state = {k: v for k, v in file_state(donor).items() if k.startswith("Qformer_loc.")}
    torch.save({"model": state}, tmp_path / "loc.pth")
    cli.main([str(video), "--question", QUESTION, "--choices", *CHOICES, "--frames", "8", "--json",
              "--checkpoint", str(tmp_path / "loc.pth"), "--out", str(tmp_path)])
    data = json.loads(capsys.readouterr().out)
    assert data["answer"] == CHOICES[data["answer_index"]] and len(data["probabilities"]) == 3
    assert len(data["keyframes"]) == 4 and len(data["frame_times"]) == 8
    assert data["weights"].startswith(f"Qformer_loc <- {tmp_path / 'loc.pth'}; random: ")
    assert "Qformer," in data["weights"] and data["contact_sheet"].endswith("flash_sevila.png")
    assert "visual_encoder" in data["random_groups"] and "Qformer_loc" not in data["random_groups"]
    # the loaded localizer is the donor's: its scores differ from the seed-0 model's
    base = build_tiny(seed=0).score_frames(str(video), QUESTION, CHOICES, num_frames=8)
    assert not np.allclose(data["frame_scores"], base.tolist(), atol=1e-4)


def test_a_checkpoint_with_wrong_shapes_is_refused(video, tmp_path):
    import torch

    from lavis_sevila.models.checkpoint import CheckpointError

    torch.save({"model": {"t5_proj.weight": torch.zeros(3, 3)}}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="t5_proj"):
        cli.main([str(video), "--question", QUESTION, "--choices", *CHOICES, "--checkpoint", str(tmp_path / "bad.pth"),
                  "--out", str(tmp_path)])


@pytest.mark.parametrize("extra, message", [
    (["--choices", "only one"], "2 to 5 non-empty choices"),
    (["--choices", *CHOICES, "--frames", "4", "--keyframes", "5"], "keyframes must be between 1 and"),
    (["--question", " ", "--choices", *CHOICES], "question is empty"),
])
def test_bad_questions_are_errors_that_say_what_to_fix(video, tmp_path, extra, message):
    argv = [str(video), "--question", QUESTION, "--out", str(tmp_path)] + extra
    with pytest.raises(SystemExit, match=message):
        cli.main(argv)


def test_a_file_that_is_not_a_video_is_a_clear_error(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(SystemExit, match="cannot read video .*notes.mp4"):
        cli.main([str(tmp_path / "notes.mp4"), "--question", QUESTION, "--choices", *CHOICES, "--out", str(tmp_path)])
    assert not list(tmp_path.glob("*.png"))


def test_help_explains_real_weights(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "pretrain_flant5xl" in text and "--checkpoint" in text and "sevila_pretrained.pth" in text

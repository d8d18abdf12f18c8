"""The synthetic benchmark (dataset_builders.synthetic): files, truth, determinism, difficulty."""
import json

import numpy as np
import pytest

from dataset_builders import synthetic
from dataset_builders.synthetic import COLOURS, SHAPES, TARGET_COLOURS, SyntheticConfig, generate, plan_video
from lavis_sevila.data.samples import frame_labels
from lavis_sevila.data.schema import read_annotations
from lavis_sevila.video import read_clip

SMALL = SyntheticConfig(train=4, val=2, test=3, frames=32, size=64, seed=1)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), SMALL)


def test_files_and_records(small):
    for split, count in (("train", 4), ("val", 2), ("test", 3)):
        questions = read_annotations(small[split])  # validates against the schema
        moments = read_annotations(small[f"{split}_moment"])
        assert len(questions) == len(moments) == count
        for question, moment in zip(questions, moments):
            assert question.kind == "multiple_choice" and moment.kind == "moment"
            assert question.video == moment.video and (small["videos"] / f"{question.video}.mp4").is_file()
            assert question.options == list(COLOURS)  # fixed list, fixed order
            shape = question.qtype
            assert question.question == f"What colour is the {shape} that appears?"
            assert moment.question == f"a {shape} appears."
            assert question.duration == moment.duration == 4.0
            assert question.relevant_windows == moment.relevant_windows
    summary = json.loads(small["summary"].read_text())
    assert summary["config"]["frames"] == 32 and summary["splits"]["test"]["videos"] == 3


def target_pixels(frames: np.ndarray, colour: str) -> np.ndarray:
    """Per frame, the number of pixels close to the target colour."""
    rgb = np.asarray(TARGET_COLOURS[colour], dtype=np.int32)
    close = np.abs(frames.astype(np.int32) - rgb[None, :, None, None]).max(axis=1) < 60
    return close.sum(axis=(1, 2))


def test_the_target_shows_exactly_in_its_window(small):
    for question in read_annotations(small["train"]) + read_annotations(small["test"]):
        clip = read_clip(small["videos"] / f"{question.video}.mp4", 32, image_size=64)
        assert clip.indices.tolist() == list(range(32))
        shown = target_pixels(clip.frames.numpy(), COLOURS[question.answer]) > 40
        first, last = question.extra["target_frames"]
        assert shown.tolist() == [first <= i <= last for i in range(32)]
        labels = frame_labels(clip.timestamps, question.relevant_windows)
        assert labels.tolist() == [int(first <= i <= last) for i in range(32)]


def test_answer_is_the_target_colour(small):
    config = SMALL
    for question in read_annotations(small["test"]):
        plan = plan_video(config, "test", int(question.video.split("_")[1]))
        assert COLOURS[question.answer] == plan.colour and question.qtype == plan.shape
        frame = synthetic.render(config, plan)[plan.first]
        mask = (np.abs(frame.astype(int) - TARGET_COLOURS[plan.colour]).max(axis=-1) < 5)
        side = synthetic.object_side(config)
        assert mask.sum() == synthetic.shape_mask(plan.shape, side).sum()  # exactly the target's silhouette


def test_same_seed_same_files(small, tmp_path):
    again = generate(tmp_path, SMALL)
    for key in ("train", "test_moment", "summary"):
        assert small[key].read_bytes() == again[key].read_bytes()
    for video in ("train_00000.mp4", "test_00002.mp4"):
        assert (small["videos"] / video).read_bytes() == (again["videos"] / video).read_bytes()


def test_another_seed_other_videos():
    plans = [plan_video(SMALL, "train", i) for i in range(20)]
    others = [plan_video(SyntheticConfig(seed=2), "train", i) for i in range(20)]
    assert [(p.shape, p.first) for p in plans] != [(p.shape, p.first) for p in others]


def test_uniform_keyframes_see_the_target_only_sometimes():
    config = SyntheticConfig()
    plans = [plan_video(config, "test", i) for i in range(600)]
    fraction = synthetic.uniform_hit_fraction(config, plans)
    # keyframes 4, 12, 20, 28 of 32; a 3-frame window starting at 0..29 covers one for 12 of 30 starts
    assert fraction == pytest.approx(0.4, abs=0.06)
    assert {p.shape for p in plans} == set(SHAPES) and {p.colour for p in plans} == set(TARGET_COLOURS)
    firsts = np.bincount([p.first for p in plans], minlength=30)
    assert firsts.min() > 5 and len(firsts) == 30  # every window position occurs


def test_distractors_never_use_a_target_colour():
    for i in range(50):
        plan = plan_video(SMALL, "train", i)
        assert all(colour not in TARGET_COLOURS for _, colour, _ in plan.distractors)
        cells = [plan.target_cell] + [cell for _, _, cell in plan.distractors]
        assert len(set(cells)) == len(cells)


def test_cli_default_set_and_its_report(tmp_path, capsys):
    synthetic.main(["--output", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "wrote 300 videos" in printed
    assert "of the questions (a uniform-sampling answerer can reach about" in printed
    summary = json.loads((tmp_path / "synthetic.json").read_text())
    hit = summary["splits"]["test"]["uniform_hit_fraction"]
    assert 0.2 < hit < 0.6 and f"{100 * hit:.1f}%" in printed
    assert len(read_annotations(tmp_path / "train.jsonl")) == 200
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 300


@pytest.mark.parametrize("kwargs,message", [
    ({"window": 40}, "window must be"),
    ({"distractors": 4}, "do not fit"),
    ({"size": 63}, "size must be even"),
    ({"target_colours": ("purple",)}, "target colours"),
    ({"train": -1}, "counts must be"),
])
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**kwargs)


def test_noise_changes_pixels_but_not_the_truth():
    quiet = SyntheticConfig(noise=0.0)
    noisy = SyntheticConfig(noise=10.0)
    plan = plan_video(quiet, "train", 0)
    a, b = synthetic.render(quiet, plan), synthetic.render(noisy, plan)
    assert plan == plan_video(noisy, "train", 0)
    difference = np.abs(a.astype(int) - b.astype(int))
    assert 4 < difference.mean() < 12

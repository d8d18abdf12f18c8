"""The synthetic benchmark (dataset_builders.synthetic): files, truth, determinism, difficulty."""
import json
from collections import Counter

import numpy as np
import pytest

from dataset_builders import synthetic
from dataset_builders.synthetic import COLOURS, SHAPES, TARGET_COLOURS, SyntheticConfig, generate, plan_video
from lavis_sevila.data.samples import frame_labels
from lavis_sevila.data.schema import read_annotations
from lavis_sevila.datasets.image_text import read_image_text
from lavis_sevila.video import read_clip
from lavis_sevila.video.sampling import frame_indices

SMALL = SyntheticConfig(train=4, val=2, test=3, seed=1)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), SMALL)


def test_files_and_records(small):
    for split, count in (("train", 4), ("val", 2), ("test", 3)):
        questions = read_annotations(small[split])  # validates against the schema
        moments = read_annotations(small[f"{split}_moment"])
        oracle = read_annotations(small[f"{split}_oracle"])
        assert len(questions) == len(oracle) == count and len(moments) == count * SMALL.events
        for question, clipped in zip(questions, oracle):
            assert question.kind == "multiple_choice" and (small["videos"] / f"{question.video}.mp4").is_file()
            assert question.options == list(COLOURS)  # fixed list, fixed order
            assert question.question == f"What colour is the {question.qtype}?"
            assert question.duration == 4.0
            mine = [m for m in moments if m.video == question.video]
            assert [m.question for m in mine] == [f"a {shape} appears." for shape, _, _ in question.extra["events"]]
            named = [m for m in mine if m.qtype == question.qtype]
            assert len(named) == 1 and named[0].relevant_windows == question.relevant_windows
            assert clipped.video == question.video and clipped.answer == question.answer
            assert clipped.question == question.question and clipped.window is not None
    summary = json.loads(small["summary"].read_text())
    assert summary["config"]["frames"] == 32 and summary["splits"]["test"]["videos"] == 3


def colour_pixels(frames: np.ndarray, colour: str) -> np.ndarray:
    """Per frame [n, 3, H, W], the number of pixels close to ``colour``."""
    rgb = np.asarray(TARGET_COLOURS[colour], dtype=np.int32)
    close = np.abs(frames.astype(np.int32) - rgb[None, :, None, None]).max(axis=1) < 60
    return close.sum(axis=(1, 2))


def test_every_event_shows_exactly_in_its_window(small):
    for question in read_annotations(small["train"]) + read_annotations(small["test"]):
        clip = read_clip(small["videos"] / f"{question.video}.mp4", 32, image_size=32)
        assert clip.indices.tolist() == list(range(32))
        for _shape, colour, first in question.extra["events"]:
            shown = colour_pixels(clip.frames.numpy(), colour) > 40
            assert shown.tolist() == [first <= i < first + SMALL.window for i in range(32)]
        first, last = question.extra["target_frames"]
        labels = frame_labels(clip.timestamps, question.relevant_windows)
        assert labels.tolist() == [int(first <= i <= last) for i in range(32)]


def test_the_question_names_one_of_several_events_and_every_option_colour_can_appear():
    config = SyntheticConfig()
    plans = [plan_video(config, "test", i) for i in range(300)]
    for plan in plans:
        assert len({e.shape for e in plan.events}) == len({e.colour for e in plan.events}) == config.events
        starts = [e.first for e in plan.events]
        assert starts == sorted(starts) and all(b - a > config.window for a, b in zip(starts, starts[1:]))
    # distractor events use option colours too, each colour is asked about, each event position is asked
    distractor_colours = Counter(e.colour for p in plans for j, e in enumerate(p.events) if j != p.target)
    assert set(distractor_colours) == set(COLOURS)
    assert {p.colour for p in plans} == set(COLOURS) and {p.shape for p in plans} == set(SHAPES)
    assert set(Counter(p.target for p in plans)) == set(range(config.events))


def test_answer_is_the_named_events_colour(small):
    for question in read_annotations(small["test"]):
        plan = plan_video(SMALL, "test", int(question.video.split("_")[1]))
        assert COLOURS[question.answer] == plan.colour and question.qtype == plan.shape
        frame = synthetic.render(SMALL, plan)[plan.first]
        mask = np.abs(frame.astype(int) - TARGET_COLOURS[plan.colour]).max(axis=-1) < 5
        assert mask.sum() == synthetic.shape_mask(plan.shape, synthetic.object_side(SMALL)).sum()


def test_oracle_window_samples_exactly_the_named_events_frames(small):
    for record in read_annotations(small["test_oracle"]):
        first, last = record.extra["target_frames"]
        picked = frame_indices(32, SMALL.fps, 4, "uniform", window=record.window)
        assert set(picked.tolist()) <= set(range(first, last + 1)) and len(set(picked.tolist())) == SMALL.window


def test_stage0_records_come_from_train_frames_and_tell_the_truth(small):
    rows = read_image_text(small["image_text"])
    assert {row["video"].split("_")[0] for row in rows} == {"train"}
    answers = Counter(row["answer"] for row in rows if row["task"] == "exists")
    assert answers["yes"] > 0 and 0.25 < answers["yes"] / sum(answers.values()) < 0.5
    for row in rows:
        plan = plan_video(SMALL, "train", int(row["video"].split("_")[1]))
        shown = [e for e in plan.events if row["frame"] in e.frames(SMALL.window)]
        if row["task"] == "exists":
            words = row["question"].split()
            colour, shape = words[3], words[4]
            truth = bool(shown) and (shown[0].colour, shown[0].shape) == (colour, shape)
            assert row["answer"] == ("yes" if truth else "no"), row
        elif row["task"] == "exists_shape":
            shape = row["question"].split()[3]
            assert row["answer"] == ("yes" if shown and shown[0].shape == shape else "no"), row
        elif row["task"] == "colour":
            shape = row["question"].split()[-1].rstrip("?")
            expected = shown[0].colour if shown and shown[0].shape == shape else synthetic.NONE
            assert row["answer"] == expected, row
        elif row["task"] == "shape":
            assert row["answer"] == (shown[0].shape if shown else synthetic.NONE), row
        else:
            assert row["task"] == "multiple_choice" and shown
            assert row["answer"] == f"Option {'ABCDE'[COLOURS.index(shown[0].colour)]}"


def test_same_seed_same_files(small, tmp_path):
    again = generate(tmp_path, SMALL)
    for key in ("train", "test_moment", "test_oracle", "image_text", "summary"):
        assert small[key].read_bytes() == again[key].read_bytes()
    for video in ("train_00000.mp4", "test_00002.mp4"):
        assert (small["videos"] / video).read_bytes() == (again["videos"] / video).read_bytes()


def test_videos_decode_to_exactly_the_rendered_frames(small):
    """Lossless RGB coding: what the model reads does not depend on encoder decisions (with
    yuv420p at crf 12 one video in 350 decoded differently between identical runs)."""
    import av

    for split, index in (("train", 0), ("test", 2)):
        plan = plan_video(SMALL, split, index)
        with av.open(str(small["videos"] / f"{plan.video}.mp4")) as container:
            decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        assert np.array_equal(decoded, synthetic.render(SMALL, plan))


def test_another_seed_other_videos():
    plans = [plan_video(SMALL, "train", i) for i in range(20)]
    others = [plan_video(SyntheticConfig(seed=2), "train", i) for i in range(20)]
    assert [p.events for p in plans] != [p.events for p in others]


def test_uniform_keyframes_see_the_named_event_only_sometimes():
    config = SyntheticConfig()
    plans = [plan_video(config, "test", i) for i in range(600)]
    fraction = synthetic.uniform_hit_fraction(config, plans)
    # keyframes 4, 12, 20, 28 of 32 and a 3-frame window
    assert fraction == pytest.approx(0.4, abs=0.07)
    assert fraction < synthetic.uniform_accuracy_bound(config, plans) < fraction + 0.3


def test_cli_default_set_and_its_report(tmp_path, capsys):
    synthetic.main(["--output", str(tmp_path), "--num-videos", "20", "2", "10"])
    printed = capsys.readouterr().out
    assert "wrote 32 videos" in printed
    assert "of the questions (a uniform-sampling answerer can reach about" in printed
    summary = json.loads((tmp_path / "synthetic.json").read_text())
    hit = summary["splits"]["test"]["uniform_hit_fraction"]
    assert f"{100 * hit:.1f}%" in printed
    assert len(read_annotations(tmp_path / "train.jsonl")) == 20
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 32


@pytest.mark.parametrize("kwargs,message", [
    ({"window": 40}, "window must be"),
    ({"events": 6}, "events must be"),
    ({"events": 5, "window": 7}, "do not fit"),
    ({"size": 63}, "size must be even"),
    ({"target_colours": ("purple", "red", "blue")}, "target colours"),
    ({"target_colours": ("red",)}, "target colours"),
    ({"jitter": 9}, "jitter must be"),
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

"""Public Python API and evaluation modes."""
import numpy as np
import pytest
import torch

from lavis_sevila.video.writer import write_video

OPTIONS = ["circle.", "square.", "triangle."]


def test_answer_and_score_frames_from_a_video_file(tmp_path, tiny_shared):
    rng = np.random.default_rng(0)
    write_video(tmp_path / "v.mp4", rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8), fps=8)
    scores = tiny_shared.score_frames(tmp_path / "v.mp4", "what shape is the red object?", OPTIONS, num_frames=16)
    assert scores.shape == (16,)
    result = tiny_shared.answer(str(tmp_path / "v.mp4"), "what shape is the red object?", OPTIONS, num_frames=16)
    assert 0 <= result.index < 3 and len(result.probabilities) == 3
    assert abs(sum(result.probabilities) - 1) < 1e-5
    assert result.keyframes == sorted(result.keyframes) and len(result.keyframes) == 4
    assert torch.allclose(torch.tensor(result.frame_scores), scores, atol=1e-5)
    top = sorted(range(16), key=lambda i: -result.frame_scores[i])[:4]
    assert sorted(top) == result.keyframes


def test_answer_accepts_uint8_or_processed_frames(tiny_shared):
    frames = torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8)
    from lavis_sevila.processors.video_processors import SevilaVideoEvalProcessor

    a = tiny_shared.answer(frames, "q?", OPTIONS, num_keyframes=2)
    b = tiny_shared.answer(SevilaVideoEvalProcessor(32)(frames), "q?", OPTIONS, num_keyframes=2)
    assert a == b


def _samples(n=3, frames=6):
    g = torch.Generator().manual_seed(1)
    return {
        "video": torch.randn(n, frames, 3, 32, 32, generator=g),
        "qa_input": [f"Question: q{i}? Option A: a. Option B: b." for i in range(n)],
        "loc_input": [f"Question: q{i}? Options: (a. b. )" for i in range(n)],
        "question_id": [f"q{i}" for i in range(n)],
        "answer_idx": [0, 1, 0][:n],
        "video_ok": [True, False, True][:n],
    }


@pytest.mark.parametrize("mode", ["chain", "chain_single", "uniform", "per_frame", "localize"])
def test_unreadable_videos_are_unanswered_and_never_scored(tiny_shared, mode):
    samples = _samples()
    records = tiny_shared.predict(samples, mode=mode, num_options=2)
    assert [r["question_id"] for r in records] == ["q0", "q1", "q2"]
    assert records[1] == {"question_id": "q1", "prediction": -1, "video_ok": False}
    # the other rows do not depend on the unreadable one being in the batch
    alone = tiny_shared.predict({k: [v[0]] if isinstance(v, list) else v[:1] for k, v in samples.items()}, mode=mode, num_options=2)
    for key, value in alone[0].items():
        if isinstance(value, list) and value and isinstance(value[0], float):
            assert np.allclose(value, records[0][key], atol=1e-5), key
        else:
            assert value == records[0][key], key


def test_per_frame_vote_and_oracle(tiny_shared):
    records = tiny_shared.predict(_samples(), mode="per_frame", num_options=2)
    for record, answer in zip(records, [0, 1, 0]):
        if not record["video_ok"]:
            continue
        votes = record["frame_predictions"]
        counts = [votes.count(i) for i in range(2)]
        assert record["prediction"] == counts.index(max(counts))
        assert record["oracle_correct"] == (answer in votes)


def test_unknown_mode_fails(tiny_shared):
    with pytest.raises(ValueError, match="evaluation mode"):
        tiny_shared.predict(_samples(), mode="beam")

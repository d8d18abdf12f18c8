"""ViT feature cache (keys, bound, disk), questions grouped per video, and the cut pseudo-label pass."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import build_tiny
from lavis_sevila.data import prompts
from lavis_sevila.data.samples import clip_key
from lavis_sevila.data.schema import Annotation
from lavis_sevila.models.feature_cache import FeatureCache, ModuleFingerprint, encode_unique
from lavis_sevila.processors.video_processors import SevilaVideoEvalProcessor, SevilaVideoTrainProcessor
from lavis_sevila.video.clip import Clip

T = 6


@pytest.fixture
def model():
    return build_tiny(seed=3)


def _counting(model):
    """Wrap the model's pixel encoder to count the clips it encodes."""
    calls = []
    inner = model._encode_pixels

    def encode(video):
        calls.append(video.shape[0])
        return inner(video)

    model._encode_pixels = encode
    return calls


def _record(video="v1", qid="q1"):
    return Annotation(schema_version=1, qid=qid, video=video, dataset="synthetic", kind="multiple_choice", question="what?",
                      options=["a", "b"], answer=0)


def _clip(indices, size=32):
    n = len(indices)
    frames = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    return Clip(frames=frames, indices=np.asarray(indices), timestamps=np.asarray(indices) / 10.0, fps=10.0,
                num_frames=100, duration=10.0)


def test_clip_key_names_video_frames_and_processor_and_is_empty_when_random():
    proc = SevilaVideoEvalProcessor(image_size=32)
    base = clip_key(_record(), _clip([0, 5, 9]), proc, "uniform")
    assert base and base == clip_key(_record(qid="q2"), _clip([0, 5, 9]), proc, "uniform")  # same video, other question
    assert base != clip_key(_record("v2"), _clip([0, 5, 9]), proc, "uniform")
    assert base != clip_key(_record(), _clip([0, 5, 8]), proc, "uniform")
    assert base != clip_key(_record(), _clip([0, 5, 9], 48), SevilaVideoEvalProcessor(image_size=48), "uniform")
    assert base != clip_key(_record(), _clip([0, 5, 9]), SevilaVideoEvalProcessor(32, mean=(0.5,) * 3), "uniform")
    assert clip_key(_record(), _clip([0, 5, 9]), proc, "random") == ""
    assert clip_key(_record(), _clip([0, 5, 9]), SevilaVideoTrainProcessor(image_size=32), "uniform") == ""
    assert clip_key(_record(), _clip([0, 5, 9]), lambda x: x.float(), "uniform") == ""  # untagged processor


def _encode(model, video, keys):
    return encode_unique(model._encode_pixels, video, keys, model.feature_cache, model._vit_fingerprint)


def test_cache_serves_the_same_clip_and_never_another_video_or_sampling(model):
    calls = _counting(model)
    torch.manual_seed(0)
    video = torch.randn(1, T, 3, 32, 32)
    first, _ = _encode(model, video, ["v1|frames=0,1"])
    again, _ = _encode(model, video, ["v1|frames=0,1"])
    assert calls == [1] and torch.equal(first, again)  # served from the cache
    _encode(model, video, ["v2|frames=0,1"])  # another video: computed
    _encode(model, video, ["v1|frames=0,2"])  # another sampling: computed
    assert calls == [1, 1, 1]
    other, _ = _encode(model, torch.randn(1, T, 3, 32, 32), ["v1|frames=0,1"])  # same name, other pixels
    assert calls == [1, 1, 1, 1] and not torch.allclose(other, first)


def test_cache_never_serves_another_image_size():
    small, large = build_tiny(seed=3), build_tiny(seed=3, **{"vision.img_size": 48})
    large.feature_cache = small.feature_cache  # one cache shared by both
    calls = _counting(large)
    _encode(small, torch.randn(1, T, 3, 32, 32), ["v1"])
    feats, _ = _encode(large, torch.randn(1, T, 3, 48, 48), ["v1"])
    assert calls == [1] and feats.shape[2] == (48 // 8) ** 2 + 1


def test_cache_never_serves_another_vits_features(model):
    other = build_tiny(seed=4)  # same config, other ViT weights
    other.feature_cache = model.feature_cache
    calls = _counting(other)
    video = torch.randn(1, T, 3, 32, 32)
    mine, _ = _encode(model, video, ["v1"])
    theirs, _ = _encode(other, video, ["v1"])
    assert calls == [1] and not torch.allclose(mine, theirs)
    # an in-place weight change (an optimizer step) changes the fingerprint too
    before = model._vit_fingerprint()
    with torch.no_grad():
        model.visual_encoder.patch_embed.proj.weight.add_(1.0)
    assert model._vit_fingerprint() != before
    calls = _counting(model)
    _encode(model, video, ["v1"])
    assert calls == [1]


def test_fingerprint_includes_the_vit_config():
    a = torch.nn.Linear(2, 2)
    assert ModuleFingerprint(a, {"img_size": 32})() != ModuleFingerprint(a, {"img_size": 48})()


def test_lru_is_bounded_in_bytes():
    cache = FeatureCache(max_bytes=3 * 4 * 10)  # three [10]-float tensors (as [1, 1, 10])
    for i in range(5):
        cache.put(f"k{i}", torch.full((1, 1, 10), float(i)))
    assert len(cache) == 3 and cache.bytes == 120
    assert cache.get("k0") is None and cache.get("k1") is None
    assert cache.get("k2") is not None  # k2 becomes most recent: k3 is evicted next
    cache.put("k5", torch.zeros(1, 1, 10))
    assert cache.get("k3") is None and cache.get("k2") is not None
    cache.put("big", torch.zeros(1, 1, 100))  # larger than the bound: not kept, nothing evicted
    assert len(cache) == 3 and cache.get("big") is None


def test_disk_cache_round_trip_and_checked(tmp_path):
    features = torch.randn(T, 5, 4)
    FeatureCache(max_bytes=0, directory=tmp_path).put("abc", features)
    fresh = FeatureCache(max_bytes=2**20, directory=tmp_path)
    assert torch.equal(fresh.get("abc", (T,)), features) and fresh.disk_hits == 1
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(ValueError, match="holds 6 frames, expected 3"):
        FeatureCache(max_bytes=0, directory=tmp_path).get("abc", (3,))
    from safetensors.torch import save_file

    save_file({"features": torch.zeros(2, 2, dtype=torch.int64)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="not one float32"):
        fresh.get("bad")


def test_one_key_for_two_different_pixel_tensors_is_an_error(model):
    with pytest.raises(ValueError, match="two different pixel tensors"):
        _encode(model, torch.randn(2, T, 3, 32, 32), ["same", "same"])


def test_training_vit_is_never_cached(model):
    model.config.freeze_vit = False
    model.set_stage("refine_localizer")
    model.train()
    calls = _counting(model)
    video = torch.randn(1, T, 3, 32, 32)
    model.encode_frames(video, ["v1"])
    model.encode_frames(video, ["v1"])
    assert calls == [1, 1] and len(model.feature_cache) == 0


QUESTIONS = [("what colour?", ["red", "green", "blue"]), ("which shape?", ["circle", "square"]),
             ("how many?", ["one", "two", "three", "four", "five"]), ("where?", ["left", "right", "top", "bottom"])]


def _grouped_batch(videos):
    """Every video asked every question, rows interleaved across videos."""
    rows = [(v, q) for q in range(len(QUESTIONS)) for v in range(len(videos))]
    texts = [prompts.multiple_choice(QUESTIONS[q][0], QUESTIONS[q][1], 0) for _, q in rows]
    return {
        "video": torch.stack([videos[v] for v, _ in rows]),
        "clip_key": [f"vid{v}|frames=all" for v, _ in rows],
        "question_id": [f"v{v}q{q}" for v, q in rows],
        "loc_input": [t.loc_input for t in texts], "qa_input": [t.qa_input for t in texts],
        "qa_output": [t.qa_output for t in texts], "answer_idx": [0] * len(rows),
        "num_options": torch.tensor([len(QUESTIONS[q][1]) for _, q in rows]),
    }


@pytest.mark.parametrize("mode", ["chain", "chain_single", "uniform", "per_frame", "localize"])
def test_grouped_prediction_equals_one_question_at_a_time(model, mode):
    torch.manual_seed(1)
    batch = _grouped_batch([torch.randn(T, 3, 32, 32) for _ in range(3)])
    model.config.localizer_chunk_size = 7  # chunks cut across videos and questions
    calls = _counting(model)
    grouped = model.predict(batch, mode=mode)
    assert calls == [3]  # three videos, twelve questions: three clips encoded
    model.feature_cache = None
    for row, record in enumerate(grouped):
        single = {k: (v[row : row + 1] if isinstance(v, torch.Tensor) else [v[row]]) for k, v in batch.items()}
        del single["clip_key"]
        (alone,) = model.predict(single, mode=mode, num_options=int(batch["num_options"].max()))
        assert record.keys() == alone.keys()
        for key, value in record.items():
            if isinstance(value, list) and value and isinstance(value[0], float):
                assert np.allclose(value, alone[key], atol=1e-5), (row, key)
            else:
                assert value == alone[key], (row, key)


def test_grouped_evaluation_across_batches_encodes_each_video_once(model):
    torch.manual_seed(2)
    batch = _grouped_batch([torch.randn(T, 3, 32, 32) for _ in range(2)])
    calls = _counting(model)
    half = len(batch["question_id"]) // 2  # both videos in both batches
    halves = [{k: v[:half] for k, v in batch.items()}, {k: v[half:] for k, v in batch.items()}]
    records = [r for half in halves for r in model.predict(half)]
    assert calls == [2] and model.feature_cache.hits == 2
    assert sorted(r["question_id"] for r in records) == sorted(batch["question_id"])


def test_fast_pseudo_labels_equal_the_full_teacher_forced_pass(model):
    torch.manual_seed(5)
    batch = _grouped_batch([torch.randn(T, 3, 32, 32) for _ in range(2)])
    feats = model.encode_frames(batch["video"])
    inputs = model._single_frame_inputs("answerer", feats, batch["qa_input"])
    target = model.layout.targets(batch["qa_output"], feats.device).repeat(T)
    full = model.llm.teacher_forced(inputs, target.ids, target.mask).logits[:, 1, model.letter_ids()]
    fast = model.llm.teacher_forced_token_logits(inputs, target.ids, target.mask, 1, model.letter_ids())
    assert torch.allclose(full, fast, atol=1e-5)
    labels = model.pseudo_labels(feats, batch["qa_input"], batch["qa_output"], batch["num_options"])
    expected = model.mask_options(full.reshape(len(batch["qa_input"]), T, -1), batch["num_options"]).argmax(-1) == 0
    assert torch.equal(labels, expected)


def test_features_cached_by_evaluation_serve_a_training_step(model):
    torch.manual_seed(6)
    batch = _grouped_batch([torch.randn(T, 3, 32, 32) for _ in range(2)])
    model.predict(batch)  # inference_mode: fills the cache
    model.set_stage("refine_localizer")
    model.train()
    calls = _counting(model)
    out = model(batch)
    out["loss"].backward()  # would fail on inference tensors saved for backward
    assert calls == [] and model.feature_cache.hits == 2


def test_pseudo_label_cache_computes_once_per_clip_question_and_answerer():
    model = build_tiny(seed=3, pseudo_label_cache=True)
    model.set_stage("refine_localizer")
    model.train()
    torch.manual_seed(7)
    batch = _grouped_batch([torch.randn(T, 3, 32, 32) for _ in range(2)])
    calls = []
    inner = model.pseudo_labels
    model.pseudo_labels = lambda feats, *a: calls.append(feats.shape[0]) or inner(feats, *a)
    first = model(batch)
    second = model(batch)
    assert calls == [8] and torch.equal(first["loss"], second["loss"])
    assert torch.equal(first["pseudo_yes_rate"], second["pseudo_yes_rate"])
    plain = model._cached_pseudo_labels({k: v for k, v in batch.items() if k != "clip_key"},
                                        model.encode_frames(batch["video"]))
    assert calls == [8, 8] and torch.equal(plain, inner(model.encode_frames(batch["video"]), batch["qa_input"],
                                                          batch["qa_output"], batch["num_options"]))
    with torch.no_grad():  # another answerer (e.g. the next round of iterative refinement): recomputed
        model.roles["answerer"].proj.weight.mul_(1.5)
    model(batch)
    assert calls == [8, 8, 8]

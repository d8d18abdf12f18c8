"""The speed paths change no score: chunks trimmed to their own padding, the automatic chunk
size, and the opt-in compiled encoder (same keyframes and answers as eager)."""
from __future__ import annotations

import pytest
import torch

from lavis_sevila.models.layout import Tokens
from lavis_sevila.models.llm.base import LLMInputs


@pytest.mark.parametrize("side", ["right", "left"])
def test_rows_drop_only_columns_that_are_padding_in_every_row(side):
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    if side == "left":
        mask = mask.flip(1)
    embeds = torch.arange(3 * 5 * 2, dtype=torch.float).reshape(3, 5, 2)
    part = LLMInputs(embeds, mask).rows(0, 2)
    keep = [0, 1, 2] if side == "right" else [2, 3, 4]
    assert torch.equal(part.mask, mask[:2, keep]) and torch.equal(part.embeds, embeds[:2, keep])
    whole = LLMInputs(embeds, mask).rows(1, 3)  # the last row has no padding: nothing dropped
    assert torch.equal(whole.mask, mask[1:]) and torch.equal(whole.embeds, embeds[1:])
    tokens = Tokens(torch.arange(15).reshape(3, 5), mask).rows(0, 2).trimmed()
    assert torch.equal(tokens.ids, torch.arange(15).reshape(3, 5)[:2, keep])


def test_automatic_chunk_is_all_rows_on_a_gpu_and_cache_sized_on_a_cpu(tiny):
    from lavis_sevila.models.sevila import CPU_CHUNK_ELEMENTS

    width = tiny.llm.width
    assert tiny._auto_chunk(500, 32, 20, torch.device("cuda")) == 500
    cpu = tiny._auto_chunk(10**6, 32, 20, torch.device("cpu"))
    assert cpu == CPU_CHUNK_ELEMENTS // ((32 + 20 + 4) * width)
    assert tiny._auto_chunk(3, 32, 20, torch.device("cpu")) == 3
    assert tiny._auto_chunk(10, 10**9, 0, torch.device("cpu")) == 1


def test_chunked_localizer_and_pseudo_labels_match_one_call(tiny):
    torch.manual_seed(0)
    model = tiny
    feats = model.encode_frames(torch.randn(2, 4, 3, model.config.vision.img_size, model.config.vision.img_size))
    loc = ["a short question?", "a much longer question with many more words in it than the other?"]
    qa = [q + " Option A: x" for q in loc]
    before = model.config.localizer_chunk_size
    try:
        model.config.localizer_chunk_size = 8
        whole, labels = model.frame_logits(feats, loc), model.pseudo_labels(feats, qa, ["Option A", "Option B"])
        model.config.localizer_chunk_size = 3  # chunks cut inside a question, padded to their own longest text
        parts, labels_3 = model.frame_logits(feats, loc), model.pseudo_labels(feats, qa, ["Option A", "Option B"])
    finally:
        model.config.localizer_chunk_size = before
    assert torch.allclose(whole.yes, parts.yes, atol=1e-5) and torch.allclose(whole.no, parts.no, atol=1e-5)
    assert torch.equal(labels, labels_3)


def test_compile_is_refused_for_a_family_without_it():
    from lavis_sevila.models.llm.base import LanguageModel

    class Other(LanguageModel):
        family = "other"
        from_config = load_tokenizer = greedy_step_logits = teacher_forced = None

    with pytest.raises(ValueError, match="t5 family only"):
        LanguageModel.compile(Other.__new__(Other))


@pytest.mark.slow
def test_inference_benchmark_compiled_path_agrees():
    from lavis_sevila.benchmarks import inference

    (result,) = inference.main(["--shapes", "tiny", "--videos", "2", "--frames", "6", "--keyframes", "2",
                                "--repeats", "1", "--no-warmup", "--questions", "2", "--compile"])
    assert "ours+cache+compile" in result["median"] and result["compile_s"] > 0


@pytest.mark.parametrize("tied", [False, True])
def test_t5_first_step_shortcut_equals_the_decoder_step(tied):
    from conftest import build_tiny

    model = build_tiny(**{"llm.config.tie_word_embeddings": tied})
    torch.manual_seed(1)
    n, length, width = 5, 9, model.llm.width
    mask = torch.ones(n, length, dtype=torch.long)
    mask[1, 6:] = 0
    mask[3, 2:] = 0
    inputs = LLMInputs(torch.randn(n, length, width), mask)
    ids = [model.token_ids.yes, model.token_ids.no, 7]
    with torch.no_grad():
        full = model.llm.greedy_step_logits(inputs, steps=1)[0][:, ids]
        cut = model.llm.first_step_token_logits(inputs, ids)
    assert torch.allclose(cut, full, atol=1e-5, rtol=1e-5), (cut - full).abs().max()
    model.llm.module.train()  # dropout on: the plain decoder step (nothing to shortcut)
    try:
        with torch.no_grad():
            assert torch.allclose(model.llm.first_step_token_logits(inputs, ids), full, atol=1e-5)
    finally:
        model.llm.module.eval()


def test_profile_benchmark_accounts_for_the_whole_run(tmp_path):
    from lavis_sevila.benchmarks import profile

    doc = tmp_path / "speed.md"
    (result,) = profile.main(["--shapes", "tiny", "--videos", "2", "--frames", "6", "--keyframes", "2",
                              "--questions", "3", "--batch", "4", "--label", "test", "--markdown", str(doc)])
    parts = result["parts"]
    assert abs(sum(parts.values()) - result["total"]) < 1e-6 and parts["LLM encoder"] > 0 and parts["ViT"] > 0
    assert all(v > 0 for v in result["floor"].values()) and "profile-tiny-test:begin" in doc.read_text()


def test_full_size_shape_is_a_valid_config_with_the_papers_sizes():
    """The GPU shape is checked here without building its 4 B parameters."""
    from omegaconf import OmegaConf

    from lavis_sevila.benchmarks.common import SHAPES
    from lavis_sevila.models import SeViLA
    from lavis_sevila.models.config import SeViLAConfig

    cfg = OmegaConf.load(SeViLA.default_config_path("tiny")).model
    for key, value in SHAPES["full"].items():
        OmegaConf.update(cfg, key, value, merge=True)
    config = SeViLAConfig.from_dict(OmegaConf.to_container(cfg, resolve=True))
    assert (config.vision.embed_dim, config.vision.depth, config.qformer.hidden_size) == (1408, 39, 768)
    assert config.llm.config["d_model"] == 2048 and config.llm.dtype == "bf16" and config.vision.precision == "fp16"

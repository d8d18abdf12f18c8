"""Localizer and answerer read the logits the authors' generate() calls read."""
import pytest
import torch

from conftest import build_tiny

TEXTS = [
    "Question: what shape is the red object? Options: (circle. square. )",
    "Question: what happens after the man opens the door and looks left? Options: (he runs. he sits. he goes. )",
]


@pytest.fixture(scope="module")
def setup():
    model = build_tiny(seed=1)
    torch.manual_seed(0)
    feats = model.encode_frames(torch.randn(2, 6, 3, 32, 32))
    return model, feats


def _generate(model, inputs):
    return model.t5_model.generate(
        inputs_embeds=inputs.embeds, attention_mask=inputs.mask, num_beams=1, do_sample=False,
        max_new_tokens=30, min_length=1, return_dict_in_generate=True, output_scores=True,
    ).scores


def test_shapes_and_determinism(setup):
    model, feats = setup
    assert feats.shape[:2] == (2, 6)
    a, b = model.frame_logits(feats, TEXTS), model.frame_logits(feats, TEXTS)
    assert a.yes.shape == a.no.shape == (2, 6)
    assert torch.equal(a.yes, b.yes) and torch.equal(a.no, b.no)


def test_batched_localizer_equals_a_naive_one_frame_loop(setup):
    model, feats = setup
    batched = model.frame_logits(feats, TEXTS).yes
    for v, text in enumerate(TEXTS):
        for t in range(feats.shape[1]):
            single = model.frame_logits(feats[v : v + 1, t : t + 1], [text]).yes[0, 0]
            assert torch.allclose(single, batched[v, t], atol=1e-5), (v, t)


def test_chunked_localizer_equals_unchunked(setup):
    model, feats = setup
    full = model.frame_logits(feats, TEXTS).yes
    model.config.localizer_chunk_size = 5
    try:
        chunked = model.frame_logits(feats, TEXTS).yes
    finally:
        model.config.localizer_chunk_size = None
    assert torch.allclose(full, chunked, atol=1e-5)


def test_localizer_score_is_generate_first_step_yes_logit(setup):
    model, feats = setup
    inputs = model._single_frame_inputs("localizer", feats, TEXTS)
    expected = _generate(model, inputs)[0][:, model.token_ids.yes].reshape(2, -1)
    assert torch.allclose(model.frame_logits(feats, TEXTS).yes, expected, atol=1e-4)


def test_answer_logits_are_generate_second_step_letter_logits(setup):
    model, feats = setup
    chosen, _ = model.keyframes(feats, TEXTS)
    picked = model.gather_frames(feats, chosen)
    ours = model.answer_logits(picked, TEXTS)
    visual = model.role_tokens("answerer", picked.flatten(0, 1)).reshape(2, 4, -1, model.llm.width)
    scores = _generate(model, model.layout.video(visual, TEXTS))
    assert torch.allclose(ours, scores[1][:, list(model.token_ids.letters)], atol=1e-4)


def test_step_two_is_read_even_when_step_one_emits_eos(setup):
    """Orig's generate stops when all rows end; we always read step 2, per sample."""
    model, feats = setup
    eos = model.llm.tokenizer.eos_token_id

    def eos_wins(module, args, output):
        output = output.clone()
        output[..., eos] += 1000.0
        return output

    hook = model.t5_model.lm_head.register_forward_hook(eos_wins)
    try:
        picked = feats[:, :2]
        (step1,) = model.llm.greedy_step_logits(
            model.layout.video(model.role_tokens("answerer", picked.flatten(0, 1)).reshape(2, 2, -1, model.llm.width), TEXTS),
            steps=1,
        )
        assert step1.argmax(-1).tolist() == [eos, eos]
        logits = model.answer_logits(picked, TEXTS)
        visual = model.role_tokens("answerer", picked.flatten(0, 1)).reshape(2, 2, -1, model.llm.width)
        inputs = model.llm.cast(model.layout.video(visual, TEXTS))
        start = model.t5_model.config.decoder_start_token_id
        out = model.t5_model(
            inputs_embeds=inputs.embeds, attention_mask=inputs.mask,
            decoder_input_ids=torch.tensor([[start, eos]] * 2),
        )
        assert torch.allclose(logits, out.logits[:, 1, list(model.token_ids.letters)], atol=1e-4)
    finally:
        hook.remove()


def test_gather_frames_and_answer_num(setup):
    model, feats = setup
    idx = torch.tensor([[0, 5], [2, 3]])
    picked = model.gather_frames(feats, idx)
    assert torch.equal(picked[1, 0], feats[1, 2]) and torch.equal(picked[0, 1], feats[0, 5])
    assert model.answer_logits(picked, TEXTS, num_options=2).shape == (2, 2)
    assert model.answer_logits_per_frame(feats, TEXTS).shape == (2, 6, 5)

"""LLM input layout (spec section 2): which embedding sits at which position, and masks."""
import torch

from lavis_sevila.data import prompts
from lavis_sevila.models.layout import FRAME_PREFIX, video_prefix


def _ids(model, text, special=False):
    return model.llm.tokenizer(text, add_special_tokens=special).input_ids


def test_video_layout_places_prefixes_visual_tokens_and_text(tiny_shared):
    model = tiny_shared
    k, q, d = 3, model.config.qformer.num_query_token, model.llm.width
    visual = torch.randn(1, k, q, d)
    qa = prompts.multiple_choice("what shape is the red object?", ["circle.", "square."], 0).qa_input
    inputs = model.layout.video(visual, [qa])

    expected_embeds, expected_mask = [], []
    embed = model.llm.embed
    for i in range(k):
        prefix = _ids(model, video_prefix(i + 1))
        expected_embeds += [embed(torch.tensor(prefix)), visual[0, i]]
        expected_mask += [1] * (len(prefix) + q)
    text = _ids(model, qa, special=True)
    assert text[-1] == model.llm.tokenizer.eos_token_id
    expected_embeds.append(embed(torch.tensor(text)))
    expected_mask += [1] * len(text)
    assert torch.equal(inputs.embeds[0], torch.cat(expected_embeds))
    assert inputs.mask[0].tolist() == expected_mask


def test_video_prefixes_are_padded_together_and_masked(tiny_shared):
    model = tiny_shared
    k, q = 10, model.config.qformer.num_query_token
    inputs = model.layout.video(torch.zeros(1, k, q, model.llm.width), ["x"])
    lengths = [len(_ids(model, video_prefix(i + 1))) for i in range(k)]
    longest = max(lengths)
    assert lengths[0] < longest == lengths[9], "'Frame 10: ' must tokenise longer than 'Frame 1: '"
    mask = inputs.mask[0].tolist()
    block = longest + q
    for i, length in enumerate(lengths):
        assert mask[i * block : (i + 1) * block] == [1] * length + [0] * (longest - length) + [1] * q


def test_single_frame_layout_and_batch_padding(tiny_shared):
    model = tiny_shared
    q, d = model.config.qformer.num_query_token, model.llm.width
    visual = torch.randn(2, q, d)
    texts = ["Question: short?", "Question: a much longer question with many more words in it?"]
    inputs = model.layout.single_frame(visual, model.layout.tokenize(texts, visual.device))
    prefix = _ids(model, FRAME_PREFIX)
    short, long = (_ids(model, t, special=True) for t in texts)
    assert inputs.embeds.shape[1] == len(prefix) + q + len(long)
    assert inputs.mask[0].tolist() == [1] * (len(prefix) + q + len(short)) + [0] * (len(long) - len(short))
    assert torch.equal(inputs.embeds[1, len(prefix) : len(prefix) + q], visual[1])
    assert torch.equal(inputs.embeds[0, : len(prefix)], model.llm.embed(torch.tensor(prefix)))


def test_text_is_truncated_at_max_txt_len_with_eos(tiny_shared):
    model = tiny_shared
    tokens = model.layout.tokenize(["word " * 200], torch.device("cpu"))
    assert tokens.ids.shape[1] == model.config.max_txt_len == 77
    assert tokens.ids[0, -1].item() == model.llm.tokenizer.eos_token_id

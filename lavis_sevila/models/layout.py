"""Every LLM input SeViLA builds, built here (spec section 2).

Two layouts cover all uses:

* one frame  -- ``embed("Frame: ") ++ visual tokens ++ embed(text + EOS)``: the localizer
  (per frame) and the answerer in image mode (pseudo-labels, voting, oracle);
* a video    -- for i = 1..k ``embed("Frame {i}: ") ++ visual tokens of frame i``, then
  ``++ embed(text + EOS)``: the answerer on k keyframes (or on all frames, uniform).

Prefixes are tokenised without special tokens; the k video prefixes are tokenised
together and padded to the longest, keeping their masks (so "Frame 10: " and "Frame 9: "
differ by a masked pad).  Texts are padded to the longest in the batch and truncated at
``max_txt_len`` tokens (with EOS).  Visual tokens are always attended.

That is the Flan-T5 layout (the paper's).  Other families change it only through their
LanguageModel class attributes (``llm/base.py``): a template around the prompt (BOS,
head, ``image_open``/``image_close`` around each frame's visual tokens, tail), no EOS in
the prompt, left padding (every row's real tokens last), target text lead and EOS, and
the answer prefix appended for reading the letter (:meth:`PromptLayout.for_answer_read`).
For T5 all of these are empty or off, so its inputs are exactly the ones above.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch

from lavis_sevila.models.llm.base import LanguageModel, LLMInputs, real_columns

FRAME_PREFIX = "Frame: "


def video_prefix(i: int) -> str:
    """Prefix of the i-th keyframe (1-based) in the video layout."""
    return f"Frame {i}: "


@dataclass
class Tokens:
    ids: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T]

    def repeat(self, times: int) -> "Tokens":
        """Each row ``times`` times in a row (one text for every frame of its video)."""
        return Tokens(self.ids.repeat_interleave(times, dim=0), self.mask.repeat_interleave(times, dim=0))

    def rows(self, start: int, stop: int) -> "Tokens":
        return Tokens(self.ids[start:stop], self.mask[start:stop])

    def trimmed(self) -> "Tokens":
        """Without the columns that are padding in every row (a chunk padded to its own
        longest text, not the batch's; either padding side).  Padding is masked and position
        ids count real tokens only, so the scores are the same, for less work."""
        keep = real_columns(self.mask)
        return self if keep is None else Tokens(self.ids[:, keep], self.mask[:, keep])


def left_align(inputs: LLMInputs) -> LLMInputs:
    """Move each row's padding to its front, keeping the order of its real tokens."""
    order = torch.argsort(inputs.mask, dim=1, stable=True)  # zeros (padding) first
    embeds = torch.gather(inputs.embeds, 1, order.unsqueeze(-1).expand(-1, -1, inputs.embeds.shape[-1]))
    return LLMInputs(embeds, torch.gather(inputs.mask, 1, order))


class PromptLayout:
    def __init__(self, llm: LanguageModel, max_txt_len: int) -> None:
        self.llm = llm
        self.tokenizer = llm.tokenizer
        self.max_txt_len = max_txt_len
        self.template = llm.template

    # -- tokenisation ---------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], device: torch.device, special_tokens: bool | None = None) -> Tokens:
        """Texts padded on the right to the longest; special tokens as the family's prompts take them.

        Always right padding, whatever the tokenizer's own ``padding_side`` (LLaMA's tokenizer
        pads on the left): targets must start right after the prompt and get EOS after their
        last real token; prompts are left-aligned afterwards by :func:`left_align` as a whole.
        """
        if special_tokens is None:
            special_tokens = self.llm.prompt_special_tokens
        rows = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_txt_len, add_special_tokens=special_tokens
        ).input_ids
        width = max((len(row) for row in rows), default=0)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return Tokens(ids.to(device), mask.to(device))

    @lru_cache(maxsize=64)
    def _prefix_cpu(self, prefixes: tuple[str, ...]) -> Tokens:
        return self.tokenize(prefixes, torch.device("cpu"), special_tokens=False)

    def prefixes(self, prefixes: tuple[str, ...], device: torch.device) -> Tokens:
        cached = self._prefix_cpu(prefixes)
        return Tokens(cached.ids.to(device), cached.mask.to(device))

    def targets(self, texts: Sequence[str], device: torch.device) -> Tokens:
        """Target ids (family lead, then EOS) with padding replaced by -100, and their mask."""
        lead = self.llm.target_lead
        texts = [lead + text for text in texts]
        if self.llm.prompt_special_tokens:  # T5: the tokenizer appends EOS itself
            tokens = self.tokenize(texts, device, special_tokens=True)
        else:
            tokens = self.tokenize(texts, device, special_tokens=False)
            if self.llm.target_eos:
                tokens = self._append_eos(tokens)
        return Tokens(tokens.ids.masked_fill(tokens.mask == 0, -100), tokens.mask)

    def _append_eos(self, tokens: Tokens) -> Tokens:
        b = tokens.ids.shape[0]
        pad = torch.full((b, 1), self.tokenizer.pad_token_id, dtype=tokens.ids.dtype, device=tokens.ids.device)
        ids = torch.cat([tokens.ids, pad], dim=1)
        mask = torch.cat([tokens.mask, torch.zeros_like(tokens.mask[:, :1])], dim=1)
        ends = tokens.mask.sum(dim=1)
        rows = torch.arange(b, device=ids.device)
        ids[rows, ends] = self.tokenizer.eos_token_id
        mask[rows, ends] = 1
        return Tokens(ids, mask)

    def _fixed(self, text: str, device: torch.device, bos: bool = False) -> torch.Tensor | None:
        """Ids [L] of a fixed template piece (None when empty)."""
        ids = self.prefixes((text,), device).ids[0] if text else torch.empty(0, dtype=torch.long, device=device)
        if bos:
            ids = torch.cat([torch.tensor([self.tokenizer.bos_token_id], device=device), ids])
        return ids if ids.numel() else None

    def _wrap(self, n: int, device: torch.device, body: list[tuple[torch.Tensor, torch.Tensor]]) -> LLMInputs:
        """BOS + head ++ body ++ tail, then the family's padding side."""
        template = self.template
        head = self._fixed(template.head, device, bos=self.llm.bos_first)
        tail = self._fixed(template.tail, device)
        pieces = ([self._fixed_piece(head, n)] if head is not None else []) + body
        if tail is not None:
            pieces.append(self._fixed_piece(tail, n))
        inputs = LLMInputs(torch.cat([p[0] for p in pieces], dim=1), torch.cat([p[1] for p in pieces], dim=1))
        return left_align(inputs) if self.llm.padding_side == "left" else inputs

    def _fixed_piece(self, ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = self._embed(ids.unsqueeze(0)).expand(n, -1, -1)
        return embeds, torch.ones((n, ids.numel()), dtype=torch.long, device=ids.device)

    def for_answer_read(self, inputs: LLMInputs, option_prefix: int) -> tuple[LLMInputs, int]:
        """The inputs and greedy step at which the option letter is read.

        T5 reads decoder step 2 after its own greedy step 1 (spec: ``scores[1]``); a
        decoder-only family has the target's prefix token ("Option") appended to the
        (left-aligned) prompt and reads the letter at the next position, step 1.
        """
        if not self.llm.answer_prefix_in_prompt:
            return inputs, self.llm.answer_step
        n, device = len(inputs), inputs.embeds.device
        embeds, mask = self._fixed_piece(torch.tensor([option_prefix], device=device), n)
        joined = LLMInputs(torch.cat([inputs.embeds, embeds.to(inputs.embeds.dtype)], dim=1), torch.cat([inputs.mask, mask], dim=1))
        return joined, self.llm.answer_step

    # -- layouts --------------------------------------------------------------------
    def single_frame(self, visual: torch.Tensor, text: Tokens) -> LLMInputs:
        """``visual`` [N, Q, D] with one tokenised text per row -> "Frame: " + visual + text.

        Texts come tokenised so that a question is tokenised once, not once per frame
        (``tokenize(texts).repeat(frames)``); padding is the same either way.
        """
        n = visual.shape[0]
        if text.ids.shape[0] != n:
            raise ValueError(f"{n} frames but {text.ids.shape[0]} texts")
        prefix = self.prefixes((FRAME_PREFIX + self.template.image_open,), visual.device)
        body = [
            (self._embed(prefix.ids).expand(n, -1, -1), prefix.mask.expand(n, -1)),
            (visual, self._visual_mask(visual)),
        ]
        close = self._fixed(self.template.image_close, visual.device)
        if close is not None:
            body.append(self._fixed_piece(close, n))
        body.append((self._embed(text.ids), text.mask))
        return self._wrap(n, visual.device, body)

    def video(self, visual: torch.Tensor, texts: Sequence[str]) -> LLMInputs:
        """``visual`` [B, K, Q, D], frames in time order -> "Frame i: " blocks + text."""
        b, k = visual.shape[:2]
        if b != len(texts):
            raise ValueError(f"{b} videos but {len(texts)} texts")
        device = visual.device
        opening = self.template.image_open
        prefix = self.prefixes(tuple(video_prefix(i + 1) + opening for i in range(k)), device)  # [K, P]
        prefix_embeds = self._embed(prefix.ids).unsqueeze(0).expand(b, -1, -1, -1)  # [B, K, P, D]
        parts = [prefix_embeds, visual]
        part_masks = [prefix.mask.unsqueeze(0).expand(b, -1, -1), self._visual_mask(visual)]
        close = self._fixed(self.template.image_close, device)
        if close is not None:
            close_embeds, close_mask = self._fixed_piece(close, b * k)
            parts.append(close_embeds.reshape(b, k, -1, visual.shape[-1]).to(visual.dtype))
            part_masks.append(close_mask.reshape(b, k, -1))
        blocks = torch.cat(parts, dim=2).reshape(b, -1, visual.shape[-1])
        block_mask = torch.cat(part_masks, dim=2).reshape(b, -1)
        text = self.tokenize(texts, device)
        return self._wrap(b, device, [(blocks, block_mask), (self._embed(text.ids), text.mask)])

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.embed(ids)

    @staticmethod
    def _visual_mask(visual: torch.Tensor) -> torch.Tensor:
        return torch.ones(visual.shape[:-1], dtype=torch.long, device=visual.device)

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
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch

from lavis_sevila.models.llm.base import LanguageModel, LLMInputs

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


class PromptLayout:
    def __init__(self, llm: LanguageModel, max_txt_len: int) -> None:
        self.llm = llm
        self.tokenizer = llm.tokenizer
        self.max_txt_len = max_txt_len

    # -- tokenisation ---------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], device: torch.device, special_tokens: bool = True) -> Tokens:
        batch = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.max_txt_len,
            add_special_tokens=special_tokens,
            return_tensors="pt",
        )
        return Tokens(batch.input_ids.to(device), batch.attention_mask.to(device))

    @lru_cache(maxsize=64)
    def _prefix_cpu(self, prefixes: tuple[str, ...]) -> Tokens:
        return self.tokenize(prefixes, torch.device("cpu"), special_tokens=False)

    def prefixes(self, prefixes: tuple[str, ...], device: torch.device) -> Tokens:
        cached = self._prefix_cpu(prefixes)
        return Tokens(cached.ids.to(device), cached.mask.to(device))

    def targets(self, texts: Sequence[str], device: torch.device) -> Tokens:
        """Target ids with padding replaced by -100 (ignored by the loss), and their mask."""
        tokens = self.tokenize(texts, device)
        ids = tokens.ids.masked_fill(tokens.ids == self.tokenizer.pad_token_id, -100)
        return Tokens(ids, tokens.mask)

    # -- layouts --------------------------------------------------------------------
    def single_frame(self, visual: torch.Tensor, text: Tokens) -> LLMInputs:
        """``visual`` [N, Q, D] with one tokenised text per row -> "Frame: " + visual + text.

        Texts come tokenised so that a question is tokenised once, not once per frame
        (``tokenize(texts).repeat(frames)``); padding is the same either way.
        """
        n = visual.shape[0]
        if text.ids.shape[0] != n:
            raise ValueError(f"{n} frames but {text.ids.shape[0]} texts")
        prefix = self.prefixes((FRAME_PREFIX,), visual.device)
        embeds = torch.cat(
            [self._embed(prefix.ids).expand(n, -1, -1), visual, self._embed(text.ids)], dim=1
        )
        mask = torch.cat([prefix.mask.expand(n, -1), self._visual_mask(visual), text.mask], dim=1)
        return LLMInputs(embeds, mask)

    def video(self, visual: torch.Tensor, texts: Sequence[str]) -> LLMInputs:
        """``visual`` [B, K, Q, D], frames in time order -> "Frame i: " blocks + text."""
        b, k = visual.shape[:2]
        if b != len(texts):
            raise ValueError(f"{b} videos but {len(texts)} texts")
        device = visual.device
        prefix = self.prefixes(tuple(video_prefix(i + 1) for i in range(k)), device)  # [K, P]
        prefix_embeds = self._embed(prefix.ids).unsqueeze(0).expand(b, -1, -1, -1)  # [B, K, P, D]
        blocks = torch.cat([prefix_embeds, visual], dim=2).reshape(b, -1, visual.shape[-1])
        block_mask = torch.cat(
            [prefix.mask.unsqueeze(0).expand(b, -1, -1), self._visual_mask(visual)], dim=2
        ).reshape(b, -1)
        text = self.tokenize(texts, device)
        embeds = torch.cat([blocks, self._embed(text.ids)], dim=1)
        mask = torch.cat([block_mask, text.mask], dim=1)
        return LLMInputs(embeds, mask)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.embed(ids)

    @staticmethod
    def _visual_mask(visual: torch.Tensor) -> torch.Tensor:
        return torch.ones(visual.shape[:-1], dtype=torch.long, device=visual.device)

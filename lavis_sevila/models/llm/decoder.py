"""Decoder-only LLMs (OPT, LLaMA/Vicuna) behind the LanguageModel interface.

The prompt is left-aligned by the layout (padding first, real tokens last: see
``layout.py``), so "the next-token logit after the prompt" is position -1 of every row.
Position ids are counted over real tokens only (``cumsum(mask) - 1``), so a row's
scores do not depend on how much padding its batch gave it.

* greedy steps: the prompt runs once, then each step feeds the previous argmax with the
  key/value cache (no ``generate()``);
* teacher forcing: the target (right-padded) follows the prompt; the labels are -100 on
  the whole prompt and on target padding, and the logits returned are aligned to the
  target (``logits[:, j]`` predicts target token j), as T5's decoder logits are.
"""
from __future__ import annotations

import torch

from lavis_sevila.models.llm.base import LanguageModel, LLMInputs, TeacherForced, parse_dtype


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position of every token among its row's real tokens (padding gets 0)."""
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


class DecoderOnlyLanguageModel(LanguageModel):
    padding_side = "left"
    prompt_special_tokens = False
    bos_first = True
    answer_step = 1
    answer_prefix_in_prompt = True
    lora_targets = ("q_proj", "v_proj")

    @classmethod
    def hf_classes(cls) -> tuple[type, type]:
        """The family's transformers config and causal-LM classes (imported on first use)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config, tokenizer) -> "DecoderOnlyLanguageModel":
        config_class, model_class = cls.hf_classes()
        overrides = dict(config.config)
        if config.name_or_path is not None:
            hf_config = config_class.from_pretrained(config.name_or_path)
            for key, value in overrides.items():
                setattr(hf_config, key, value)
            module = model_class.from_pretrained(config.name_or_path, config=hf_config)
        else:
            overrides.setdefault("vocab_size", len(tokenizer))
            for name in ("pad", "bos", "eos"):
                overrides.setdefault(f"{name}_token_id", getattr(tokenizer, f"{name}_token_id"))
            module = model_class(config_class(**overrides))
        if module.config.vocab_size < len(tokenizer):
            raise ValueError(
                f"{cls.family} vocab_size {module.config.vocab_size} is smaller than the tokenizer "
                f"({len(tokenizer)} tokens)"
            )
        module.to(parse_dtype(config.dtype))
        return cls(module, tokenizer)

    def _check_left_aligned(self, mask: torch.Tensor) -> None:
        if not bool(mask[:, -1].all()):
            raise ValueError("decoder-only prompts must be left-padded (every row's last token real); build them with PromptLayout")

    def greedy_step_logits(self, inputs: LLMInputs, steps: int) -> list[torch.Tensor]:
        inputs = self.cast(inputs)
        self._check_left_aligned(inputs.mask)
        mask = inputs.mask
        with self.precision(inputs.embeds.device):
            out = self.module(
                inputs_embeds=inputs.embeds, attention_mask=mask, position_ids=positions(mask),
                use_cache=True, return_dict=True,
            )
            read = [out.logits[:, -1].float()]
            for _ in range(steps - 1):
                next_ids = read[-1].argmax(dim=-1, keepdim=True)
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                out = self.module(
                    input_ids=next_ids, attention_mask=mask, position_ids=positions(mask)[:, -1:],
                    past_key_values=out.past_key_values, use_cache=True, return_dict=True,
                )
                read.append(out.logits[:, -1].float())
        return read

    def teacher_forced(self, inputs: LLMInputs, target_ids: torch.Tensor, target_mask: torch.Tensor) -> TeacherForced:
        inputs = self.cast(inputs)
        self._check_left_aligned(inputs.mask)
        prompt_len, target_len = inputs.embeds.shape[1], target_ids.shape[1]
        pad = self.tokenizer.pad_token_id
        target_embeds = self.embed(target_ids.masked_fill(target_ids < 0, pad)).to(inputs.embeds.dtype)
        embeds = torch.cat([inputs.embeds, target_embeds], dim=1)
        mask = torch.cat([inputs.mask, target_mask.to(inputs.mask.dtype)], dim=1)
        ignored = torch.full((len(inputs), prompt_len), -100, dtype=torch.long, device=target_ids.device)
        labels = torch.cat([ignored, target_ids.masked_fill(target_mask == 0, -100)], dim=1)
        with self.precision(embeds.device):
            out = self.module(
                inputs_embeds=embeds, attention_mask=mask, position_ids=positions(mask), labels=labels, return_dict=True
            )
        # position p predicts token p + 1: target token j is predicted at prompt_len - 1 + j
        aligned = out.logits[:, prompt_len - 1 : prompt_len - 1 + target_len]
        return TeacherForced(loss=out.loss.float(), logits=aligned)

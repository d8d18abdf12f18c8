"""OPT (BLIP-2 OPT's LLM) behind the LanguageModel interface: ``model.llm.family: opt``.

Layout as LAVIS's ``blip2_opt`` names it (``opt_model``, ``opt_proj``); the prompt follows
BLIP-2 OPT's VQA prompt ``Question: {} Answer:``: SeViLA's text is the question part and
`` Answer:`` ends the prompt.  OPT's BPE marks a word's leading space, so targets are
" yes" / " Option A" -- the tokens that follow "Answer:" in running text.
"""
from __future__ import annotations

from lavis_sevila.models.llm.base import PromptTemplate, register_family
from lavis_sevila.models.llm.decoder import DecoderOnlyLanguageModel
from lavis_sevila.models.tokenizer import BUILTIN_TINY, build_tiny_opt_tokenizer


@register_family("opt")
class OPTLanguageModel(DecoderOnlyLanguageModel):
    state_key = "opt_model"
    proj_key = "opt_proj"
    target_lead = " "
    template = PromptTemplate(head="", image_open="", image_close="", tail=" Answer:")

    @classmethod
    def load_tokenizer(cls, source: str):
        from transformers import AutoTokenizer

        if source == BUILTIN_TINY:
            source = str(build_tiny_opt_tokenizer())
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError(f"the OPT tokenizer {source!r} needs a pad and an EOS token")
        return tokenizer

    @classmethod
    def hf_classes(cls) -> tuple[type, type]:
        from transformers import OPTConfig, OPTForCausalLM

        return OPTConfig, OPTForCausalLM

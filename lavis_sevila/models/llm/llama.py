"""LLaMA / Vicuna (MiniGPT-4's LLM) behind the LanguageModel interface: ``model.llm.family: llama``.

Layout as MiniGPT-4 names it (``llama_model``, ``llama_proj``).  The prompt follows
MiniGPT-4's template ``###Human: <Img><ImageHere></Img> {text} ###Assistant:``, with each
frame's visual tokens inside ``<Img>...</Img>`` after its "Frame i: " prefix.  LLaMA has no
pad token; padding uses ``<unk>`` (always masked), never EOS, so an EOS in a target is
never mistaken for padding.
"""
from __future__ import annotations

from lavis_sevila.models.llm.base import PromptTemplate, register_family
from lavis_sevila.models.llm.decoder import DecoderOnlyLanguageModel
from lavis_sevila.models.tokenizer import BUILTIN_TINY, build_tiny_llama_tokenizer


@register_family("llama")
class LlamaLanguageModel(DecoderOnlyLanguageModel):
    state_key = "llama_model"
    proj_key = "llama_proj"
    template = PromptTemplate(head="###Human: ", image_open="<Img>", image_close="</Img>", tail=" ###Assistant:")

    @classmethod
    def load_tokenizer(cls, source: str):
        from transformers import LlamaTokenizerFast

        if source == BUILTIN_TINY:
            source = str(build_tiny_llama_tokenizer())
        tokenizer = LlamaTokenizerFast.from_pretrained(source, legacy=False)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.unk_token
        return tokenizer

    @classmethod
    def hf_classes(cls) -> tuple[type, type]:
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaConfig, LlamaForCausalLM

"""Flan-T5 (encoder-decoder) behind the LanguageModel interface.

Uses LAVIS's own copy of T5 (``lavis.models.blip2_models.modeling_t5``), the class the
authors' SeViLA runs, so logits match theirs on the same weights.  Reading a logit never
runs ``generate()``: the encoder runs once and only the one or two decoder steps that are
read are computed.
"""
from __future__ import annotations

from typing import Sequence

import torch
from transformers.modeling_outputs import BaseModelOutput

from lavis_sevila.models.llm.base import LanguageModel, LLMInputs, TeacherForced, parse_dtype, register_family


#: the authors set this on Flan-T5's config (exact erf GELU in the gated FFN); a T5 field,
#: so it lives here: ``model.llm.config.dense_act_fn`` overrides it (null keeps the config's)
DENSE_ACT_FN = "gelu"


@register_family("t5")
class T5LanguageModel(LanguageModel):
    """Encoder-decoder: the prompt (text + EOS, right-padded) is the encoder input; the
    localizer reads decoder step 1, the answerer step 2 (after the greedy "Option")."""

    state_key = "t5_model"
    proj_key = "t5_proj"
    lora_targets = ("q", "v")

    @classmethod
    def load_tokenizer(cls, source: str):
        from lavis_sevila.models.tokenizer import load_tokenizer

        return load_tokenizer(source)

    @classmethod
    def from_config(cls, config, tokenizer) -> "T5LanguageModel":
        from lavis.models.blip2_models.modeling_t5 import T5Config, T5ForConditionalGeneration

        overrides = dict(config.config)
        overrides.setdefault("dense_act_fn", DENSE_ACT_FN)
        if overrides["dense_act_fn"] is None:
            overrides.pop("dense_act_fn")
        if config.name_or_path is not None:
            t5_config = T5Config.from_pretrained(config.name_or_path)
            for key, value in overrides.items():
                setattr(t5_config, key, value)
            module = T5ForConditionalGeneration.from_pretrained(config.name_or_path, config=t5_config)
        else:
            overrides.setdefault("vocab_size", len(tokenizer))
            overrides.setdefault("decoder_start_token_id", tokenizer.pad_token_id)
            overrides.setdefault("pad_token_id", tokenizer.pad_token_id)
            overrides.setdefault("eos_token_id", tokenizer.eos_token_id)
            dense_act_fn = overrides.pop("dense_act_fn", None)
            t5_config = T5Config(**overrides)
            if dense_act_fn is not None:  # T5Config derives it from feed_forward_proj: set it after
                t5_config.dense_act_fn = dense_act_fn
            module = T5ForConditionalGeneration(t5_config)
        if module.config.vocab_size < len(tokenizer):
            raise ValueError(
                f"T5 vocab_size {module.config.vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)"
            )
        module.to(parse_dtype(config.dtype))
        return cls(module, tokenizer)

    _compiled_encoder = None

    def compile(self) -> None:
        """The encoder (most of the localizer's time) through torch.compile, shapes dynamic
        (rows and prompt lengths vary).  Same weights (LoRA included: the compiled module
        calls the same submodules), scores within ~1e-5 of eager in fp32."""
        self._compiled_encoder = torch.compile(self.module.encoder, dynamic=True)

    def _encode(self, inputs: LLMInputs) -> BaseModelOutput:
        encoder = self.module.encoder if self._compiled_encoder is None else self._compiled_encoder
        return encoder(inputs_embeds=inputs.embeds, attention_mask=inputs.mask, return_dict=True)

    def greedy_step_logits(self, inputs: LLMInputs, steps: int) -> list[torch.Tensor]:
        inputs = self.cast(inputs)
        start = self.module.config.decoder_start_token_id
        with self.precision(inputs.embeds.device):
            encoded = self._encode(inputs)
            next_ids = torch.full((len(inputs), 1), start, dtype=torch.long, device=inputs.embeds.device)
            past, read = None, []
            for _ in range(steps):
                out = self.module(
                    encoder_outputs=encoded,
                    attention_mask=inputs.mask,
                    decoder_input_ids=next_ids,
                    past_key_values=past,
                    use_cache=True,
                    return_dict=True,
                )
                logits = out.logits[:, -1].float()
                read.append(logits)
                past = out.past_key_values
                next_ids = logits.argmax(dim=-1, keepdim=True)
        return read

    def first_step_token_logits(self, inputs: LLMInputs, token_ids: Sequence[int]) -> torch.Tensor:
        """The first decoder step cut to what is read (the localizer's "yes"/"no").

        The step has one query, the start token, so (i) every block's self-attention sees a
        single key (softmax = 1: its output is ``o(v(ln(h)))``, and in block 0 the same for
        every row: computed once), and (ii) cross-attention needs no key and value projection
        of every encoder token: ``q . k_j = (W_k^T q) . h_j`` and ``sum_j p_j v_j =
        W_v (sum_j p_j h_j)``, per head; about 40x fewer multiply-adds than projecting the L
        encoder tokens.  The LM head only on ``token_ids``.  Same function as the module's
        decoder step (scores within float rounding, tested); plain path when a projection is
        not a plain Linear (LoRA on k/v), in train mode (dropout) or in fp16 (T5's clamps).
        """
        module = self.module
        blocks = module.decoder.block
        plain = all(type(getattr(b.layer[1].EncDecAttention, name)) is torch.nn.Linear
                    for b in blocks for name in ("k", "v"))
        if module.training or self.dtype == torch.float16 or not plain:
            return super().first_step_token_logits(inputs, token_ids)
        inputs = self.cast(inputs)
        with self.precision(inputs.embeds.device):
            enc = self._encode(inputs).last_hidden_state  # [N, L, D]
            n = enc.shape[0]
            start = torch.tensor([module.config.decoder_start_token_id], device=enc.device)
            h = module.decoder.embed_tokens(start)[None]  # [1, 1, D]: the same for every row until cross-attention
            pad = ~inputs.mask.bool()[:, None, :]  # [N, 1, L]
            for block in blocks:
                attn = block.layer[0]
                h = h + attn.SelfAttention.o(attn.SelfAttention.v(attn.layer_norm(h)))
                if h.shape[0] != n:
                    h = h.expand(n, -1, -1)
                cross = block.layer[1].EncDecAttention
                heads, dk = cross.n_heads, cross.key_value_proj_dim
                q = cross.q(block.layer[1].layer_norm(h)).view(n, heads, dk)  # [N, H, dk]
                wk = cross.k.weight.view(heads, dk, -1)  # [H, dk, D]
                scores = torch.bmm(torch.einsum("nhd,hde->nhe", q, wk), enc.transpose(1, 2))  # [N, H, L]
                scores = scores.masked_fill(pad, torch.finfo(scores.dtype).min)
                weights = torch.softmax(scores.float(), dim=-1).type_as(scores)
                context = torch.bmm(weights, enc)  # [N, H, D]
                wv = cross.v.weight.view(heads, dk, -1)
                out = torch.einsum("nhe,hde->nhd", context, wv).reshape(n, 1, heads * dk)
                h = h + cross.o(out)
                ff = block.layer[2]
                h = h + ff.DenseReluDense(ff.layer_norm(h))
            h = module.decoder.final_layer_norm(h)[:, 0]
            if module.config.tie_word_embeddings:
                h = h * (module.model_dim**-0.5)
            weight = module.lm_head.weight[list(token_ids)]
            return (h @ weight.t()).float()

    def teacher_forced(self, inputs: LLMInputs, target_ids: torch.Tensor, target_mask: torch.Tensor) -> TeacherForced:
        inputs = self.cast(inputs)
        with self.precision(inputs.embeds.device):
            out = self.module(
                inputs_embeds=inputs.embeds,
                attention_mask=inputs.mask,
                decoder_attention_mask=target_mask,
                labels=target_ids,
                return_dict=True,
            )
        return TeacherForced(loss=out.loss.float(), logits=out.logits)

    def teacher_forced_token_logits(
        self, inputs: LLMInputs, target_ids: torch.Tensor, target_mask: torch.Tensor, position: int,
        token_ids: Sequence[int],
    ) -> torch.Tensor:
        """The teacher-forced pass cut to what is read: decoder positions 0..position only
        (it is causal, so those logits are unchanged) and the LM head on ``token_ids`` only."""
        inputs = self.cast(inputs)
        module = self.module
        with self.precision(inputs.embeds.device):
            encoded = self._encode(inputs)
            decoded = module.decoder(
                input_ids=module._shift_right(target_ids)[:, : position + 1],
                attention_mask=target_mask[:, : position + 1],
                encoder_hidden_states=encoded.last_hidden_state,
                encoder_attention_mask=inputs.mask,
                use_cache=False,
                return_dict=True,
            )
            hidden = decoded.last_hidden_state[:, position]
            if module.config.tie_word_embeddings:
                hidden = hidden * (module.model_dim**-0.5)
            weight = module.lm_head.weight[list(token_ids)]
            return (hidden @ weight.t()).float()

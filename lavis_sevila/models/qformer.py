"""A role's bridge from image features to LLM input tokens: LayerNorm, Q-Former, projection
(``RoleModule``, one per role in ``SeViLA.roles``).

The Q-Former is BLIP-2's (LAVIS's BERT with cross-attention); its text-only parts are
removed, as the authors do, so they are absent from the state dict.
"""
from __future__ import annotations

import torch
from torch import nn


def build_qformer(config, vision_width: int) -> tuple[nn.Module, nn.Parameter]:
    """A randomly initialised Q-Former and its learned query tokens [1, Q, H].

    BLIP-2's real weights come from a checkpoint afterwards; building from a config keeps
    this offline (LAVIS's ``init_Qformer`` fetches bert-base-uncased from the hub).
    """
    from lavis.models.blip2_models.Qformer import BertConfig, BertLMHeadModel

    bert_config = BertConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob,
        max_position_embeddings=config.max_position_embeddings,
        layer_norm_eps=config.layer_norm_eps,
        initializer_range=config.initializer_range,
    )
    bert_config.encoder_width = vision_width
    bert_config.add_cross_attention = True
    bert_config.cross_attention_freq = config.cross_attention_freq
    bert_config.query_length = config.num_query_token
    qformer = BertLMHeadModel(bert_config)
    # text-only parts: unused by queries-only forward passes, dropped as in the authors' model
    qformer.cls = None
    qformer.bert.embeddings.word_embeddings = None
    qformer.bert.embeddings.position_embeddings = None
    for layer in qformer.bert.encoder.layer:
        layer.output = None
        layer.intermediate = None
    query_tokens = nn.Parameter(torch.zeros(1, config.num_query_token, config.hidden_size))
    query_tokens.data.normal_(mean=0.0, std=config.initializer_range)
    return qformer, query_tokens


def query_features(qformer: nn.Module, query_tokens: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
    """Q-Former output [N, Q, H] for image features [N, P, D] (all patches attended)."""
    queries = query_tokens.expand(image_embeds.shape[0], -1, -1)
    image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
    out = qformer.bert(
        query_embeds=queries,
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=image_mask,
        return_dict=True,
    )
    return out.last_hidden_state


class RoleModule(nn.Module):
    """One role (localizer or answerer): frame features -> its LLM input tokens.

    ``ln`` (the LayerNorm over ViT features), ``qformer``, ``query_tokens`` and ``proj`` (into
    the LLM's width).  Its LoRA adapter, if any, lives inside the LLM, where peft injects it,
    under the role's name.  Checkpoint names (``Qformer_loc``, ``t5_proj``, ...): convert.py.
    """

    def __init__(self, config, vision_width: int, llm_width: int) -> None:
        from lavis.models.blip2_models.blip2 import LayerNorm

        super().__init__()
        qformer, query_tokens = build_qformer(config, vision_width)  # first: the random draws stay in order
        self.ln = LayerNorm(vision_width)
        self.qformer = qformer
        self.query_tokens = query_tokens
        self.proj = nn.Linear(config.hidden_size, llm_width)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """LLM input tokens [N, Q, D_llm] for frame features [N, P, D]."""
        return self.proj(query_features(self.qformer, self.query_tokens, self.ln(feats)))

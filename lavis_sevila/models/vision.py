"""The frozen image encoder: LAVIS's EVA ViT, sized by a VisionConfig."""
from __future__ import annotations

import logging
from functools import partial

from torch import nn

logger = logging.getLogger(__name__)


def build_vision_encoder(config) -> nn.Module:
    """EVA ViT with ``config``'s sizes; weights from ``config.weights`` when given.

    LAVIS's ``create_eva_vit_g`` always downloads and unpickles; this builds the same
    class and loads the file through our checked, weights-only loader.
    """
    from lavis.models.eva_vit import VisionTransformer, convert_weights_to_fp16, interpolate_pos_embed

    encoder = VisionTransformer(
        img_size=config.img_size,
        patch_size=config.patch_size,
        use_mean_pooling=False,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        qkv_bias=True,
        drop_path_rate=config.drop_path_rate,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_checkpoint=config.use_grad_checkpoint,
    )
    if config.weights:
        from lavis_sevila.models.checkpoint import load_state_file
        from lavis_sevila.models.pretrained import resolve_file

        state = load_state_file(resolve_file(config.weights))
        interpolate_pos_embed(encoder, state)
        # EVA-CLIP's file holds the full ViT-g; BLIP-2 drops its last block and its head
        own = encoder.state_dict()
        unused = sorted(k for k in state if k not in own)
        state = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(state))
        if missing:
            raise KeyError(f"vision weights {config.weights} lack {len(missing)} key(s), e.g. {missing[:5]}")
        for key, value in state.items():
            if value.shape != own[key].shape:
                raise ValueError(f"vision weights {key}: shape {tuple(value.shape)} != {tuple(own[key].shape)}")
        encoder.load_state_dict(state, strict=True)
        logger.info("vision encoder: loaded %d tensors from %s (%d unused, e.g. %s)",
                    len(state), config.weights, len(unused), unused[:3])
    if config.precision == "fp16":
        convert_weights_to_fp16(encoder)
    return encoder


def freeze_module(module: nn.Module) -> None:
    """No gradients and eval mode for good (``train()`` can no longer switch it back)."""
    for param in module.parameters():
        param.requires_grad = False
    module.eval()
    module.train = _stay_in_eval.__get__(module)


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return self


def vision_width(encoder: nn.Module) -> int:
    return int(encoder.num_features)


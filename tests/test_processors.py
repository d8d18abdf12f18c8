"""sevila_video_eval / sevila_video_train (spec section 4)."""
import pytest
import torch
import torch.nn.functional as F
from lavis.common.registry import registry
from omegaconf import OmegaConf

import lavis_sevila  # noqa: F401  (registers the processors)
from lavis_sevila.processors import CLIP_MEAN, CLIP_STD, SevilaVideoEvalProcessor, SevilaVideoTrainProcessor


def frames(n=3, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def test_registered_once_under_their_names():
    assert registry.get_processor_class("sevila_video_eval") is SevilaVideoEvalProcessor
    assert registry.get_processor_class("sevila_video_train") is SevilaVideoTrainProcessor
    with pytest.raises(KeyError, match="already registered"):
        registry.register_processor("sevila_video_eval")(SevilaVideoEvalProcessor)


def test_from_config_reads_lavis_style_configs():
    cfg = OmegaConf.create({"name": "sevila_video_train", "image_size": 64, "min_scale": 0.6, "max_scale": 0.9})
    processor = registry.get_processor_class("sevila_video_train").from_config(cfg)
    assert (processor.image_size, processor.scale) == (64, (0.6, 0.9))
    assert SevilaVideoEvalProcessor.from_config(None).image_size == 224


def test_eval_is_scale_then_clip_normalisation():
    x = frames()
    out = SevilaVideoEvalProcessor(image_size=32)(x)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out, (x.float() / 255 - mean) / std)
    white = SevilaVideoEvalProcessor(image_size=32)(torch.full((1, 3, 32, 32), 255, dtype=torch.uint8))
    torch.testing.assert_close(white[0, :, 0, 0], (1 - mean.flatten()) / std.flatten())


@pytest.mark.parametrize("bad,error", [
    (torch.zeros(2, 3, 32, 32), TypeError),  # float: already processed?
    (torch.zeros(2, 32, 32, 3, dtype=torch.uint8), ValueError),  # channels last
    (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), ValueError),  # decoded at another size
])
def test_bad_frames_are_refused(bad, error):
    for processor in (SevilaVideoEvalProcessor(image_size=32), SevilaVideoTrainProcessor(image_size=32)):
        with pytest.raises(error):
            processor(bad)


def test_train_crop_box_is_shared_by_all_frames():
    x = frames(n=1).repeat(4, 1, 1, 1)  # four identical frames
    torch.manual_seed(3)
    out = SevilaVideoTrainProcessor(image_size=32)(x)
    for i in range(1, 4):
        assert torch.equal(out[0], out[i])


def test_train_is_deterministic_given_torch_seed():
    x = frames(n=4)
    processor = SevilaVideoTrainProcessor(image_size=32)
    torch.manual_seed(0)
    first = processor(x)
    torch.manual_seed(0)
    again = processor(x)
    torch.manual_seed(1)
    other = processor(x)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_train_crop_matches_a_hand_made_crop():
    """The box comes from RandomResizedCrop's rule under torch's RNG; resampling is bicubic."""
    from torchvision.transforms import RandomResizedCrop

    x = frames(n=2)
    processor = SevilaVideoTrainProcessor(image_size=32)
    torch.manual_seed(5)
    top, left, height, width = RandomResizedCrop.get_params(x, (0.5, 1.0), (3 / 4, 4 / 3))
    expected = F.interpolate(x[:, :, top:top + height, left:left + width].float(), size=(32, 32), mode="bicubic",
                             align_corners=False).clamp(0, 255).round()
    torch.manual_seed(5)
    torch.testing.assert_close(processor.crop(x).float(), expected)
    assert 0.5 * 32 * 32 <= height * width * 1.0001 and height <= 32 and width <= 32


def test_bicubic_overshoot_is_clamped_not_wrapped():
    """A sharp black/white edge overshoots; the authors' uint8 cast wraps 256+ to dark values."""
    from torchvision.transforms import RandomResizedCrop

    x = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    x[:, :, :, 16:] = 255
    processor = SevilaVideoTrainProcessor(image_size=32, min_scale=0.5, max_scale=0.5)
    for seed in range(50):  # find a crop that cuts across the edge
        torch.manual_seed(seed)
        top, left, height, width = RandomResizedCrop.get_params(x, processor.scale, processor.ratio)
        box = x[:, :, top:top + height, left:left + width].float()
        raw = F.interpolate(box, size=(32, 32), mode="bicubic", align_corners=False)
        if raw.max() > 255.5 and raw.min() < -0.5:
            break
    assert raw.max() > 255.5 and raw.min() < -0.5
    wrapped = raw.to(torch.uint8)  # the authors' ToUint8
    assert (wrapped[raw > 255.5] < 128).all()  # white overshoot turned dark
    torch.manual_seed(seed)
    cropped = processor.crop(x)
    assert cropped.dtype == torch.uint8
    assert (cropped[raw > 255.5] == 255).all() and (cropped[raw < -0.5] == 0).all()
    torch.testing.assert_close(cropped.float(), raw.clamp(0, 255).round())


def test_bad_scale_is_refused():
    with pytest.raises(ValueError, match="min_scale"):
        SevilaVideoTrainProcessor(min_scale=0.9, max_scale=0.5)

"""The contact sheet: a real PNG of sane size, with exactly the keyframes framed."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from lavis_sevila.video.writer import numbered_frames
from lavis_sevila.visualize import KEY_RGB, render_contact_sheet

OPTIONS = ["red", "green", "blue", "a much longer option that the caption has to shorten " * 3]


def _sheet(t=20, keyframes=(0, 7, 8, 19), layout="tchw"):
    frames = numbered_frames(t, 32, 32)  # grey levels and a gradient: nothing close to the key colour
    if layout == "tchw":
        frames = frames.transpose(0, 3, 1, 2)
    rng = np.random.default_rng(0)
    return render_contact_sheet(
        frames, rng.normal(size=t).tolist(), (np.arange(t) / 8).tolist(), list(keyframes),
        "What colour is it?", OPTIONS, [0.1, 0.6, 0.2, 0.1], 1, title="test", note="random weights",
    )


def _framed(image: np.ndarray, box) -> bool:
    """True when the middle of all four edges of the frame's box has the keyframe colour."""
    left, top, right, bottom = box
    cx, cy = (left + right) // 2, (top + bottom) // 2
    edge = [image[top, cx], image[bottom - 1, cx], image[cy, left], image[cy, right - 1]]
    return all(np.abs(pixel.astype(int) - KEY_RGB).max() <= 8 for pixel in edge)


@pytest.mark.parametrize("t, keyframes", [(20, (0, 7, 8, 19)), (32, (3, 10, 11, 30)), (5, (2,))])
def test_png_is_written_with_sane_size_and_exactly_the_keyframes_framed(tmp_path, t, keyframes):
    sheet = _sheet(t, keyframes)
    path = sheet.write(tmp_path / "sub" / "sheet.png")
    assert path.read_bytes() == sheet.png and sheet.png.startswith(b"\x89PNG")
    assert not list(path.parent.glob("*.part"))  # the atomic write left nothing behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any file the user writes
    image = Image.open(path)
    assert image.format == "PNG" and image.size == (sheet.width, sheet.height)
    assert 1000 <= sheet.width <= 1600 and 600 <= sheet.height <= 3000
    assert 10_000 < len(sheet.png) < 5_000_000
    pixels = np.asarray(image.convert("RGB"))
    assert len(sheet.frame_boxes) == t
    for left, top, right, bottom in sheet.frame_boxes:  # square cells inside the image
        assert 0 <= left < right <= sheet.width and 0 <= top < bottom <= sheet.height
        assert abs((right - left) - (bottom - top)) <= 2
    framed = [i for i, box in enumerate(sheet.frame_boxes) if _framed(pixels, box)]
    assert framed == sorted(keyframes) == sheet.keyframes


def test_frames_in_either_layout_draw_the_same_sheet():
    assert _sheet(layout="tchw").png == _sheet(layout="thwc").png


def test_the_frames_are_drawn_as_given():
    sheet = _sheet(20, (0,))
    pixels = np.asarray(Image.open(io.BytesIO(sheet.png)).convert("RGB")).astype(int)
    expected = numbered_frames(20, 32, 32)
    for i in (3, 12):  # unframed cells: their centre shows the frame's top half, grey level of frame i
        left, top, right, bottom = sheet.frame_boxes[i]
        centre_top = pixels[top + (bottom - top) // 4, (left + right) // 2]
        assert np.abs(centre_top - expected[i, 8, 16]).max() <= 2


@pytest.mark.parametrize("change, message", [
    (dict(scores=[0.0]), "scores"),
    (dict(keyframes=[5]), "outside"),
    (dict(probabilities=[1.0]), "probabilities"),
    (dict(answer_index=3), "answer index"),
])
def test_inconsistent_inputs_are_errors(change, message):
    args = dict(frames=np.zeros((4, 3, 8, 8), np.uint8), scores=[0.0] * 4, timestamps=[0.0, 1, 2, 3], keyframes=[1],
                question="q?", options=["a", "b"], probabilities=[0.5, 0.5], answer_index=0)
    args.update(change)
    with pytest.raises(ValueError, match=message):
        render_contact_sheet(**args)


def test_frames_must_be_uint8_rgb():
    with pytest.raises(ValueError, match="uint8"):
        render_contact_sheet(np.zeros((2, 3, 8, 8), np.float32), [0, 0], [0, 1], [0], "q", ["a", "b"], [0.5, 0.5], 0)

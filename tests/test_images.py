"""load_image on the inputs people actually upload, good and bad."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from hac.core.images import ImageError, load_image, png_bytes, resize_and_center_crop, save_png


def _save(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


def _gradient(mode="RGB", size=(40, 30)):
    array = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3).astype(np.uint8)
    return Image.fromarray(array, "RGB").convert(mode)


def test_rgb_png_round_trips_exactly(tmp_path):
    image = _gradient()
    x = load_image(_save(image, tmp_path / "a.png"))
    assert x.shape == (3, 30, 40) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(x)))), np.asarray(image))


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA"])
def test_modes_become_rgb(tmp_path, mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = _gradient().convert("L").convert(mode) if mode == "LA" else _gradient(mode)
    x = load_image(_save(image, tmp_path / f"img.{fmt.lower()}", format=fmt))
    assert x.shape == (3, 30, 40)
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.05


def test_16_bit_greyscale_keeps_its_range(tmp_path):
    array = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    x = load_image(path)
    assert x[0, 0, 0] == 0 and x[0, 0, -1] == pytest.approx(1.0)
    assert torch.equal(x[0], x[1])


def test_transparency_is_composited_over_white(tmp_path):
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    x = load_image(_save(image, tmp_path / "clear.png"))
    assert torch.allclose(x, torch.ones_like(x))


def test_exif_orientation_is_applied(tmp_path):
    image = _gradient(size=(40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = _save(image, tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    assert load_image(path).shape == (3, 40, 20)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_images_use_the_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (16, 16), color) for color in ((0, 0, 0), (255, 255, 255))]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], lossless=True)
    x = load_image(path)
    assert x.shape == (3, 16, 16) and x.max() < 0.05


def test_one_pixel_image_is_accepted(tmp_path):
    x = load_image(_save(Image.new("RGB", (1, 1), (10, 20, 30)), tmp_path / "dot.png"))
    assert x.shape == (3, 1, 1)
    assert resize_and_center_crop(x[None], 224).shape == (1, 3, 224, 224)


def test_bytes_input(tmp_path):
    buffer = io.BytesIO()
    _gradient().save(buffer, format="PNG")
    assert load_image(buffer.getvalue()).shape == (3, 30, 40)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_image(tmp_path / "nope.png")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(path)


def test_non_image_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


def test_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    _gradient(size=(200, 200)).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(path)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10_000, 60_000])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    with pytest.raises(ImageError, match="too large|over the limit"):
        load_image(path)


def test_configurable_pixel_limit(tmp_path):
    path = _save(_gradient(), tmp_path / "a.png")
    with pytest.raises(ImageError, match="over the limit of 1,000"):
        load_image(path, max_pixels=1000)


def test_save_png_is_lossless_for_8_bit_values(tmp_path):
    x = torch.randint(0, 256, (3, 9, 7)).float() / 255
    assert torch.equal(load_image(save_png(x, tmp_path / "x.png")), x)

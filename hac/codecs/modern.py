"""Modern classical codecs: AVIF and JPEG XL, real bitstreams, real bits per pixel.

Both are hand-designed (not learned) image codecs, twenty-odd years younger than JPEG:

* **AVIF** — AV1 intra coding (Alliance for Open Media, "AV1 Bitstream & Decoding Process
  Specification", 2019) in a HEIF container. Pillow >= 11.3 ships it (libavif: libaom encodes,
  dav1d decodes); nothing extra to install.
* **JPEG XL** — ISO/IEC 18181 (Alakuijala et al., "JPEG XL next-generation image compression
  architecture and coding tools", SPIE 2019): VarDCT in the XYB colour space, through libjxl.

They run like JPEG and WebP (:class:`~hac.codecs.classical.PillowCodec`): 8-bit quantisation,
encode to bytes, decode those bytes, ``bpp = 8 * len(bytes) / (H * W)`` — the whole file that the
encoder wrote (AVIF's HEIF boxes, some 300 bytes, are part of it, as JPEG's headers are of JPEG's;
JPEG XL is written as a bare codestream, no container). A batch is coded on PillowCodec's thread pool,
one image per thread, each encoder single-threaded so that a batch uses the cores once.

Neither has a differentiable surrogate: attack them with the ``bpda`` threat model (real codec
forward, identity backward).

**Why pillow-jxl-plugin for JPEG XL** (and not imagecodecs): both wrap libjxl in-process and both
encode and decode. imagecodecs (2026.x) requires numpy >= 2, which conflicts with CompressAI's
numpy < 2 that hac depends on, and it is a 26 MB wheel of some eighty codecs for one. pillow-jxl-plugin
is a 2.5 MB wheel (Rust bindings to libjxl, released for Linux, macOS and Windows, updated in 2026)
that registers a ``JXL`` format with Pillow, so JPEG XL goes through exactly the same save/open path
as JPEG, WebP and AVIF, and its own libjxl decoder reads the bitstream back.
"""

from __future__ import annotations

import PIL
from PIL import features

from .classical import PillowCodec, _check_range
from .factory import register_codec
from .info import CodecInfo

__all__ = ["MissingEncoderError", "AvifCodec", "JxlCodec", "AVIF", "JXL", "AVIF_SUBSAMPLING"]

AVIF = CodecInfo(
    description="AVIF (AV1 intra) through libavif/libaom via Pillow",
    qualities=range(1, 101),  # Pillow's scale; libavif maps it to AV1's quantiser
    default_quality=75,  # Pillow's own default
    start_quality=45,  # about 0.65 bpp on a 224 x 224 ImageNet crop
    sweep=(10, 20, 30, 40, 50, 60, 70, 80, 90),  # 0.11 to 2.5 bpp on Kodak (JPEG q 5-90: 0.22 to 2.3)
)
JXL = CodecInfo(
    description="JPEG XL (ISO/IEC 18181, lossy VarDCT) through libjxl via pillow-jxl-plugin",
    qualities=range(1, 100),  # q 100 (distance 0) is libjxl's separate lossless mode
    default_quality=90,  # pillow-jxl-plugin's own default (Butteraugli distance 1)
    start_quality=40,  # about 0.65 bpp on a 224 x 224 ImageNet crop
    sweep=(10, 20, 30, 40, 50, 60, 70, 80, 90, 95),  # 0.24 to 2.9 bpp on Kodak
)

AVIF_SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
"""AVIF chroma subsampling by number, numbered as JPEG's ``subsampling`` (0 = none, 2 = 4:2:0)."""


class MissingEncoderError(ImportError, ValueError):
    """An encoder is not installed here; the message names what to ``pip install``.

    A ``ValueError`` too, so that the CLI and the app report it as a user error.
    """


def _require_avif() -> None:
    if not features.check("avif"):
        raise MissingEncoderError(
            f"codec 'avif' needs Pillow built with AVIF support (Pillow {PIL.__version__} here has none); "
            "Pillow's wheels have it from 11.3 on: pip install --upgrade 'pillow>=11.3'"
        )


def _require_jxl() -> None:
    try:
        import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
    except ImportError as error:
        raise MissingEncoderError(
            "codec 'jxl' needs the JPEG XL plugin for Pillow, which is not installed: pip install pillow-jxl-plugin"
        ) from error


@register_codec("avif", info=AVIF)
class AvifCodec(PillowCodec):
    """AVIF (AV1 intra) through libavif/libaom via Pillow; no differentiable surrogate.

    Args:
        q: quality, one of :data:`AVIF`'s qualities (1, smallest, to 100).
        speed: encoder speed, 0 (slowest, smallest files) to 10 (fastest); libavif's default 6.
        subsampling: chroma subsampling, 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0 (default, as JPEG's).

    Raises:
        ValueError: a setting out of range (the message names it and the range).
        MissingEncoderError: this Pillow has no AVIF support.
    """

    format = "AVIF"

    def __init__(self, q: int = AVIF.default_quality, speed: int = 6, subsampling: int = 2) -> None:
        super().__init__()
        self.quality = AVIF.check_quality(q, "avif")
        self.speed = _check_range("avif speed", speed, 0, 10)
        self.subsampling = _check_range("avif subsampling", subsampling, 0, 2)
        _require_avif()
        self.params = {"q": self.quality}
        if self.speed != 6:
            self.params["speed"] = self.speed
        if self.subsampling != 2:
            self.params["subsampling"] = self.subsampling

    def pillow_options(self) -> dict:
        return {
            "quality": self.quality,
            "speed": self.speed,
            "subsampling": AVIF_SUBSAMPLING[self.subsampling],
            "max_threads": 1,
        }


@register_codec("jxl", info=JXL)
class JxlCodec(PillowCodec):
    """JPEG XL (ISO/IEC 18181, lossy VarDCT) through libjxl via pillow-jxl-plugin; no differentiable surrogate.

    JPEG XL codes colour in its XYB space without chroma subsampling, so there is no subsampling
    setting. ``q`` is libjxl's quality scale (q 90 is Butteraugli distance 1, "visually lossless");
    q 100 would be distance 0, which libjxl codes only in its separate lossless mode, so it is not offered.

    Args:
        q: quality, one of :data:`JXL`'s qualities (1, smallest, to 99).
        effort: encoder effort, 1 (fastest) to 9 (slowest, smallest files); libjxl's default 7.

    Raises:
        ValueError: a setting out of range (the message names it and the range).
        MissingEncoderError: pillow-jxl-plugin is not installed.
    """

    format = "JXL"

    def __init__(self, q: int = JXL.default_quality, effort: int = 7) -> None:
        super().__init__()
        self.quality = JXL.check_quality(q, "jxl")
        self.effort = _check_range("jxl effort", effort, 1, 9)
        _require_jxl()
        self.params = {"q": self.quality} if self.effort == 7 else {"q": self.quality, "effort": self.effort}

    def pillow_options(self) -> dict:
        return {"quality": self.quality, "effort": self.effort, "num_threads": 1}

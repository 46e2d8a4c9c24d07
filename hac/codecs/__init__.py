"""Codecs: classical (JPEG, WebP) and learned (CompressAI architectures), one interface.

See :mod:`hac.codecs.base` for the interface and :func:`create_codec` for the factory.
"""

from .base import Codec, CodecOutput
from .factory import codec_names, create_codec, register_codec

__all__ = ["Codec", "CodecOutput", "create_codec", "codec_names", "register_codec"]

"""Codecs: classical (JPEG, WebP) and learned (CompressAI architectures), one interface.

See :mod:`hac.codecs.base` for the interface and :func:`create_codec` for the factory.
"""

from .base import Codec, CodecOutput
from .factory import codec_info, codec_names, create_codec, register_codec
from .info import CodecInfo, CodecMode

__all__ = ["Codec", "CodecOutput", "CodecInfo", "CodecMode", "create_codec", "codec_info", "codec_names", "register_codec"]

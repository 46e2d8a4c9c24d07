"""Codecs: classical (JPEG, WebP) and learned (CompressAI architectures), one interface.

See :mod:`hac.codecs.base` for the interface and :func:`create_codec` for the factory.

A new codec is one module in this package: a :class:`Codec` subclass registered with
``@register_codec("name", info=CodecInfo(...))``, whose :class:`CodecInfo` declares its
qualities, default, weights per quality and attack support. The module is found on first
use, and the app, ``hac rd``, ``hac eval`` and the CLI read the declaration (never the name).
"""

from .base import Codec, CodecOutput
from .factory import codec_info, codec_names, create_codec, register_codec
from .info import CodecInfo, CodecMode

__all__ = ["Codec", "CodecOutput", "CodecInfo", "CodecMode", "create_codec", "codec_info", "codec_names", "register_codec"]

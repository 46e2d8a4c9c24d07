"""The app's input components: Gradio's own, with user errors that name the field.

Each keeps its Gradio front end (``is_template``), so the page loads as with the plain components.
"""

from __future__ import annotations

import gradio as gr
from PIL import Image, UnidentifiedImageError

from . import handlers

__all__ = ["ImageUpload", "NumberInput", "SliderInput"]


class ImageUpload(gr.Image):
    """``gr.Image`` whose unreadable uploads become a clear :class:`gradio.Error`.

    Gradio's own preprocessing opens the file with Pillow and would otherwise fail
    with an internal error; ``is_template`` keeps Gradio's image front end.
    """

    is_template = True

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Image.DecompressionBombError as error:
            name = getattr(payload, "orig_name", None) or "the uploaded file"
            raise handlers.user_error(f"{name} is too large: {error}", "Image too large") from None
        except UnidentifiedImageError:
            name = getattr(payload, "orig_name", None) or "the uploaded file"
            raise handlers.user_error(
                f"{name} is not an image file this app can read (supported: PNG, JPEG, WebP, GIF, BMP, TIFF, ...)",
                "Unsupported file",
            ) from None
        except Exception as error:  # Pillow raises many types for broken files
            raise handlers.user_error(f"the uploaded file could not be read as an image: {error}", "Unreadable image") from None


class _NamedErrors:
    """Input errors of a numeric component (text, out of range, a fraction where a whole number goes) become a
    :class:`gradio.Error` that names the field; the component keeps Gradio's own front end."""

    is_template = True

    def get_block_name(self) -> str:
        # Gradio names a template's front end after its first base class, which would be this mixin
        # (the browser then waits for a front end that does not exist); name the Gradio component's.
        return next(cls for cls in type(self).__mro__ if cls.__module__.startswith("gradio.")).__name__.lower()

    get_block_class = get_block_name

    def preprocess(self, payload):
        if getattr(self, "precision", None) == 0 and isinstance(payload, float) and not payload.is_integer():
            raise handlers.user_error(f"{self.label} must be a whole number, got {payload!r}", "Invalid input")
        try:
            return super().preprocess(payload)
        except gr.Error as error:
            raise handlers.user_error(f"{self.label}: {error.message}", "Invalid input") from None
        except (TypeError, ValueError):
            raise handlers.user_error(f"{self.label} must be a number, got {payload!r}", "Invalid input") from None


class NumberInput(_NamedErrors, gr.Number):
    """``gr.Number`` with errors that name the field."""


class SliderInput(_NamedErrors, gr.Slider):
    """``gr.Slider`` with errors that name the field."""

"""The Gradio app: a thin front over hac's library.

``build_demo()`` builds the Blocks (``hac.app.ui``); the buttons call plain
functions in ``hac.app.handlers``; models load lazily through one
:class:`~hac.app.cache.ModelCache`. ``app.py`` at the repository root launches it.
"""

from .cache import ModelCache
from .files import RunFiles
from .ui import build_demo, launch_kwargs

__all__ = ["build_demo", "launch_kwargs", "ModelCache", "RunFiles"]

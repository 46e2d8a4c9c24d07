"""Whether hac runs from a source checkout, and where that checkout is."""

from __future__ import annotations

from pathlib import Path

__all__ = ["checkout_root"]

_ROOT = Path(__file__).resolve().parents[2]


def checkout_root() -> Path | None:
    """The source checkout hac is imported from (an editable install counts), or ``None`` when installed.

    A checkout is the folder holding ``pyproject.toml`` beside the ``hac`` package; an installed
    wheel puts ``hac`` in ``site-packages``, which has neither.
    """
    return _ROOT if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "hac" / "__init__.py").is_file() else None

"""``python -m hac.app``: serve the app from an installed hac, as ``python app.py`` does from a checkout."""

from . import build_demo, launch_kwargs

if __name__ == "__main__":
    build_demo().launch(**launch_kwargs())

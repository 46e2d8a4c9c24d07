"""Gradio app and Hugging Face Space entry point: ``python app.py``.

Serves on ``$GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT`` (default 127.0.0.1:7860).
Building the demo loads no model; models load on first use.
"""

from hac.app import build_demo, launch_kwargs
from hac.app.files import exit_on_signals

demo = build_demo()

if __name__ == "__main__":
    exit_on_signals()  # SIGTERM/SIGINT exit normally, so the app's temporary folders are removed
    demo.launch(**launch_kwargs())

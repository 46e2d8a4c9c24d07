"""Gradio app and Hugging Face Space entry point: ``python app.py``.

Serves on ``$GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT`` (default 127.0.0.1:7860).
Building the demo loads no model; models load on first use.
"""

from hac.app import build_demo, launch_kwargs

demo = build_demo()

if __name__ == "__main__":
    demo.launch(**launch_kwargs())

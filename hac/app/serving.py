"""Run the app in a child process, as a user starts it, and wait for its first page.

From a checkout that is ``python app.py`` in the checkout; from an installed hac, ``python -m hac.app``.

Shared by the real-browser test and ``benchmarks/app_latency.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

from ..core.checkout import checkout_root

__all__ = ["app_command", "free_port", "start_app", "wait_until_served", "stop"]


def app_command() -> tuple[list[str], Path | None]:
    """The command that starts the app and the folder to start it in."""
    root = checkout_root()
    if root is not None and (root / "app.py").is_file():
        return [sys.executable, "app.py"], root
    return [sys.executable, "-m", "hac.app"], None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(port: int, log: IO[bytes], threads: int | None = None) -> subprocess.Popen:
    """The app (see :func:`app_command`) on 127.0.0.1:``port``, offline, output to ``log``; ``threads`` sets OMP_NUM_THREADS."""
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command, folder = app_command()
    return subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_served(url: str, process: subprocess.Popen, timeout: float) -> float:
    """Seconds until ``url`` answers 200, polling from the call.

    Raises:
        RuntimeError: the process exited first.
        TimeoutError: not served within ``timeout`` seconds.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the app did not serve {url} within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """Terminate, then kill if it has not exited after 20 s."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

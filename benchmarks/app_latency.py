"""How long the Gradio app takes to start, and to answer the attack tab, on this machine.

    python benchmarks/app_latency.py [--repeats 3] [--startup-runs 1] [--threads N] [--image PATH]

Two measurements, both end to end from outside the server process:

- start-up: ``python app.py`` is spawned on a free port and the root URL is
  polled until the first page is served (import + ``build_demo`` + launch);
- click to result: ``gradio_client`` calls the ``/attack`` endpoint with the tab's
  default settings (EfficientNet-Lite0, PGD-10 at 4/255 under BPDA, JPEG q=25,
  1 round) on a real photo, until every output (PNG files included) is back on
  the client. The first call also loads the classifier ("cold"); the next
  ``--repeats`` calls show the steady state ("warm", median and best).

``--threads N`` sets ``OMP_NUM_THREADS`` (torch's intra-op threads) for the app
process. The load average is printed before and after: on a shared machine the
numbers are only as good as the machine is idle.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hac.app.serving import free_port, start_app, stop, wait_until_served  # noqa: E402

DEFAULTS = dict(classifier="efficientnet-lite0", attack="pgd", eps_255=4, steps=10, threat="bpda",
                codec="jpeg", quality=25, chain="", rounds=1, seed=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm attack calls after the cold one")
    parser.add_argument("--startup-runs", type=int, default=1, help="extra cold starts to time")
    parser.add_argument("--threads", type=int, help="torch threads of the app process (OMP_NUM_THREADS)")
    parser.add_argument("--image", type=Path, help="photo to attack (default: scikit-image's chelsea.png)")
    args = parser.parse_args(argv)

    from gradio_client import Client, handle_file

    if args.image is None:
        import skimage.data

        args.image = Path(skimage.data.__file__).parent / "chelsea.png"

    load_before = os.getloadavg()
    startups, cold, warm = [], None, []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(1 + args.startup_runs):
            port = free_port()
            with open(Path(tmp) / f"app-{run}.log", "wb") as log:
                process = start_app(port, log, args.threads)
            try:
                startups.append(wait_until_served(f"http://127.0.0.1:{port}/", process, timeout=300))
                if run == 0:
                    client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=tmp)
                    for call in range(1 + args.repeats):
                        start = time.perf_counter()
                        result = client.predict(handle_file(str(args.image)), *DEFAULTS.values(), api_name="/attack")
                        elapsed = time.perf_counter() - start
                        assert Path(result[11]).is_file(), "the adversarial PNG did not come back"
                        if call == 0:
                            cold = elapsed
                        else:
                            warm.append(elapsed)
                    client.close()
            finally:
                stop(process)

    print(f"# app latency on {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"python {platform.python_version()}, app threads: {args.threads or 'torch default'}")
    print(f"# load average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"# attack tab defaults: {DEFAULTS['classifier']}, pgd-{DEFAULTS['steps']} eps={DEFAULTS['eps_255']}/255 "
          f"under {DEFAULTS['threat']}, {DEFAULTS['codec']}:q={DEFAULTS['quality']} x{DEFAULTS['rounds']}, "
          f"image {args.image.name} (fitted to 224x224)")
    rows = [
        ("start-up to first served page", startups[0], "runs: " + ", ".join(f"{t:.2f}" for t in startups)),
        ("click to result, cold (loads the model)", cold, "first /attack call"),
        ("click to result, warm (median)", statistics.median(warm) if warm else float("nan"),
         "calls: " + ", ".join(f"{t:.2f}" for t in warm)),
        ("click to result, warm (best)", min(warm) if warm else float("nan"), ""),
    ]
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measurement':<{width}}  {'seconds':>8}  note")
    for name, seconds, note in rows:
        print(f"{name:<{width}}  {seconds:8.2f}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Install everything the test suite needs, then run it. README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Headless Chromium for the browser tests (Debian's package; Playwright drives it, never downloads one).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
python -m pytest "$@"

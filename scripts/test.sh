#!/usr/bin/env bash
# Install everything the test suite needs, then run it. README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
python -m pytest "$@"

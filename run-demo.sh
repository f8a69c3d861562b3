#!/usr/bin/env bash
# Sets up what is missing, builds ferry, and runs the demo: two hosts on this
# machine, a busy VM moved live between them, progress and figures shown.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
make -j"$(nproc)" all >/dev/null
exec scripts/demo.sh

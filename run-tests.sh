#!/usr/bin/env bash
# Sets up what is missing, builds ferry (plain and ASan+UBSan), runs every test.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
make -j"$(nproc)" all
make -j"$(nproc)" SAN=1 all
exec tests/run.sh "$@"

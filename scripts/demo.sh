#!/usr/bin/env bash
# molt's demo on a fresh machine: installs and starts what it needs (as the test command does),
# builds molt, then `molt demo`: the example product installed with its database, upgraded
# through a real kill in the middle of the migration and a recovery, a broken release rolled
# back on its own, the journal and the measured downtime.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
exec cargo run -q -p cli -- demo "$@"

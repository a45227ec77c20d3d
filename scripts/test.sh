#!/usr/bin/env bash
# molt's test command: installs and starts what the tests need, then runs every check.
# Safe to run on a fresh machine (Debian with a Rust toolchain) and again on a prepared one.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

bash scripts/setup.sh
MOLT_TEST_DATABASE_URL=$(cat target/molt-test-database.url)
export MOLT_TEST_DATABASE_URL

# --- static checks --------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# --- tests ----------------------------------------------------------------------------
log "cargo test (workspace)"
cargo test --workspace 2>&1 | tee target/test-output.txt
# The nuwax suite: the original system's real schema chain, beside the project in
# ../shared/fixtures/nuwax. Run when it is there, and always under CI (missing, it fails loudly).
if [ -d ../shared/fixtures/nuwax ] || [ "${CI:-}" = true ]; then
  log "cargo test (nuwax suite, ../shared/fixtures/nuwax)"
  cargo test --workspace -- --ignored nuwax 2>&1 | tee -a target/test-output.txt
else
  log "nuwax suite not run: ../shared/fixtures/nuwax is not beside this clone"
fi
# The Debian package and the static binary, built as a release would be, then installed
# with apt, checked and removed (this machine's /usr/bin/molt comes and goes).
log "scripts/package.sh, then the package test"
bash scripts/package.sh
cargo test -p cli --test cli -- --ignored package_ 2>&1 | tee -a target/test-output.txt
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "\n%d passed, %d failed\n", p, f; exit (f > 0) }' target/test-output.txt

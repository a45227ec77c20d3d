#!/usr/bin/env bash
# The mutation pass over the journal and the engine (not run by CI: it takes about an hour on
# two cores). Each crate's mutants are tested by that crate's own tests; survivors are listed
# in target/mutants-<crate>/mutants.out/missed.txt, and ARCHITECTURE.md ("Mutation testing")
# says which are killed by which test or why one is equivalent.
#   bash scripts/mutants.sh [journal|engine]...
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
crates=("$@")
[ ${#crates[@]} -gt 0 ] || crates=(journal engine)
for c in "${crates[@]}"; do
  printf '\n== cargo mutants -p %s\n' "$c"
  cargo mutants -p "$c" --test-package "$c" -o "target/mutants-$c" || true
  printf '%s: %s caught, %s missed, %s unviable, %s timeouts\n' "$c" \
    "$(wc -l < "target/mutants-$c/mutants.out/caught.txt")" \
    "$(wc -l < "target/mutants-$c/mutants.out/missed.txt")" \
    "$(wc -l < "target/mutants-$c/mutants.out/unviable.txt")" \
    "$(wc -l < "target/mutants-$c/mutants.out/timeout.txt")"
done

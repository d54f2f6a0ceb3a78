#!/usr/bin/env bash
# The soak (scripts/soak) made short for ctest: four nodes in a private
# network namespace, two writers committing into one shared repository, one
# node SIGKILLed and restarted every 2-8 s, for GUTS_SOAK_SECONDS (45); then
# every node converges to the same objects, fingerprint and refs digest, the
# export passes git fsck --strict and holds both writers' last commits, and
# no node exited by itself. Runs with the build ctest gives ($GUTS_BUILD,
# the ASan+UBSan one under scripts/test). The 30-minute run and its numbers:
# docs/performance.md, "Soak".
set -euo pipefail
: "${GUTS_BUILD:?GUTS_BUILD must name the build directory}"
# A loaded 2-core machine with sanitizers: leave convergence plenty of time.
export SOAK_CONVERGE=${SOAK_CONVERGE:-180}
exec bash "$(dirname "$0")/../../scripts/soak" "${GUTS_SOAK_SECONDS:-45}"

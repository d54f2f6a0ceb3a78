#!/usr/bin/env bash
# fuzz_run.sh - every libFuzzer target of tests/fuzz/ for a bounded time.
#
# CI builds with gcc (build-test); libFuzzer needs clang. So this test makes
# its own clang build under $GUTS_BUILD/fuzz-clang (-DGUTS_FUZZ=ON with
# ASan+UBSan), builds only the fuzz targets and runs their ctest entries
# (fuzz/<target>: GUTS_FUZZ_SECONDS each, 30 by default, starting from the
# committed corpus). Skipped (77) without clang or its fuzzer runtime
# (Debian: clang, libclang-rt-14-dev), and in a build that is already a fuzz
# build (there ctest runs fuzz/* directly). A crash leaves its input in
# $GUTS_BUILD/fuzz-clang/fuzz-artifacts/: add it to tests/fuzz/corpus/<target>/
# once fixed.
set -euo pipefail
SRC=${GUTS_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${GUTS_BUILD:?GUTS_BUILD must name the build dir}
SECS=${GUTS_FUZZ_SECONDS:-30}

if grep -q '^GUTS_FUZZ:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  echo "fuzz_run: $BUILD is a fuzz build; its fuzz/* tests run the targets: skipped" >&2
  exit 77
fi
if ! command -v clang >/dev/null; then
  echo "fuzz_run: no clang: skipped" >&2
  exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' >"$probe/p.c"
if ! clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>/dev/null; then
  echo "fuzz_run: clang has no fuzzer runtime (libclang-rt-14-dev): skipped" >&2
  exit 77
fi

FB=$BUILD/fuzz-clang
CC=clang cmake -S "$SRC" -B "$FB" -DGUTS_FUZZ=ON -DGUTS_SANITIZE=ON \
  -DGUTS_FUZZ_SECONDS="$SECS" >/dev/null
targets=()
for f in "$SRC"/tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
cmake --build "$FB" -j"$(nproc)" --target "${targets[@]}" 2>&1 | grep -vE '^\[ *[0-9]+%\]' || true
test "${PIPESTATUS[0]}" -eq 0
cd "$FB"
ctest --output-on-failure -R '^fuzz/fuzz_'

#!/usr/bin/env bash
# Runs cloak-fuzz-frames for a bounded time over the committed seed corpus; with --source, first
# builds it with clang++ in a build dir of its own (the default build uses g++, which has no libFuzzer).
# Exit 0: no crash; 77: skipped (clang or libFuzzer missing, named); anything else: a failure.
set -euo pipefail

usage() {
  echo "usage: run_fuzz.sh (--fuzzer EXE | --source DIR --build DIR) --corpus DIR --work DIR [--seconds N]" >&2
  exit 2
}

fuzzer="" source="" build="" corpus="" work="" seconds="${CLOAK_FUZZ_SECONDS:-10}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --fuzzer) fuzzer="${2:?}"; shift 2 ;;
    --source) source="${2:?}"; shift 2 ;;
    --build) build="${2:?}"; shift 2 ;;
    --corpus) corpus="${2:?}"; shift 2 ;;
    --work) work="${2:?}"; shift 2 ;;
    --seconds) seconds="${2:?}"; shift 2 ;;
    *) usage ;;
  esac
done
[[ -n $corpus && -n $work ]] || usage
[[ -n $fuzzer || ( -n $source && -n $build ) ]] || usage

if [[ -z $fuzzer ]]; then
  cxx="$(command -v clang++ || true)"
  if [[ -z $cxx ]]; then
    echo "SKIPPED: clang++ is not installed (Debian packages clang and libclang-rt-14-dev); the fuzzer needs libFuzzer"
    exit 77
  fi
  if [[ ! -f $build/CMakeCache.txt ]]; then
    cmake -S "$source" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  cmake --build "$build" --target cloak-fuzz-frames -j "$(nproc)" 2>&1 | tail -n 20 || true
  fuzzer="$build/cloak-fuzz-frames"
  if [[ ! -x $fuzzer ]]; then
    if grep -q "CLOAK_LIBFUZZER_LINKS:INTERNAL=$" "$build/CMakeCache.txt" 2>/dev/null; then
      echo "SKIPPED: clang++ cannot link -fsanitize=fuzzer (Debian package libclang-rt-14-dev)"
      exit 77
    fi
    echo "FAILED: cloak-fuzz-frames did not build (see above)"
    exit 1
  fi
fi

# New inputs go to a scratch directory (listed first); the committed seeds are only read.
rm -rf "$work"
mkdir -p "$work/new"
echo "fuzzing $fuzzer for ${seconds}s over $corpus"
set +e
# max_len admits the largest frame (header + 65536-byte body) so size limits are reachable.
"$fuzzer" "$work/new" "$corpus" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 \
  -max_len=65600 -print_final_stats=1 -artifact_prefix="$work/" >"$work/fuzz.log" 2>&1
rc=$?
set -e
grep -E "^(INFO: seed corpus|Done |stat::)|ERROR|SUMMARY|invariant violated" "$work/fuzz.log" || true
if [[ $rc -ne 0 ]]; then
  tail -n 60 "$work/fuzz.log"
  echo "FAILED: the fuzzer found a crash or invariant violation (exit $rc); reproducer: $(find "$work" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'oom-*' | head -n 1)"
  exit 1
fi
echo "no crash in ${seconds}s"

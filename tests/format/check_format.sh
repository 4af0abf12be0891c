#!/usr/bin/env bash
# Fails when a C++ file of the tree is not formatted as .clang-format says (clang-format --dry-run
# --Werror), naming the files; exits 77 (skipped) when clang-format is not installed.
set -euo pipefail
root="$1"
format="${2:-}"
if [[ -z $format || ! -x $format ]]; then
  echo "clang-format is not installed (Debian package clang-format); skipping" >&2
  exit 77
fi
cd "$root"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cpp' '*.hpp')
else
  mapfile -t files < <(find harness bench tests -name '*.cpp' -o -name '*.hpp')
fi
if ! "$format" --dry-run --Werror "${files[@]}" 2>/tmp/cloak-format.$$; then
  grep -o '^[^:]*:' /tmp/cloak-format.$$ | sort -u | sed 's/:$//' | sed 's/^/not formatted: /' >&2
  echo "run: clang-format -i \$(git ls-files '*.cpp' '*.hpp')" >&2
  rm -f /tmp/cloak-format.$$
  exit 1
fi
rm -f /tmp/cloak-format.$$
echo "${#files[@]} C++ files formatted as .clang-format says"

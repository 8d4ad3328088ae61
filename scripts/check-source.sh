#!/usr/bin/env bash
# SPDX-License-Identifier: EUPL-1.2
# Checks the tracked sources (run by make test): every C file formatted as
# .clang-format says, every source file (C, Python, shell, CMake) carrying
# its SPDX licence line near the top.  Prints each offender; exits 1 when
# there is one.  scripts/check-source.sh --fix formats the C files instead.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v clang-format >/dev/null; then
  echo "check-source: clang-format is missing (scripts/deps.sh installs it)" >&2
  exit 1
fi
mapfile -t c_files < <(git ls-files '*.c' '*.h')
if [ "${1:-}" = --fix ]; then
  clang-format -i "${c_files[@]}"
  exit 0
fi

bad=0
for f in "${c_files[@]}"; do
  if ! clang-format --dry-run -Werror "$f" 2>/dev/null; then
    echo "check-source: $f is not formatted (scripts/check-source.sh --fix)"
    bad=1
  fi
done
while IFS= read -r f; do
  if ! head -n 3 "$f" | grep -q 'SPDX-License-Identifier: EUPL-1.2'; then
    echo "check-source: $f has no 'SPDX-License-Identifier: EUPL-1.2' line at the top"
    bad=1
  fi
done < <(git ls-files '*.c' '*.h' '*.py' '*.sh' 'CMakeLists.txt' '*/CMakeLists.txt' '*.cmake' \
           'Makefile' '.ci/run')
[ "$bad" = 0 ] && echo "check-source: formatting and licence lines ok"
exit "$bad"

#!/usr/bin/env bash
# SPDX-License-Identifier: EUPL-1.2
# Runs the whole test suite against one build folder: cmocka unit tests
# through ctest, then the pytest end-to-end tests against that build's
# zone-mta binary.  Ends with one summary line of counts; exits non-zero when
# anything failed.
set -uo pipefail
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd)
results="$build/test-results"
rm -rf "$results"
mkdir -p "$results"

# Debian's python3 has the test packages (pytest, aiosmtpd, dnspython); a
# python3 earlier on PATH (pyenv, venv) may not.
py=/usr/bin/python3

echo "== sources (formatting, licence lines)"
bash "$top/scripts/check-source.sh"
source_rc=$?

echo "== unit tests (cmocka via ctest)"
CMOCKA_MESSAGE_OUTPUT=xml CMOCKA_XML_FILE="$results/unit-%g.xml" \
  ctest --test-dir "$build" --output-on-failure
unit_rc=$?

echo "== end-to-end tests (pytest)"
# Sanitizer builds need far more memory: tests that measure RSS skip there.
sanitized=0
grep -q '^ZMTA_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" && sanitized=1
ZMTA_SANITIZED=$sanitized ZMTA_BIN="$build/zone-mta" "$py" -m pytest "$top/tests/e2e" -p no:cacheprovider \
  -o junit_family=xunit2 --junitxml="$results/e2e.xml" ${PYTEST_ARGS:-}
e2e_rc=$?
# pytest exits 5 when it collected nothing: that is a failure here.

"$py" - "$results" "$unit_rc" "$e2e_rc" "$source_rc" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
results = sys.argv[1]
unit_rc, e2e_rc, source_rc = (int(a) for a in sys.argv[2:5])
passed = failed = skipped = 0
for path in glob.glob(results + "/*.xml"):
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            failed += 1
        elif "skipped" in kinds:
            skipped += 1
        else:
            passed += 1
# A runner that failed without reporting a test case still counts.
if unit_rc != 0 and failed == 0:
    failed += 1
if e2e_rc != 0 and failed == 0:
    failed += 1
if passed == 0:
    failed += 1
# The source check (formatting, licence lines) counts as one test.
if source_rc == 0:
    passed += 1
else:
    failed += 1
print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
PY

#!/usr/bin/env bash
# Renders each man page given with man(1) at 80 columns, with groff's
# warnings on: any message on stderr fails the test.
#   render.sh PAGE...
set -uo pipefail
failed=0
for page in "$@"; do
  err=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
  rc=$?
  if [ $rc -ne 0 ] || [ -n "$err" ]; then
    echo "FAIL: man -l ${page##*/} (exit $rc):" >&2
    echo "$err" >&2
    failed=1
  else
    echo "ok: ${page##*/}"
  fi
done
exit $failed

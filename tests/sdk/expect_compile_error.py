#!/usr/bin/python3
"""Runs a compiler command that must fail, and checks why.
    expect_compile_error.py TEXT COMMAND...
Passes (exit 0) when COMMAND exits non-zero and its stderr holds TEXT; a
compile that succeeds, or fails for another reason, fails the test."""
import subprocess
import sys

text, cmd = sys.argv[1], sys.argv[2:]
r = subprocess.run(cmd, capture_output=True, text=True)
if r.returncode == 0:
    sys.exit(f"compiled, but should not have: {' '.join(cmd)}")
if text not in r.stderr:
    sys.exit(f"failed, but without '{text}':\n{r.stderr}")
print(f"refused as expected ('{text}')")

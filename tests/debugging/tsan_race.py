#!/usr/bin/env python3
"""tsan_race.py PROGRAM: the detector test of a ThreadSanitizer build (docs/debugging.md).

PROGRAM racy must fail with a TSan data race report that names both racing fibers' functions;
PROGRAM fixed (the same with a weft::mutex) must exit 0 with no report at all.
"""
import os
import subprocess
import sys

prog = sys.argv[1]
env = dict(os.environ)
# Reports go to stderr; exit code 66 on a report (TSan's default, made explicit).
env["TSAN_OPTIONS"] = (env.get("TSAN_OPTIONS", "") + ":exitcode=66").lstrip(":")
failures = []

racy = subprocess.run([prog, "racy"], env=env, capture_output=True, text=True, timeout=240)
for needle in ("WARNING: ThreadSanitizer: data race", "fiber_a_writes_counter",
               "fiber_b_writes_counter"):
    if needle not in racy.stderr:
        failures.append(f"racy: stderr lacks {needle!r}")
if racy.returncode != 66:
    failures.append(f"racy: exit status {racy.returncode}, expected 66 (a TSan report)")

fixed = subprocess.run([prog, "fixed"], env=env, capture_output=True, text=True, timeout=240)
if fixed.returncode != 0 or "ThreadSanitizer" in fixed.stderr:
    failures.append(f"fixed: exit status {fixed.returncode}, expected 0 with no report")

if failures:
    print("--- racy stderr ---\n" + racy.stderr)
    print("--- fixed stderr ---\n" + fixed.stderr)
    print("\n".join(failures))
    sys.exit(1)
print("racy: reported, naming both fibers' writers; fixed: clean")

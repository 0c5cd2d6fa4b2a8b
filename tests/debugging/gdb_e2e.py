#!/usr/bin/env python3
"""End-to-end test of weft's gdb extension (src/gdb/weft.py) on a live process and a core file.

usage: gdb_e2e.py <gdb> <path to gdb_target> <build directory>

Runs tests/gdb_target under gdb in batch mode. The program parks its fibers (a supervisor waiting
for its children, two consumers in gdb_target_consume() on channel "jobs", a sleeper in
gdb_target_nap()), checks through executor::fibers() that they all are parked and only then
raises SIGTRAP, so nothing depends on scheduling. At that stop gdb -- which loads the extension
through libweft's auto-load file in the build directory -- runs `weft fibers` and `weft bt ID`
of every fiber, checks that the thread's own registers came back, and writes a core file; a
second gdb does the same on the core file. Both listings must show every fiber with its wait
and its context values, and the backtraces must show the functions the fibers parked in.
"""
import os
import re
import subprocess
import sys
import tempfile

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAILED:", what, flush=True)


# Runs in gdb: every fiber's backtrace, each after a "== weft bt ID" line, and the selected
# thread's pc and sp before and after (`weft bt` must put them back).
BACKTRACES = r"""
python
import re
def _regs():
    f = gdb.newest_frame()
    return (int(f.read_register("rip")), int(f.read_register("rsp")))
before = _regs()
listing = gdb.execute("weft fibers", to_string=True)
for fid in re.findall(r"^  fiber (\d+) ", listing, re.M):
    gdb.write("== weft bt %s\n" % fid)
    try:
        gdb.execute("weft bt " + fid)
    except gdb.error as e:
        gdb.write("weft bt failed: %s\n" % e)
gdb.write("== registers %s\n" % ("kept" if _regs() == before else "CHANGED"))
end
"""


def run_gdb(gdb, build, args, script, after=()):
    # The extension comes in through libweft's auto-load file in the build directory.
    cmd = [gdb, "-nx", "-batch", "-iex", "add-auto-load-safe-path " + build,
           "-iex", "set pagination off", "-iex", "set confirm off", *args,
           "-ex", "weft fibers", "-x", script, *after]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240)


def check_output(out, where):
    listing = {}
    for m in re.finditer(r"^  fiber (\d+) parent (\d+) (\w+)(.*)$", out, re.M):
        listing[int(m.group(1))] = (int(m.group(2)), m.group(3), m.group(4))
    check(re.search(r"^executor 'gdb-target': 4 fibers \(0 running, 0 ready, 4 suspended\)$",
                    out, re.M), f"{where}: executor line")
    check(len(listing) == 4, f"{where}: 4 fibers listed: {listing}")
    by_wait = {}
    for fid, (parent, state, rest) in listing.items():
        check(state == "suspended", f"{where}: fiber {fid} suspended: {state}")
        wait = re.match(r" \(([^)]*)\)", rest)
        by_wait.setdefault(wait.group(1) if wait else "", []).append((fid, parent, rest))
    sup = by_wait.get("task: get", [])
    consumers = by_wait.get("channel jobs: recv", [])
    sleeper = by_wait.get("sleep", [])
    check(len(sup) == 1 and len(consumers) == 2 and len(sleeper) == 1,
          f"{where}: waits {sorted(by_wait)}")
    if len(sup) == 1 and len(consumers) == 2 and len(sleeper) == 1:
        sid, sparent, srest = sup[0]
        check(sparent == 0, f"{where}: supervisor has no parent: {sparent}")
        check(srest.endswith("request_id=req-42 attempt=3 blob=<unprintable>"),
              f"{where}: supervisor context: {srest!r}")
        for fid, parent, rest in consumers + sleeper:
            check(parent == sid, f"{where}: fiber {fid} is the supervisor's child: {parent}")
        attempts = sorted(re.search(r"attempt=(\d+)", r).group(1) for _, _, r in consumers)
        check(attempts == ["1", "2"], f"{where}: consumers' own attempt values: {attempts}")
        check(all("request_id=req-42" in r and "blob=<unprintable>" in r
                  for _, _, r in consumers + sleeper), f"{where}: inherited context")
        bts = dict(re.findall(r"^== weft bt (\d+)\n(.*?)(?=^== )", out, re.M | re.S))
        for fid, _, _ in consumers:
            bt = bts.get(str(fid), "")
            check(re.search(r"^#\d+ .*gdb_target_consume", bt, re.M),
                  f"{where}: weft bt {fid} shows gdb_target_consume:\n{bt}")
            check(bt.count("\n#0 ") <= 1 and re.search(r"^#0 ", bt, re.M),
                  f"{where}: weft bt {fid} starts at #0:\n{bt}")
            check("weft::channel<int>::recv" in bt, f"{where}: weft bt {fid} shows the recv")
        bt = bts.get(str(sleeper[0][0]), "")
        check("gdb_target_nap" in bt, f"{where}: weft bt of the sleeper shows gdb_target_nap:\n{bt}")
        bt = bts.get(str(sid), "")
        check("weft::task<int>::get" in bt, f"{where}: the supervisor waits in task::get:\n{bt}")
    check("== registers kept" in out, f"{where}: registers restored after weft bt")


def main():
    gdb, target, build = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "backtraces.gdb")
        with open(script, "w") as f:
            f.write(BACKTRACES)
        core = os.path.join(tmp, "gdb_target.core")

        # The core file is written after the listing and the backtraces (gdb's
        # generate-core-file: no core_pattern or ulimit to depend on): `weft bt` must have left
        # the process as it found it.
        live = run_gdb(gdb, build, ["-ex", "run", target], script,
                       after=["-ex", "generate-core-file " + core, "-ex", "kill"])
        print("--- live process:\n" + live.stdout + live.stderr, flush=True)
        check("Python Exception" not in live.stdout + live.stderr, "live: no Python exception")
        check("SIGTRAP" in live.stdout, "live: stopped at the program's SIGTRAP")
        check_output(live.stdout, "live")
        check(os.path.exists(core), "core file written")
        if os.path.exists(core):
            # From a worker thread: it sleeps in a futex wait whose innermost frames are
            # inlined functions, which the unwinder must step over.
            dead = run_gdb(gdb, build, [target, core, "-ex", "thread 2"], script)
            print("--- core file:\n" + dead.stdout + dead.stderr, flush=True)
            check("Python Exception" not in dead.stdout + dead.stderr, "core: no Python exception")
            check_output(dead.stdout, "core")

    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("gdb e2e: all checks passed")


if __name__ == "__main__":
    main()

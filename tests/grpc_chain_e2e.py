#!/usr/bin/env python3
"""End-to-end test of examples/grpc_chain: client -> edge -> backend over loopback gRPC.

usage: grpc_chain_e2e.py <backend> <edge> <client>

Starts the backend and the edge on free ports, runs the client: the request id and the trace
the client set must appear in both services' replies and in both services' log lines, the
baggage must arrive, and the deadline must shrink on the way. Then a client deadline shorter
than the backend's work: the client fails with the deadline and the backend's log shows its
work stopped early. Finally SIGTERM: both services exit 0.
"""
import re
import signal
import subprocess
import sys
import threading
import time

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAILED:", what, flush=True)


class service:
    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.log = []
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
        line = self.proc.stdout.readline()
        check("listening on port " in line, f"{argv[0]} startup line: {line!r}")
        self.port = int(line.split()[-1]) if line.strip() else 0

    def text(self):
        return "".join(self.log)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


def wait_for(cond, limit=20.0):
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def main():
    backend_exe, edge_exe, client_exe = sys.argv[1:4]
    backend = service([backend_exe, "--port", "0", "--threads", "2"])
    edge = service([edge_exe, "--port", "0", "--threads", "2", "--backend", str(backend.port)])
    try:
        run = subprocess.run([client_exe, "--edge", str(edge.port), "--request-id", "e2e-7",
                              "--deadline-ms", "10000", "--work-ms", "20"],
                             capture_output=True, text=True, timeout=60)
        check(run.returncode == 0, f"client exit {run.returncode}: {run.stdout} {run.stderr}")
        seen = {}
        for line in run.stdout.splitlines():
            who, _, rest = line.partition(": ")
            seen[who] = dict(kv.split("=", 1) for kv in rest.split(" ") if "=" in kv)
        client, e, b = seen.get("client", {}), seen.get("edge", {}), seen.get("backend", {})
        trace = client.get("trace", "")
        check(re.fullmatch(r"[0-9a-f]{32}", trace) is not None, f"client trace {trace!r}")
        for who, r in (("edge", e), ("backend", b)):
            check(r.get("request_id") == "e2e-7", f"{who} request id: {r}")
            check(r.get("trace") == trace, f"{who} trace: {r} vs {trace}")
            check(r.get("baggage", "").startswith("tenant=acme"), f"{who} baggage: {r}")
        check(e.get("parent_span") != b.get("parent_span"), "the edge calls under a span of its own")
        d_edge, d_backend = int(e.get("deadline_ms", -1)), int(b.get("deadline_ms", -1))
        check(0 < d_edge <= 10300 and 0 < d_backend <= d_edge + d_edge // 50 + 5,
              f"deadlines: edge {d_edge}, backend {d_backend}")
        # Both services' log lines carry the request id and the trace.
        for who, s in (("edge", edge), ("backend", backend)):
            ok = wait_for(lambda: f"[e2e-7] [{trace}/" in s.text())
            check(ok, f"{who} log has the request id and trace: {s.text()!r}")

        # A deadline shorter than the work: the client fails, the backend stops early.
        began = time.monotonic()
        run = subprocess.run([client_exe, "--edge", str(edge.port), "--request-id", "late-1",
                              "--deadline-ms", "300", "--work-ms", "60000"],
                             capture_output=True, text=True, timeout=60)
        check(run.returncode == 1, f"late client exit {run.returncode}: {run.stdout} {run.stderr}")
        check(time.monotonic() - began < 30, "the late call ended at its deadline")
        check(wait_for(lambda: "[late-1]" in backend.text() and "work stopped" in backend.text()),
              f"backend stopped the late work: {backend.text()!r}")
    finally:
        check(edge.stop() == 0, "edge exits 0 on SIGTERM")
        check(backend.stop() == 0, "backend exits 0 on SIGTERM")
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("grpc_chain end to end: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

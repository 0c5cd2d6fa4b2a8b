#!/usr/bin/env python3
"""End-to-end test of examples/http_service over loopback.

usage: http_service_e2e.py <path to http_service>

Starts the service on a free port, drives it with keep-alive connections (request ids from the
header and generated ones, the offload and fan-out endpoints, a deadline, 100 concurrent
connections), checks the ids in the responses and in the service's log lines, then sends
SIGTERM while a request is in flight: that request must complete, an idle keep-alive
connection must be closed, and the service must exit 0. Then the --no-* switches, and
--log-file.
"""
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

failures = []
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAILED:", what, flush=True)


def get(conn, path, request_id=None, extra=None):
    headers = {"X-Request-Id": request_id} if request_id else {}
    headers.update(extra or {})
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    return r.status, r.getheader("X-Request-Id"), r.read().decode()


def features_off(exe):
    """--no-deadline --no-context --no-log: a late request is not cut off, the request id is
    neither read nor made up, and nothing is logged."""
    proc = subprocess.Popen([exe, "--port", "0", "--threads", "2", "--deadline-ms", "100",
                             "--no-deadline", "--no-context", "--no-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().split()[-1])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, rid, body = get(c, "/hello", "off-1")
        check(status == 200 and body == "hello, -\n" and rid == "-",  # the var's default
              f"--no-context: no request id: {status} {rid!r} {body!r}")
        status, rid, body = get(c, "/slow?ms=300", "off-2")
        check(status == 200 and body.startswith("done after 300 ms"),
              f"--no-deadline: a late request completes: {status} {body!r}")
        c.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        check(proc.returncode == 0, f"--no-*: exit status {proc.returncode}")
        check(err == "", f"--no-log: nothing logged: {err[:200]!r}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def log_file(exe):
    """--log-file PATH: the log lines, with their request id, go to PATH (flushed by the time
    the service exits), none to stderr; a path that cannot be opened is an error."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "service.log")
        proc = subprocess.Popen([exe, "--port", "0", "--threads", "2", "--log-file", path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            port = int(proc.stdout.readline().split()[-1])
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status, rid, _ = get(c, "/hello", "file-1")
            check(status == 200 and rid == "file-1", f"--log-file: /hello: {status} {rid}")
            c.close()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
            check(proc.returncode == 0, f"--log-file: exit status {proc.returncode}")
            check(err == "", f"--log-file: nothing on stderr: {err[:200]!r}")
            with open(path) as f:
                text = f.read()
            check(re.search(r"\[file-1\] \[[0-9a-f]{32}/[0-9a-f]{16}\] GET /hello", text),
                  f"--log-file: the request's line in the file: {text[-500:]!r}")
            check("all connections closed" in text, "--log-file: the last line is flushed")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    bad = subprocess.run([exe, "--port", "0", "--log-file", "/proc/self/no/such/file"],
                         capture_output=True, text=True, timeout=30)
    check(bad.returncode == 2 and "cannot log to /proc/self/no/such/file" in bad.stderr,
          f"--log-file: an unusable path: {bad.returncode} {bad.stderr[:200]!r}")


def main():
    exe = sys.argv[1]
    proc = subprocess.Popen([exe, "--port", "0", "--threads", "2", "--deadline-ms", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = []
    reader = threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        line = proc.stdout.readline()
        check(line.startswith("listening on port "), f"startup line: {line!r}")
        port = int(line.split()[-1])

        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(3):  # keep-alive: one connection, several requests
            status, rid, body = get(c, "/hello", f"ka-{i}")
            check(status == 200 and rid == f"ka-{i}" and body == f"hello, ka-{i}\n",
                  f"/hello ka-{i}: {status} {rid} {body!r}")
        status, rid, body = get(c, "/hello")
        check(status == 200 and rid is not None and rid.startswith("gen-") and rid in body,
              f"generated id: {status} {rid} {body!r}")
        status, rid, body = get(c, "/fanout?n=5", "fan")
        parts = body.splitlines()
        check(status == 200 and len(parts) == 5 and all(p.endswith(" of fan") for p in parts),
              f"/fanout: {status} {body!r}")
        status, rid, body = get(c, "/slow?ms=50", "slow-1")
        check(status == 200 and body == "done after 50 ms for slow-1\n", f"/slow: {status} {body!r}")
        status, rid, body = get(c, "/slow?ms=600", "late-1")
        check(status == 504 and rid == "late-1", f"deadline: {status} {body!r}")
        # W3C Trace Context and Baggage in: the request runs in that trace, downstream calls
        # carry it on (under spans of their own) with the baggage.
        status, rid, body = get(c, "/fanout?n=2", "w3c-1",
                                {"traceparent": TRACEPARENT, "baggage": "tenant=acme"})
        check(status == 200 and rid == "w3c-1", f"W3C request: {status} {rid}")
        status, rid, body = get(c, "/hello", "w3c-bad", {"traceparent": "00-garbage-01"})
        check(status == 200 and rid == "w3c-bad", f"malformed traceparent is ignored: {status}")
        status, rid, body = get(c, "/nothing", "nf")
        check(status == 404, f"404: {status}")

        # 100 concurrent connections, 5 requests each.
        bad = []

        def client(n):
            try:
                cc = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                for k in range(5):
                    rid = f"c{n}-{k}"
                    path = "/fanout?n=2" if k % 2 else "/hello"
                    status, got, body = get(cc, path, rid)
                    if status != 200 or got != rid or rid not in body:
                        bad.append((rid, status, got, body))
                cc.close()
            except Exception as e:  # noqa: BLE001 - any failure is a test failure
                bad.append((n, repr(e)))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not bad, f"concurrent clients: {bad[:3]}")

        # Shutdown: one request in flight, one idle keep-alive connection.
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        check(get(idle, "/hello", "idle")[0] == 200, "idle connection's first request")
        in_flight = {}

        def slow():
            s = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            in_flight["result"] = get(s, "/slow?ms=200", "in-flight")

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        t.join()
        result = in_flight.get("result")
        check(result is not None and result[0] == 200 and "in-flight" in result[2],
              f"in-flight request across SIGTERM: {result}")
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            code = None
        check(code == 0, f"exit status after SIGTERM: {code}")
        try:
            status = get(idle, "/hello", "after")[0]
            check(False, f"the idle connection still served a request ({status})")
        except (http.client.HTTPException, OSError):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    text = "".join(log)
    span = r" \[[0-9a-f]{32}/[0-9a-f]{16}\] "  # every line: [request id] [trace/span]
    check(re.search(r"\[ka-0\]" + span + "GET /hello", text), "log line with the header's request id")
    check(re.search(r"\[fan\]" + span + "downstream part 3 answered", text),
          "downstream log line carries the id")
    check(re.search(r"\[slow-1\]" + span + "blocking dependency: working 50 ms", text),
          "the offloaded call's log line carries the id")
    check(re.search(r"\[late-1\]" + span + "deadline of 300 ms exceeded", text),
          "deadline log line")
    trace_id = TRACEPARENT.split("-")[1]
    check(f"[w3c-1] [{trace_id}/" in text, "the caller's trace in the request's log lines")
    check(f"[w3c-1] [{trace_id}/{TRACEPARENT.split('-')[2]}]" not in text,
          "the request runs under a span of its own")
    check(re.search(r"\[w3c-1\].*downstream part 1 answered \(sent traceparent: 00-" + trace_id +
                    r"-[0-9a-f]{16}-01; baggage: tenant=acme; x-request-id: w3c-1; \)", text),
          "downstream calls carry the request id, the trace and the baggage")
    check("shutting down" in text, "shutdown logged")
    features_off(exe)
    log_file(exe)
    if failures:
        print(text[-3000:])
    print(f"http_service e2e: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""End-to-end test of examples/http_service over loopback.

usage: http_service_e2e.py <path to http_service>

Starts the service on a free port, drives it with keep-alive connections (request ids from the
header and generated ones, the offload and fan-out endpoints, a deadline, 100 concurrent
connections), checks the ids in the responses and in the service's log lines, then sends
SIGTERM while a request is in flight: that request must complete, an idle keep-alive
connection must be closed, and the service must exit 0.
"""
import http.client
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


def get(conn, path, request_id=None):
    headers = {"X-Request-Id": request_id} if request_id else {}
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    return r.status, r.getheader("X-Request-Id"), r.read().decode()


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
    check("[ka-0] GET /hello" in text, "log line with the header's request id")
    check("[fan] downstream part 3 answered" in text, "downstream log line carries the id")
    check("[slow-1] blocking dependency: working 50 ms" in text,
          "the offloaded call's log line carries the id")
    check("[late-1] deadline of 300 ms exceeded" in text, "deadline log line")
    check("shutting down" in text, "shutdown logged")
    if failures:
        print(text[-3000:])
    print(f"http_service e2e: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

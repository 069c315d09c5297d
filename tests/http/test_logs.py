"""Logs: one access line per request with every field (JSON and text), LOG_LEVEL, the startup configuration, DB_ECHO."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, binary, check, check_error, check_ok, database_url,  # noqa: E402
                       free_port, run_tests)

SECRET = "sekr1t-v4lue-%d" % os.getpid()
ACCESS_FIELDS = {"time": str, "level": str, "msg": str, "method": str, "path": str,
                 "status": int, "duration_ms": (int, float), "pool_wait_ms": (int, float),
                 "request_id": str}
TEXT_ACCESS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) info  (GET|POST|HEAD) (\S+) "
                         r"(\d{3}) (\d+\.\d{3})ms wait=(\d+\.\d{3})ms id=(\S+)"
                         r"(?: trace=([0-9a-f]{32}))?$")


def wait_for(s, pred, what, timeout=5):
    """The log lines once pred(lines) holds (lines arrive after the answer is sent)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = list(s.lines)
        if pred(lines):
            return lines
        time.sleep(0.02)
    raise AssertionError("%s; log:\n%s" % (what, "".join(s.lines[-30:])))


def traffic(s):
    """A mix of requests; returns their X-Request-Id values."""
    ids = []
    ids.append(check_ok(s.get("/pool", headers={"X-Request-Id": "log-pool"})) and "log-pool")
    r = s.post("/query", {"sql": "SELECT :p::text AS p", "params": {"p": SECRET}})
    check_ok(r)
    ids.append(r.header("x-request-id"))
    r = s.get("/nope")
    check_error(r, 404, "not_found")
    ids.append(r.header("x-request-id"))
    r = s.post("/query", {"sql": "SELECT * FROM nope_nope"})
    check_error(r, 400, "sql_error")
    ids.append(r.header("x-request-id"))
    r = s.request("HEAD", "/health/live")
    ids.append(r.header("x-request-id"))
    return ids


def json_lines(lines):
    out = []
    for ln in lines:
        try:
            out.append(json.loads(ln))
        except ValueError:
            raise AssertionError("not a JSON line: %r" % ln)
    return out


def test_json_access_lines():
    s = Server(LOG_FORMAT="json")
    try:
        ids = traffic(s)
        lines = wait_for(s, lambda ls: all(any(i in ln for ln in ls) for i in ids),
                         "an access line is missing")
        recs = json_lines(lines)
        access = [r for r in recs if r.get("msg") == "request"]
        for rec in access:
            for k, t in ACCESS_FIELDS.items():
                check(isinstance(rec.get(k), t), "access line lacks %s: %r" % (k, rec))
            check(rec["level"] == "info" and rec["duration_ms"] >= rec["pool_wait_ms"] >= 0, rec)
            check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", rec["time"]), rec)
        by_id = {}
        for rec in access:
            by_id.setdefault(rec["request_id"], []).append(rec)
        for i in ids:
            check(len(by_id.get(i, [])) == 1, "request %s has %d access lines"
                  % (i, len(by_id.get(i, []))))
        pool = by_id["log-pool"][0]
        check(pool["method"] == "GET" and pool["path"] == "/pool" and pool["status"] == 200, pool)
        check(by_id[ids[2]][0]["status"] == 404 and by_id[ids[3]][0]["status"] == 400, by_id)
        check(by_id[ids[4]][0]["method"] == "HEAD", by_id[ids[4]])
        check(not any(SECRET in ln for ln in lines), "a parameter value reached the log")
    finally:
        s.stop()


def test_paths_not_utf8_are_replaced():
    """A path with bytes that are not UTF-8: valid JSON in the body and in the log line."""
    for fmt in ("json", "text"):
        s = Server(LOG_FORMAT=fmt)
        try:
            for path, rid in ((b"/h\xffx", "utf8-raw"), (b"/h%FFx%C3", "utf8-escaped"),
                              (b"/h\xc3\xa9\xed\xa0\x80", "utf8-surrogate")):
                with socket.create_connection(("127.0.0.1", s.port), timeout=10) as k:
                    k.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                              b"X-Request-Id: " + rid.encode() + b"\r\n\r\n")
                    got = b""
                    while True:
                        chunk = k.recv(65536)
                        if not chunk:
                            break
                        got += chunk
                head, _, body = got.partition(b"\r\n\r\n")
                check(head.startswith(b"HTTP/1.1 404 ") and b"application/json" in head, got)
                err = json.loads(body.decode("utf-8"))["error"]  # strict: raises if not UTF-8
                check(err["code"] == "not_found" and "\ufffd" in err["message"], err)
                wait_for(s, lambda ls: any(rid in ln for ln in ls), "no access line")
                raw = [r for r in s.raw_lines if rid.encode() in r]
                check(len(raw) == 1, raw)
                text = raw[0].decode("utf-8")  # strict as well
                if fmt == "json":
                    rec = json.loads(text)
                    check(rec["status"] == 404 and "\ufffd" in rec["path"], rec)
                else:
                    check(TEXT_ACCESS.match(text.rstrip("\n")) and " /h" in text and
                          "?" in text, text)
            check_ok(s.get("/health/live"))
        finally:
            s.stop()


def test_startup_configuration_line():
    s = Server(LOG_FORMAT="json", DB_POOL_SIZE=4)
    try:
        recs = json_lines(wait_for(s, lambda ls: any("configuration:" in ln for ln in ls),
                                   "no configuration line"))
        conf = [r for r in recs if r["msg"].startswith("configuration:")]
        check(len(conf) == 1 and conf[0]["level"] == "info", conf)
        msg = conf[0]["msg"]
        for want in ("DB_POOL_SIZE=4", "LOG_FORMAT=json", "LOG_LEVEL=info", "DATABASE_URL="):
            check(want in msg, "configuration lacks %s: %s" % (want, msg))
        password = database_url().split("@")[0].rsplit(":", 1)[-1]
        check(password not in msg and "***" in msg, "configuration not redacted")
    finally:
        s.stop()


def test_text_access_lines():
    s = Server(LOG_FORMAT="text")
    try:
        ids = traffic(s)
        lines = wait_for(s, lambda ls: all(any("id=" + i in ln for ln in ls) for i in ids),
                         "an access line is missing")
        seen = {}
        for ln in lines:
            m = TEXT_ACCESS.match(ln.rstrip("\n"))
            if m:
                seen.setdefault(m.group(7), []).append(m.groups())
        for i in ids:
            check(len(seen.get(i, [])) == 1, "request %s: %r" % (i, seen.get(i)))
        check(seen["log-pool"][0][1:4] == ("GET", "/pool", "200"), seen["log-pool"])
        check(not any(SECRET in ln for ln in lines), "a parameter value reached the log")
    finally:
        s.stop()


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENTS = {"tp-valid": "00-%s-00f067aa0ba902b7-01" % TRACE,
                "tp-capitals": "00-%s-00f067aa0ba902b7-01" % TRACE.upper(),
                "tp-zero": "00-%s-00f067aa0ba902b7-01" % ("0" * 32),
                "tp-junk": "00-%s-00f067aa0ba902b7-01 x\"y" % TRACE}


def test_traceparent_in_access_lines():
    """A valid W3C traceparent's trace id joins the access line; an invalid one is ignored."""
    for fmt in ("json", "text"):
        s = Server(LOG_FORMAT=fmt)
        try:
            for rid, tp in TRACEPARENTS.items():
                check_ok(s.post("/query", {"sql": "SELECT 1"},
                                headers={"X-Request-Id": rid, "traceparent": tp}))
            check_ok(s.get("/health/live", headers={"X-Request-Id": "tp-none"}))
            ids = list(TRACEPARENTS) + ["tp-none"]
            lines = wait_for(s, lambda ls: all(any(i in ln for ln in ls) for i in ids),
                             "an access line is missing")
            got = {}
            if fmt == "json":
                for rec in json_lines(lines):
                    if rec.get("msg") == "request":
                        got[rec["request_id"]] = rec.get("trace_id")
            else:
                for ln in lines:
                    m = TEXT_ACCESS.match(ln.rstrip("\n"))
                    if m:
                        got[m.group(7)] = m.group(8)
            want = {i: TRACE if i == "tp-valid" else None for i in ids}
            check({i: got.get(i, "missing") for i in ids} == want, (fmt, got))
        finally:
            s.stop()


def test_pool_wait_measures_the_line():
    # One connection: the second of two slow requests waits for the first.
    s = Server(LOG_FORMAT="json", DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    try:
        def slow(rid):
            check_ok(s.post("/query", {"sql": "SELECT pg_sleep(0.5)"},
                            headers={"X-Request-Id": rid}, conn=s.connection()))
        ts = [threading.Thread(target=slow, args=("wait-%d" % i,)) for i in range(2)]
        for t in ts:
            t.start()
            time.sleep(0.1)
        for t in ts:
            t.join()
        lines = wait_for(s, lambda ls: sum('"request_id":"wait-' in ln for ln in ls) == 2,
                         "no access lines")
        waits = sorted(r["pool_wait_ms"] for r in json_lines(lines)
                       if r.get("request_id", "").startswith("wait-"))
        check(waits[0] < 100 and 300 < waits[1] < 2000, waits)
        fast = check_ok(s.get("/pool", headers={"X-Request-Id": "no-wait"}))
        check(fast, "pool")
        rec = [r for r in json_lines(wait_for(s, lambda ls: any("no-wait" in ln for ln in ls),
                                              "no line")) if r.get("request_id") == "no-wait"]
        check(rec[0]["pool_wait_ms"] == 0, rec)
    finally:
        s.stop()


def test_log_level_warn_keeps_only_problems():
    # No "listening on" line at warn, so the port is chosen here rather than read from the log.
    port = free_port()
    env = dict(os.environ, DATABASE_URL=database_url(), AUTH="none", HOST="127.0.0.1",
               PORT=str(port), LOG_LEVEL="warn", LOG_FORMAT="json", SHUTDOWN_TIMEOUT="0.3")
    p = subprocess.Popen([binary()], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(
        ln.decode() for ln in p.stderr), daemon=True)
    reader.start()
    try:
        import http.client
        deadline = time.time() + 10
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("GET", "/pool")
                check(c.getresponse().status == 200, "pool")
                c.close()
                break
            except OSError:
                check(time.time() < deadline, "the service never answered")
                time.sleep(0.05)
        slow = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        slow.request("POST", "/query", body=b'{"sql":"SELECT pg_sleep(3)"}',
                     headers={"Content-Type": "application/json"})
        time.sleep(0.3)
        # A drain that outlives SHUTDOWN_TIMEOUT is a warning: it must get through.
        p.send_signal(signal.SIGTERM)
        try:
            slow.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass
        check(p.wait(20) == 0, "exit code")
        reader.join(5)
        recs = json_lines(lines)
        check(recs and all(r["level"] in ("warn", "error") for r in recs),
              "info lines at LOG_LEVEL=warn: %r" % lines)
        check(not any("method" in r for r in recs), "access lines at LOG_LEVEL=warn")
        check(any("cancelling" in r["msg"] for r in recs), "the drain warning is missing: %r"
              % lines)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def echo_query(s, rid):
    check_ok(s.post("/query", {"sql": "SELECT :p::text AS echo_me", "params": {"p": SECRET}},
                    headers={"X-Request-Id": rid}))
    return wait_for(s, lambda ls: any('"request_id":"%s"' % rid in ln and '"path"' in ln
                                      for ln in ls), "no access line for " + rid)


def test_db_echo_sql_without_values():
    s = Server(LOG_FORMAT="json", DB_ECHO="1")
    try:
        recs = json_lines(echo_query(s, "echo-info"))
        sql = [r for r in recs if r["msg"].startswith("sql:") and "echo_me" in r["msg"]]
        check(len(sql) == 1 and sql[0]["level"] == "info", recs)
        # The core's line names the request it ran for.
        check(sql[0].get("request_id") == "echo-info", sql)
        check(not any(SECRET in json.dumps(r) for r in recs), "a value at LOG_LEVEL=info")
    finally:
        s.stop()


def test_db_echo_values_only_at_debug():
    s = Server(LOG_FORMAT="json", DB_ECHO="1", LOG_LEVEL="debug")
    try:
        recs = json_lines(echo_query(s, "echo-debug"))
        vals = [r for r in recs if SECRET in r["msg"]]
        check(len(vals) == 1 and vals[0]["level"] == "debug" and
              vals[0].get("request_id") == "echo-debug", vals)
    finally:
        s.stop()
    # debug alone is not enough.
    s = Server(LOG_FORMAT="json", LOG_LEVEL="debug")
    try:
        recs = json_lines(echo_query(s, "debug-only"))
        check(not any(SECRET in json.dumps(r) for r in recs), "a value without DB_ECHO")
        check(not any(r["msg"].startswith("sql:") for r in recs), "SQL without DB_ECHO")
    finally:
        s.stop()


if __name__ == "__main__":
    database_url()
    run_tests(dict(globals()))

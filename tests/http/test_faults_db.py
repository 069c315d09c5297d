"""Faults: backends killed and the database restarted under load; health and recovery; idle-in-transaction kills.

Runs alone (the name has _fault): it stops the shared cluster and terminates every
backend named querygate.
"""
import http.client
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, check, check_error, check_ok, cluster,  # noqa: E402
                       database_url, run_tests)

T = "t_faults_%d" % os.getpid()


def setup():
    database_url()
    admin_sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (k text NOT NULL, at timestamptz "
              "DEFAULT now()); GRANT ALL ON {t} TO qg".format(t=T))


def teardown(_):
    cluster("start")
    admin_sql("DROP TABLE IF EXISTS %s" % T)


def terminate_service_backends():
    """Terminates every backend of the service once some exist; returns how many."""
    deadline = time.time() + 5
    while time.time() < deadline:
        n = int(admin_sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                          "WHERE application_name = 'querygate'") or 0)
        if n:
            return n
        time.sleep(0.05)
    return 0


def post_once(conn, path, body):
    """One POST, never repeated (an insert sent twice would hide the bug we look for)."""
    conn.request("POST", path, body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(data or b"null")


def classify(status, headers, body):
    """'ok', 'unknown' (outcome unknown), 'failed' (a contract failure) or a description of a bug."""
    if status == 200:
        return "ok"
    err = (body or {}).get("error", {}) if isinstance(body, dict) else {}
    if status != 503 or not headers.get("retry-after"):
        return "bad %d %r" % (status, body)
    if err.get("code") == "db_unavailable":
        return "unknown" if err.get("outcome") == "unknown" else "failed"
    if err.get("code") == "pool_timeout" and "outcome" not in err:
        return "failed"
    return "bad %d %r" % (status, body)


def wait_healthy(s, limit):
    """Seconds until /query answers 200 again, polling every 50 ms; fails past limit."""
    t0 = time.time()
    while time.time() - t0 < limit:
        try:
            if s.request("POST", "/query", body={"sql": "SELECT 1 AS one"},
                         conn=s.connection()).status == 200:
                return time.time() - t0
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("the service did not recover within %gs" % limit)


def test_inserts_survive_killed_backends_and_a_restart(_):
    s = Server(DB_POOL_SIZE=4, DB_MAX_OVERFLOW=4, DB_POOL_TIMEOUT=5, DB_RETRIES=2,
               DB_RETRY_DELAY=0.1, DB_CONNECT_TIMEOUT=2)
    outcomes = {}  # key -> classification
    stop = threading.Event()
    lock = threading.Lock()

    def client(n):
        conn = s.connection()
        i = 0
        while not stop.is_set():
            key = "%d-%d" % (n, i)
            i += 1
            try:
                got = classify(*post_once(conn, "/insert", {
                    "sql": "INSERT INTO %s (k) VALUES (:k) RETURNING k" % T,
                    "params": {"k": key}}))
                if got == "ok" and key in outcomes:
                    got = "bad: answered 2xx twice"
            except (OSError, http.client.HTTPException) as e:
                got = "bad transport %r" % e
                conn.close()
                conn = s.connection()
            with lock:
                outcomes[key] = got
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.7)
        first = terminate_service_backends()
        time.sleep(0.7)
        second = terminate_service_backends()
        check(first and second, "killed %d, then %d backends" % (first, second))
        time.sleep(0.5)
        cluster("stop")
        time.sleep(0.5)
        cluster("start")
        recovered = wait_healthy(s, 10)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        cluster("start")
    try:
        rows = admin_sql("SELECT k, count(*) FROM %s GROUP BY k" % T)
        in_table = dict((k, int(c)) for k, c in (ln.split("|") for ln in rows.splitlines()))
        counts = {}
        for v in outcomes.values():
            counts[v if not v.startswith("bad") else "bad"] = counts.get(v, 0) + 1
        print("   outcomes %r, recovered %.2fs after the restart" % (counts, recovered))
        bad = [(k, v) for k, v in outcomes.items() if v.startswith("bad")]
        check(not bad, "answers outside the contract: %r" % bad[:5])
        check(counts.get("ok", 0) > 100, counts)
        check(counts.get("failed", 0) > 0, "the faults were not felt: %r" % counts)
        twice = [k for k, c in in_table.items() if c > 1]
        check(not twice, "applied more than once: %r" % twice[:5])
        lost = [k for k, v in outcomes.items() if v == "ok" and k not in in_table]
        check(not lost, "answered 200 but not in the table: %r" % lost[:5])
        phantom = [k for k in in_table if outcomes.get(k) not in ("ok", "unknown")]
        check(not phantom, "in the table though answered as failed: %r" %
              [(k, outcomes.get(k)) for k in phantom[:5]])
        check(recovered < 10, "recovered after %.1fs" % recovered)
        check_ok(s.post("/query", {"sql": "SELECT count(*) FROM %s" % T}))
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

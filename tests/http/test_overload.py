"""Load and abuse without faults: overload, clients that hang up, timeouts, serialization conflicts, probe storms."""
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (DbProxy, Server, admin_sql, check, check_error,  # noqa: E402
                       check_ok, database_url, proc_stats, run_tests)

T = "t_overload_%d" % os.getpid()


def setup():
    database_url()
    admin_sql("DROP TABLE IF EXISTS {t}, {t}_ser; CREATE TABLE {t} (k text); "
              "CREATE TABLE {t}_ser (k int PRIMARY KEY, v int NOT NULL); "
              "GRANT ALL ON {t}, {t}_ser TO qg".format(t=T))


def teardown(_):
    admin_sql("DROP TABLE IF EXISTS {t}, {t}_ser".format(t=T))


def concurrently(n, fn):
    """Runs fn(i) in n threads at once; returns their results (an exception counts as one)."""
    out = [None] * n
    start = threading.Barrier(n)

    def run(i):
        start.wait()
        try:
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - the caller checks
            out[i] = e
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def timed_query(s, sql):
    c = s.connection()
    try:
        t0 = time.time()
        r = s.request("POST", "/query", body={"sql": sql}, conn=c)
        return r, time.time() - t0
    finally:
        c.close()


def test_overload_answers_pool_timeout_and_resources_return(_):
    s = Server(DB_POOL_SIZE=2, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=1)
    try:
        concurrently(2, lambda i: timed_query(s, "SELECT 1"))  # both connections open
        time.sleep(0.2)
        base = proc_stats(s.proc.pid)
        got = concurrently(20, lambda i: timed_query(s, "SELECT pg_sleep(3)"))
        bad = [g for g in got if not isinstance(g, tuple)]
        check(not bad, bad)
        ok = [t for r, t in got if r.status == 200]
        busy = [(r, t) for r, t in got if r.status != 200]
        check(len(ok) == 2, "want 2 answered 200, got %r" % got)
        for r, t in busy:
            check_error(r, 503, "pool_timeout")
            check(r.header("retry-after") == "1", r.headers)
            check(t < 1 + 1.5, "pool_timeout after %.2fs (DB_POOL_TIMEOUT 1)" % t)
        deadline = time.time() + 5
        while True:
            now = proc_stats(s.proc.pid)
            settled = (now["threads"] <= base["threads"] and now["fds"] <= base["fds"] + 1 and
                       now["rss_kb"] <= base["rss_kb"] + 16 * 1024)
            if settled or time.time() > deadline:
                break
            time.sleep(0.1)
        print("   baseline %r, after %r" % (base, now))
        check(settled, "resources did not return: baseline %r, now %r" % (base, now))
        pool = check_ok(s.get("/pool"))
        check(pool["checked_out"] == 0 and pool["waiting"] == 0, pool)
    finally:
        s.stop()


def test_hundreds_of_clients_over_two_connections(_):
    """Issue 12: 300 clients at once, each with a read of its own, share two pooled
    connections; every one is answered 200 with its own row, and no connection more opens."""
    s = Server(DB_POOL_SIZE=2, DB_MAX_OVERFLOW=0)
    try:
        def read(i):
            c = s.connection()
            try:
                r = s.request("POST", "/query", conn=c,
                              body={"sql": "SELECT :i::int AS i, pg_sleep(0.01)", "params": {"i": i}})
                return r.status, r.json["rows"][0]["i"] if r.status == 200 else r.raw[:200]
            finally:
                c.close()
        got = concurrently(300, read)
        check(got == [(200, i) for i in range(300)],
              [(i, g) for i, g in enumerate(got) if g != (200, i)][:5])
        pool = check_ok(s.get("/pool"))
        check(pool["connects"] <= 2 and pool["checked_out"] == 0 and pool["waiting"] == 0 and
              pool["timeouts"] == 0, pool)
    finally:
        s.stop()


def raw_request(port, path, body):
    """Sends a request on a new socket and returns the socket without reading the answer."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "Content-Length: %d\r\n\r\n" % (path, len(data))).encode() + data)
    return sock


def active_statements(marker):
    return int(admin_sql("SELECT count(*) FROM pg_stat_activity WHERE state <> 'idle' AND "
                         "query LIKE '%%%s%%' AND pid <> pg_backend_pid()" % marker))


def wait_for(cond, limit, what):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > limit:
            raise AssertionError("%s: not within %gs" % (what, limit))
        time.sleep(0.05)
    return time.time() - t0


def test_client_disconnect_cancels_and_rolls_back(_):
    # Its own application_name: other tests' sessions (ctest runs two at once) may be idle
    # in a transaction between two round trips of theirs.
    app = "querygate_gone_%d" % os.getpid()
    url = database_url()
    s = Server(DB_POOL_SIZE=2, DB_MAX_OVERFLOW=0,
               DATABASE_URL=url + ("&" if "?" in url else "?") + "application_name=" + app)
    try:
        marker = "gone_%d" % os.getpid()
        cases = [
            ("/query", {"sql": "SELECT pg_sleep(10), '%s_q' AS m" % marker}, marker + "_q"),
            ("/transaction", {"statements": [
                {"sql": "INSERT INTO %s (k) VALUES ('%s')" % (T, marker)},
                {"sql": "SELECT pg_sleep(10), '%s_t' AS m" % marker}]}, marker + "_t"),
        ]
        for path, body, m in cases:
            sock = raw_request(s.port, path, body)
            wait_for(lambda: active_statements(m) == 1, 3, "%s started" % path)
            time.sleep(0.3)
            sock.close()
            took = wait_for(lambda: active_statements(m) == 0 and
                            check_ok(s.get("/pool"))["checked_out"] == 0, 2,
                            "%s cancelled after the client left" % path)
            print("   %s: cancelled %.2fs after the client left" % (path, took))
        check(admin_sql("SELECT count(*) FROM %s WHERE k = '%s'" % (T, marker)) == "0",
              "the abandoned transaction's insert was committed")
        check(admin_sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                        "'%s' AND state LIKE 'idle in transaction%%'" % app) == "0", "idle in tx")
        pool = check_ok(s.get("/pool"))
        check(pool["idle"] >= 1 and pool["connects"] <= 2, "connection not reused: %r" % pool)
        check_ok(s.post("/query", {"sql": "SELECT 1"}))
        metrics = s.get("/metrics").raw.decode()
        check('status="499"' in metrics, "no 499 in the metrics")
        # A client that stays gets its answer: the watcher does not cancel at random.
        r, _t = timed_query(s, "SELECT pg_sleep(0.5) AS s")
        check_ok(r)
    finally:
        s.stop()


def gone_client(s, path, sql, rid, after_gone=None):
    """Sends sql (or a body), hangs up once it runs; returns the request's JSON access line."""
    data = json.dumps(sql if isinstance(sql, dict) else {"sql": sql}).encode()
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "X-Request-Id: %s\r\nContent-Length: %d\r\n\r\n" % (path, rid, len(data))
                  ).encode() + data)
    wait_for(lambda: active_statements(rid) == 1, 3, "%s started" % rid)
    time.sleep(0.2)
    sock.close()
    if after_gone:
        after_gone()
    wait_for(lambda: any(rid in ln and '"request"' in ln for ln in s.lines), 5,
             "%s logged" % rid)
    return [json.loads(ln) for ln in s.lines if rid in ln and '"request"' in ln][0]


def test_client_gone_keeps_the_real_outcome(_):
    """499 only where the client's leaving cancelled the statement; else the real status."""
    # Catches each cancel that the client's leaving sends: the statement runs on.
    admin_sql("CREATE OR REPLACE FUNCTION {t}_survive(n int) RETURNS bool LANGUAGE plpgsql AS "
              "$$BEGIN FOR i IN 1..n LOOP BEGIN PERFORM pg_sleep(0.05); EXCEPTION WHEN "
              "query_canceled THEN NULL; END; END LOOP; RETURN true; END$$".format(t=T))
    proxy = DbProxy()
    s = Server(LOG_FORMAT="json", DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DATABASE_URL=proxy.url)
    m = "gone_real_%d" % os.getpid()
    try:
        rec = gone_client(s, "/query", "SELECT 1 / (NOT %s_survive(10))::int /* %s_a */"
                          % (T, m), m + "_a")
        check(rec["status"] == 400, "an error of its own: want 400, got %r" % rec)
        # A write that the connection has run before sends its COMMIT along; cut while it
        # runs, its outcome is unknown, and the log says so.
        write = "INSERT INTO %s (k) SELECT :k WHERE %s_survive(:n) /* %s_b */" % (T, T, m)
        check_ok(s.post("/update", {"sql": write, "params": {"k": "warm", "n": 0}}))
        rec = gone_client(s, "/update", {"sql": write, "params": {"k": m, "n": 100}}, m + "_b",
                          after_gone=lambda: (time.sleep(0.3), proxy.cut()))
        check(rec["status"] == 503, "a lost connection: want 503, got %r" % rec)
        # Cancelled for good: 499, and nothing stored.
        rec = gone_client(s, "/update", "INSERT INTO %s (k) SELECT '%s' FROM pg_sleep(5) "
                          "/* %s_c */" % (T, m, m), m + "_c")
        check(rec["status"] == 499, "cancelled: want 499, got %r" % rec)
        check(admin_sql("SELECT count(*) FROM %s WHERE k = '%s'" % (T, m)) == "0", "stored")
        metrics = s.get("/metrics").raw.decode()
        for status in ("400", "503", "499"):
            check(re.search(r'querygate_http_requests_total\{[^}]*status="%s"[^}]*\} 1' % status,
                            metrics), "metrics lack one %s: %s" % (status, metrics[:2000]))
    finally:
        s.stop()
        proxy.close()
        admin_sql("DROP FUNCTION IF EXISTS %s_survive(int)" % T)


def test_statement_timeout_leaves_a_sound_connection(_):
    s = Server(PG_STATEMENT_TIMEOUT=300, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    try:
        pid = check_ok(s.post("/query", {"sql": "SELECT pg_backend_pid() AS p"}))["rows"][0]["p"]
        e = check_error(s.post("/query", {"sql": "SELECT pg_sleep(2)"}), 504, "statement_timeout")
        check(e["sqlstate"] == "57014", e)
        e = check_error(s.post("/transaction", {"statements": [
            {"sql": "INSERT INTO %s (k) VALUES ('timed_out')" % T},
            {"sql": "SELECT pg_sleep(2)"}]}), 504, "statement_timeout")
        check(e["statement_index"] == 1, e)
        check(admin_sql("SELECT count(*) FROM %s WHERE k = 'timed_out'" % T) == "0", "committed")
        j = check_ok(s.post("/query", {"sql": "SELECT pg_backend_pid() AS p, 1 AS one"}))
        check(j["rows"][0] == {"p": pid, "one": 1}, "another connection or a bad one: %r" % j)
        check(check_ok(s.get("/pool"))["connects"] == 1, "the connection was replaced")
    finally:
        s.stop()


def serializable_pair(s):
    """Two serializable transactions that each read both rows, wait, then write one: write skew."""
    def tx(i):
        c = s.connection()
        try:
            return s.request("POST", "/transaction", conn=c, body={
                "isolation": "serializable", "statements": [
                    {"sql": "SELECT sum(v) AS total FROM %s_ser" % T},
                    {"sql": "SELECT pg_sleep(0.5)"},
                    {"sql": "UPDATE %s_ser SET v = v + 1 WHERE k = :k" % T,
                     "params": {"k": i + 1}}]})
        finally:
            c.close()
    admin_sql("TRUNCATE {t}_ser; INSERT INTO {t}_ser VALUES (1, 0), (2, 0)".format(t=T))
    concurrently(2, lambda i: timed_query(s, "SELECT 1"))  # two warm connections
    return concurrently(2, tx)


def test_serializable_conflict_is_409_without_retries(_):
    s = Server(DB_RETRIES=0)
    try:
        got = serializable_pair(s)
        statuses = sorted(r.status for r in got)
        check(statuses == [200, 409], "want one 200 and one 409, got %r" % got)
        e = check_error([r for r in got if r.status == 409][0], 409, "conflict")
        check(e["sqlstate"] == "40001", e)
        check(admin_sql("SELECT sum(v) FROM %s_ser" % T) == "1", "the loser was applied")
    finally:
        s.stop()


def test_serializable_conflict_retried(_):
    s = Server(DB_RETRIES=3, DB_RETRY_DELAY=0.05)
    try:
        got = serializable_pair(s)
        check([r.status for r in got] == [200, 200], "both should commit: %r" % got)
        check(check_ok(s.get("/pool"))["retries"] >= 1, "no retry counted")
        check(admin_sql("SELECT sum(v) FROM %s_ser" % T) == "2", "an update was lost")
    finally:
        s.stop()


def test_health_ready_probe_storm_costs_one_check_per_interval(_):
    """
    How the round trips are counted: the service gets a database of its own that nothing
    else uses, so xact_commit + xact_rollback of that database in pg_stat_database counts
    exactly the service's transactions: the health connection's startup and its checks
    (/health/ready touches no pooled connection). A backend reports its counters when it
    exits at the latest, so they are read after the service stopped and its backend left.
    Without the cache every probe would be one transaction.
    """
    db = "qg_storm_%d" % os.getpid()
    admin_sql("DROP DATABASE IF EXISTS %s" % db)
    admin_sql("CREATE DATABASE %s OWNER qg" % db)
    url = urllib.parse.urlsplit(database_url())
    s = Server(DATABASE_URL=urllib.parse.urlunsplit(url._replace(path="/" + db)),
               HEALTH_CACHE_MS=1000)
    try:
        answers = []
        lock = threading.Lock()
        end = time.time() + 3

        def prober(i):
            c = s.connection()
            n = 0
            t0 = time.time()
            while time.time() < end:
                r = s.request("GET", "/health/ready", conn=c)
                with lock:
                    answers.append(r.status)
                n += 1
                time.sleep(max(0, t0 + n / 50.0 - time.time()))  # 50 probes/s each
            c.close()
        t0 = time.time()
        concurrently(4, prober)
        secs = time.time() - t0
    finally:
        s.stop()
    try:
        wait_for(lambda: admin_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'"
                                   % db) == "0", 5, "the service's backends left")
        xacts = int(admin_sql("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                              "WHERE datname = '%s'" % db))
    finally:
        admin_sql("DROP DATABASE IF EXISTS %s" % db)
    print("   %d probes in %.1fs cost %d transactions" % (len(answers), secs, xacts))
    check(len(answers) >= 300 and set(answers) == {200}, "probes: %d, statuses %r" %
          (len(answers), set(answers)))
    # One check per started second, plus the connection's startup, plus slack: an
    # autovacuum worker visiting the new database counts there too (seen: 2 more). Without
    # the cache it would be one a probe, hundreds.
    check(1 <= xacts <= int(secs) + 6, "%d transactions for %d probes" % (xacts, len(answers)))


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

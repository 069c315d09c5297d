"""Faults: backends killed and the database restarted under load; health and recovery; idle-in-transaction kills.

Runs alone (the name has _fault): it stops the shared cluster and terminates every
backend named querygate.
"""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, WriteLoad, admin_sql, check, check_error, check_ok,  # noqa: E402
                       cluster, database_url, run_tests)

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
    load = WriteLoad(s, T)
    try:
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
        load.stop()
        cluster("start")
    try:
        counts = load.check_table(admin_sql("SELECT k, count(*) FROM %s GROUP BY k" % T))
        print("   outcomes %r, recovered %.2fs after the restart" % (counts, recovered))
        check(counts.get("ok", 0) > 100, counts)
        # Writes wait out the restart (DB_POOL_TIMEOUT) and killed ones run again: the
        # faults show in the retries more than in the answers.
        retries = check_ok(s.get("/pool"))["retries"]
        check(retries > 0, "the faults were not felt: %r, %d retries" % (counts, retries))
        check(recovered < 10, "recovered after %.1fs" % recovered)
        check_ok(s.post("/query", {"sql": "SELECT count(*) FROM %s" % T}))
    finally:
        s.stop()


def backend_pid(marker, timeout=5):
    """The pid of the backend running the statement that contains marker."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid = admin_sql("SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE "
                        "'%%%s%%' AND pid <> pg_backend_pid()" % marker)
        if pid:
            return int(pid.splitlines()[0])
        time.sleep(0.02)
    raise AssertionError("no backend runs %s" % marker)


def in_thread(fn):
    box = {}

    def run():
        try:
            box["r"] = fn()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            box["e"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, box


def test_read_retried_across_a_killed_connection(_):
    s = Server(DB_RETRIES=2, DB_RETRY_DELAY=0.05)
    try:
        marker = "read_retry_%d" % os.getpid()
        t, box = in_thread(lambda: s.request("POST", "/query", body={
            "sql": "SELECT pg_sleep(0.8) AS s, '%s' AS m" % marker}, conn=s.connection()))
        pid = backend_pid(marker)
        check(admin_sql("SELECT pg_terminate_backend(%d)" % pid) == "t", "terminate")
        t.join(15)
        r = box.get("r")
        j = check_ok(r, "the read after its connection was killed")
        check(j["rows"][0]["m"] == marker, j)
        check(check_ok(s.get("/pool"))["retries"] >= 1, "no retry counted")
    finally:
        s.stop()


def test_health_when_the_database_is_gone(_):
    s = Server(DB_CONNECT_TIMEOUT=2, HEALTH_CACHE_MS=300)
    try:
        check_ok(s.get("/health"))
        check_ok(s.get("/health/ready"))
        cluster("stop")
        try:
            for path in ("/health", "/health/ready"):
                time.sleep(0.3)  # past HEALTH_CACHE_MS
                t0 = time.time()
                r = s.get(path)
                took = time.time() - t0
                check(r.status == 503 and r.json["status"] == "unhealthy" and r.json["error"],
                      "%s: %r" % (path, r))
                check(took < 3, "%s took %.1fs" % (path, took))
                check("qg:" not in r.json["error"], "credentials in %r" % r.json)
            check_ok(s.get("/health/live"))
            e = check_error(s.post("/query", {"sql": "SELECT 1"}), 503, "db_unavailable")
            check("outcome" not in e, e)
        finally:
            cluster("start")
        t0 = time.time()
        while s.get("/health").status != 200:
            check(time.time() - t0 < 10, "/health not back after 10 s")
            time.sleep(0.1)
        check_ok(s.post("/query", {"sql": "SELECT 1"}))
    finally:
        s.stop()


def test_health_never_hangs_on_a_frozen_backend(_):
    """The health connection's backend stops answering (SIGSTOP): the probe is bounded."""
    s = Server(DB_CONNECT_TIMEOUT=1.5)
    try:
        check_ok(s.get("/health"))
        pid = int(admin_sql("SELECT pid FROM pg_stat_activity WHERE application_name = "
                            "'querygate' AND query = 'SELECT 1' ORDER BY backend_start DESC "
                            "LIMIT 1"))
        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.time()
            r = s.get("/health")
            took = time.time() - t0
        finally:
            os.kill(pid, signal.SIGCONT)
        check(r.status == 503 and "DB_CONNECT_TIMEOUT" in r.json["error"], r)
        check(1.2 < took < 4, "answered after %.1fs" % took)
        check_ok(s.get("/health/live"))
        check_ok(s.get("/health"), "a new health connection")
    finally:
        s.stop()


def test_idle_in_transaction_timeout_leaves_no_broken_connection(_):
    """The service is frozen mid-transaction past PG_IDLE_TX_TIMEOUT: the server kills the
    session; the transaction is run again on a new connection, and the pool stays sound."""
    s = Server(PG_IDLE_TX_TIMEOUT=300, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_RETRY_DELAY=0.05)
    try:
        before = check_ok(s.get("/pool"))
        t, box = in_thread(lambda: s.request("POST", "/transaction", body={"statements": [
            {"sql": "SELECT pg_sleep(0.6) AS a"}, {"sql": "SELECT 2 AS b"}]},
            conn=s.connection()))
        time.sleep(0.25)
        s.proc.send_signal(signal.SIGSTOP)  # the first statement is running on the server
        time.sleep(1.6)                      # it ends at ~0.6 s; killed idle at ~0.9 s
        s.proc.send_signal(signal.SIGCONT)
        t.join(15)
        j = check_ok(box.get("r"), "the transaction after its session was killed")
        check(j["results"][1]["rows"] == [{"b": 2}], j)
        after = check_ok(s.get("/pool"))
        check(after["retries"] > before["retries"], (before, after))
        for i in range(5):
            check_ok(s.post("/update", {"sql": "UPDATE %s SET k = k WHERE false" % T}), i)
        idle_tx = admin_sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'querygate' AND state LIKE 'idle in transaction%'")
        check(idle_tx == "0", "idle in transaction: %s" % idle_tx)
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

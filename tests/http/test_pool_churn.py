"""Regression: with the defaults, concurrent load reuses pooled connections instead of
opening a PostgreSQL session per request (HTTP_THREADS used to exceed DB_POOL_SIZE, and
the pool closes overflow connections on return)."""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import Server, check, check_ok, database_url, run_tests  # noqa: E402


def test_no_connection_per_request():
    database_url()
    s = Server()
    try:
        failures = []

        def client():
            c = s.connection()
            for i in range(40):
                r = s.post("/query", {"sql": "SELECT :i::int AS i", "params": {"i": i}}, conn=c)
                if r.status != 200:
                    failures.append(r)
            c.close()

        threads = [threading.Thread(target=client) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not failures, failures[:3])
        pool = check_ok(s.get("/pool"))
        # 960 requests from 24 clients: the pooled connections (overflow ones too,
        # kept DB_OVERFLOW_IDLE) serve them all; none is opened per request.
        check(pool["connects"] <= pool["size"] + pool["max_overflow"], pool)
        check(pool["errors"] == 0 and pool["recycles"] == 0, pool)
    finally:
        s.stop()


run_tests(globals())

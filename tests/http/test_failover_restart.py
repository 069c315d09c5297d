"""Failover (issue 14, item 1): querygate in front of a primary and its streaming standby
(qgharness.PgPair), DATABASE_URL naming both with target_session_attrs=read-write.

The primary stops under a write load and the standby is promoted: writes resume on it by
themselves, none acknowledged is lost or applied twice. With no primary, a write waits
DB_POOL_TIMEOUT, then 503 db_unavailable. A pooled connection that finds itself on a
standby is dropped and the write goes to the primary, never 403 read_only.

Runs alone (the name has _restart): it times failovers of its own pair.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (DbProxy, PgPair, Server, WriteLoad, binary, check, check_error,  # noqa: E402
                       check_ok, run_tests)

T = "t_failover"


def setup():
    binary()
    pair = PgPair()
    try:
        pair.sql("a", "CREATE TABLE %s (k text NOT NULL); GRANT ALL ON %s TO qg" % (T, T))
    except Exception:
        pair.close()
        raise
    return pair


def teardown(pair):
    pair.close()


def test_writes_follow_a_promoted_standby_under_load(pair):
    s = Server(DATABASE_URL=pair.url, DB_POOL_SIZE=4, DB_MAX_OVERFLOW=4, DB_POOL_TIMEOUT=10,
               DB_RETRY_DELAY=0.05, DB_CONNECT_TIMEOUT=2)
    load = WriteLoad(s, T)
    try:
        time.sleep(0.7)
        pair.stop("a", "fast")  # a fast shutdown sends the standby all WAL first
        time.sleep(1.0)
        promoting = time.time()
        pair.promote("b")
        promoted = time.time()
        while time.time() < promoted + 6 and not load.oks_after(promoted):
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        load.stop()
    try:
        counts = load.check_table(pair.sql("b", "SELECT k, count(*) FROM %s GROUP BY k" % T))
        after = load.oks_after(promoting)
        resumed = after[0] - promoting if after else None
        print("   outcomes %r, writes resumed %s s after pg_ctl promote began (it took %.2f s)"
              % (counts, "%.2f" % resumed if resumed is not None else "never",
                 promoted - promoting))
        check(counts.get("ok", 0) > 50, counts)
        # DB_POOL_TIMEOUT outlasts the failover: every write waited for the new primary.
        check(counts.get("failed", 0) == 0, "writes failed instead of waiting: %r" % counts)
        check(resumed is not None and resumed < 5, "writes resumed after %r s" % resumed)
        check(len(after) > 16, "only %d writes after the promotion" % len(after))
        check(any("waits for a primary" in ln for ln in s.lines), "no log line of the wait")
        check(any("a failover was followed" in ln and ":%d" % pair.port["b"] in ln
                  for ln in s.lines), "no log line of the followed failover")
    finally:
        s.stop()


def test_no_primary_answers_503_after_the_pool_timeout(pair):
    """After the failover b is the primary and a is down; b stops too."""
    s = Server(DATABASE_URL=pair.url, DB_POOL_TIMEOUT=2, DB_RETRY_DELAY=0.05,
               DB_CONNECT_TIMEOUT=2)
    try:
        check_ok(s.post("/insert", {"sql": "INSERT INTO %s (k) VALUES ('before')" % T}))
        pair.stop("b", "fast")
        try:
            t0 = time.time()
            e = check_error(s.post("/insert", {"sql": "INSERT INTO %s (k) VALUES ('none')" % T}),
                            503, "db_unavailable", "a write with no primary")
            took = time.time() - t0
            check("outcome" not in e, e)
            check(1.9 < took < 6, "answered after %.2fs (DB_POOL_TIMEOUT 2)" % took)
            t0 = time.time()
            check_error(s.post("/query", {"sql": "SELECT 1"}), 503, "db_unavailable", "a read")
            check(time.time() - t0 < 1.5, "a read waited %.2fs" % (time.time() - t0))
        finally:
            pair.start("b")
        check_ok(s.post("/insert", {"sql": "INSERT INTO %s (k) VALUES ('after')" % T}))
        check(pair.sql("b", "SELECT count(*) FROM %s WHERE k = 'none'" % T) == "0", "none")
    finally:
        s.stop()


def test_a_connection_on_a_standby_sends_the_write_to_the_primary(pair):
    """The old primary a comes back as a standby of b. querygate reaches the database
    through one address (a proxy, as a virtual IP or DNS name) that points at a, then
    moves to b: the pooled connection still on a is dropped, and the write runs on b."""
    pair.make_standby("a", of="b")
    proxy = DbProxy(target_url=pair.url_for("a"))
    url = "postgresql://qg:%s@127.0.0.1:%d/qg" % (pair.password,
                                                  proxy.listener.getsockname()[1])
    s = Server(DATABASE_URL=url, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=5,
               DB_RETRY_DELAY=0.05)
    try:
        j = check_ok(s.post("/query", {"sql": "SELECT pg_is_in_recovery() AS standby"}))
        check(j["rows"] == [{"standby": True}], j)
        # A read's INSERT on the standby is the caller's mistake: read_only, as anywhere.
        check_error(s.post("/query", {"sql": "INSERT INTO %s (k) VALUES ('ro')" % T}),
                    403, "read_only", "a read's INSERT")
        proxy.target = ("127.0.0.1", pair.port["b"])
        j = check_ok(s.post("/insert", {"sql": "INSERT INTO %s (k) VALUES ('moved') "
                                               "RETURNING inet_server_port() AS port" % T}),
                     "a write on the pooled standby connection")
        check(j["rows"] == [{"port": pair.port["b"]}], j)
        check(check_ok(s.get("/pool"))["retries"] >= 1, "no retry counted")
        check(any("read-only standby" in ln for ln in s.lines), "no log line")
    finally:
        s.stop()
        proxy.close()


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

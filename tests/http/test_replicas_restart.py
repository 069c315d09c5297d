"""Read replicas and read-your-writes (issue 14, items 2-4), on real servers: a primary "a"
and two streaming standbys "b" and "c" (qgharness.PgPair plus one more base backup).

Reads spread over the replicas and writes stay on the primary (pg_stat_activity on each);
a replica whose replay is paused is set aside past DB_REPLICA_MAX_LAG_MS and comes back;
a write's X-Querygate-LSN makes a later read see it; a replica stopped under read load
fails no read; with no usable replica, DB_READ_FALLBACK decides; PgBouncer (transaction
mode) in front of the primary and of a replica.

Runs alone (the name has _restart): it stops and starts servers of its own.
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (PgPair, Server, binary, check, check_error, check_ok,  # noqa: E402
                       free_port, run_tests, source_dir)

T = "t_replicas"
ADMIN = "replica-test-admin-key-0123456789"
LSN = re.compile(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")


def setup():
    binary()
    pair = PgPair()
    try:
        pair.make_standby("c", "a")
        pair.sql("a", "CREATE TABLE %s (k text NOT NULL); GRANT ALL ON %s TO qg" % (T, T))
    except Exception:
        pair.close()
        raise
    return pair


def teardown(pair):
    pair.close()


def server(pair, replicas="bc", **env):
    """querygate on primary a with the given replicas, the monitor checking every 100 ms."""
    base = dict(DATABASE_URL=pair.url_for("a"),
                DATABASE_READ_URLS=",".join(pair.url_for(n) for n in replicas),
                HEALTH_CACHE_MS=100, DB_CONNECT_TIMEOUT=2, DB_RETRY_DELAY=0.05)
    base.update(env)
    return Server(**base)


def replicas(s):
    """/pool's replicas by port (s.auth: the headers of a server with keys)."""
    pool = check_ok(s.get("/pool", headers=getattr(s, "auth", None)))
    return {r["name"].rsplit(":", 1)[1]: r for r in pool["replicas"]}


def wait_for(what, cond, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def usable(s, pair, node, want=True):
    port = str(pair.port[node])
    return wait_for("replica %s usable=%s" % (node, want),
                    lambda: replicas(s)[port]["usable"] == want and replicas(s)[port])


def both_usable(s, pair):
    usable(s, pair, "b")
    usable(s, pair, "c")


def read_port(s, headers=None, sql="SELECT inet_server_port() AS p", conn=None):
    r = s.post("/query", {"sql": sql}, headers=headers, conn=conn)
    return check_ok(r, "read")["rows"][0]["p"], r.header("x-querygate-served-by")


def insert(s, k):
    r = s.post("/insert", {"sql": "INSERT INTO %s (k) VALUES (:k) RETURNING inet_server_port() AS p"
                           % T, "params": {"k": k}})
    check_ok(r, "insert")
    check(r.header("x-querygate-served-by") == "primary", "insert served by %r" %
          r.header("x-querygate-served-by"))
    lsn = r.header("x-querygate-lsn")
    check(lsn and LSN.match(lsn), "insert without a valid X-Querygate-LSN: %r" % lsn)
    return r.json["rows"][0]["p"], lsn


def lsn_value(text):
    hi, lo = text.split("/")
    return int(hi, 16) << 32 | int(lo, 16)


def activity(pair, node, marker):
    return int(pair.sql(node, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%%s%%' "
                              "AND pid <> pg_backend_pid()" % marker).strip())


def test_reads_spread_over_replicas_and_writes_stay_on_the_primary(pair):
    s = server(pair, DB_POOL_SIZE=4, DB_READ_POOL_SIZE=2)
    try:
        both_usable(s, pair)
        pool = check_ok(s.get("/pool"))
        for r in pool["replicas"]:
            check({"url", "usable", "lag_ms", "checked_out", "idle", "waiting", "timeouts",
                   "errors"} <= set(r), "/pool replica lacks fields: %r" % r)
            check("qg:***@" in r["url"] and pair.password not in r["url"], r["url"])
        port, _ = insert(s, "spread")
        check(port == pair.port["a"], "the write ran on %r" % port)
        marker = "qg_spread_marker"
        answers, errors = [], []

        def reader():
            try:
                conn = s.connection()
                for _ in range(4):
                    answers.append(read_port(s, sql="SELECT inet_server_port() AS p, "
                                                    "pg_sleep(0.3), '%s' AS m" % marker, conn=conn))
                conn.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=reader) for _ in range(6)]
        for t in threads:
            t.start()
        # The most sessions seen running the read on each server while the readers run
        # (a server's first connections may still be opening at any one moment).
        seen = dict.fromkeys("abc", 0)
        while any(t.is_alive() for t in threads):
            for n in "abc":
                seen[n] = max(seen[n], activity(pair, n, marker))
            time.sleep(0.05)
        print("   pg_stat_activity running the read, most at once: %r" % seen)
        check(not errors, errors)
        check(seen["a"] == 0 and seen["b"] > 0 and seen["c"] > 0,
              "reads not spread over the replicas alone: %r" % seen)
        ports = {p for p, _ in answers}
        check(ports == {pair.port["b"], pair.port["c"]}, "reads ran on %r" % ports)
        check({by for _, by in answers} == {"replica"}, "Served-By: %r" % answers)
        # Sequential reads too: ties between replicas go round.
        ports = {read_port(s)[0] for _ in range(6)}
        check(ports == {pair.port["b"], pair.port["c"]}, "sequential reads ran on %r" % ports)
        # A streamed read is a read too.
        r = s.post("/query", {"sql": "SELECT inet_server_port() AS p FROM generate_series(1, 3)"},
                   headers={"Accept": "application/x-ndjson"})
        check(r.status == 200 and r.header("x-querygate-served-by") == "replica" and
              '"p":%d' % pair.port["a"] not in r.raw.decode(), "stream: %r" % r)
        # A read-only /transaction is a read; a read-write one is a write.
        r = s.post("/transaction", {"read_only": True, "statements": [
            {"sql": "SELECT inet_server_port() AS p"}]})
        check(check_ok(r)["results"][0]["rows"][0]["p"] in (pair.port["b"], pair.port["c"]) and
              r.header("x-querygate-served-by") == "replica", r)
        r = s.post("/transaction", {"statements": [{"sql": "SELECT inet_server_port() AS p"}]})
        check(check_ok(r)["results"][0]["rows"][0]["p"] == pair.port["a"] and
              r.header("x-querygate-served-by") == "primary" and r.header("x-querygate-lsn"), r)
        text = s.get("/metrics").raw.decode()
        for n in "bc":
            m = re.search(r'querygate_requests_served_total\{pool="replica",replica="127.0.0.1:%d"\}'
                          r" (\d+)" % pair.port[n], text)
            check(m and int(m.group(1)) > 0, "no served count for replica %s" % n)
            check('querygate_pool_checked_out{pool="replica",replica="127.0.0.1:%d"}'
                  % pair.port[n] in text, "no pool series for replica %s" % n)
        check(re.search(r'querygate_requests_served_total\{pool="primary"\} [1-9]', text),
              "no served count for the primary")
        check('querygate_pool_size{pool="primary"} 4' in text and
              'querygate_pool_size{pool="replica",replica="127.0.0.1:%d"} 2' % pair.port["b"]
              in text, "DB_READ_POOL_SIZE not the replicas' size")
    finally:
        s.stop()


def test_a_read_goes_to_the_replica_with_fewest_in_use(pair):
    s = server(pair)
    try:
        both_usable(s, pair)
        marker = "qg_fewest_marker"
        slow = threading.Thread(target=lambda: s.post(
            "/query", {"sql": "SELECT pg_sleep(1.5), '%s' AS m" % marker}, conn=s.connection()))
        slow.start()
        busy = wait_for("the slow read running",
                        lambda: [n for n in "bc" if activity(pair, n, marker)])[0]
        idle = "c" if busy == "b" else "b"
        ports = [read_port(s)[0] for _ in range(4)]
        slow.join(10)
        check(ports == [pair.port[idle]] * 4, "with %s busy, reads ran on %r" % (busy, ports))
    finally:
        s.stop()


def test_a_lagging_replica_is_set_aside_and_comes_back(pair):
    s = server(pair, DB_REPLICA_MAX_LAG_MS=400, AUTH="keys",
               API_KEYS=ADMIN + " admin,read,write")
    auth = s.auth = {"Authorization": "Bearer " + ADMIN}
    stop = threading.Event()

    def writer():  # the primary's WAL must move for a lag to show
        i = 0
        while not stop.is_set():
            s.post("/insert", {"sql": "INSERT INTO %s (k) VALUES (:k)" % T,
                               "params": {"k": "lag-%d" % i}}, headers=auth, conn=wconn)
            i += 1
            time.sleep(0.05)
    try:
        both_usable(s, pair)
        wconn = s.connection()
        pair.sql("b", "SELECT pg_wal_replay_pause()")
        paused = time.time()
        w = threading.Thread(target=writer)
        w.start()
        try:
            b = usable(s, pair, "b", False)
            print("   b set aside %.2f s after its replay paused (DB_REPLICA_MAX_LAG_MS=400, "
                  "HEALTH_CACHE_MS=100)" % (time.time() - paused))
            check("DB_REPLICA_MAX_LAG_MS" in b["why"] and b["lag_ms"] > 400, b)
            ports = {read_port(s, headers=auth)[0] for _ in range(8)}
            check(ports == {pair.port["c"]}, "reads went to %r while b lagged" % ports)
            ready = check_ok(s.get("/health/ready", headers=auth))
            rb = [r for r in ready["replicas"] if r["name"].endswith(":%d" % pair.port["b"])][0]
            check(not rb["usable"] and rb["lag_ms"] > 400, "health/ready: %r" % ready)
            check(s.get("/health/ready").json == {"status": "healthy"},
                  "the replicas' state reached a caller without the admin key")
            pair.sql("b", "SELECT pg_wal_replay_resume()")
            usable(s, pair, "b", True)
        finally:
            stop.set()
            w.join(10)
            pair.sql("b", "SELECT pg_wal_replay_resume() WHERE pg_is_wal_replay_paused()")
        ports = {read_port(s, headers=auth)[0] for _ in range(8)}
        check(pair.port["b"] in ports, "b took no reads once back: %r" % ports)
        log = "".join(s.lines)
        check("replica 127.0.0.1:%d is set aside (lagging)" % pair.port["b"] in log,
              "no log line of b set aside")
        check("replica 127.0.0.1:%d is usable again" % pair.port["b"] in log,
              "no log line of b back")
    finally:
        s.stop()


def test_read_your_writes_with_replay_paused(pair):
    s = server(pair, DB_READ_WAIT_MS=300)
    try:
        both_usable(s, pair)
        for n in "bc":
            pair.sql(n, "SELECT pg_wal_replay_pause()")
        try:
            _, lsn = insert(s, "ryw-1")
            r = s.post("/update", {"sql": "UPDATE %s SET k = k WHERE k = 'ryw-1'" % T})
            ulsn = check_ok(r) and r.header("x-querygate-lsn")
            check(ulsn and LSN.match(ulsn) and lsn_value(ulsn) >= lsn_value(lsn),
                  "/update's X-Querygate-LSN %r after the insert's %r" % (ulsn, lsn))
            q = {"sql": "SELECT count(*) AS n FROM %s WHERE k = 'ryw-1'" % T}
            # Without the LSN a replica answers, from before the write.
            r = s.post("/query", q)
            check(check_ok(r)["rows"][0]["n"] == 0 and
                  r.header("x-querygate-served-by") == "replica", "stale read: %r" % r)
            # With it: no replica has it within DB_READ_WAIT_MS, so the primary answers.
            r = s.post("/query", q, headers={"X-Querygate-Min-LSN": lsn})
            check(check_ok(r)["rows"][0]["n"] == 1 and
                  r.header("x-querygate-served-by") == "primary", "read with the LSN: %r" % r)
            check_error(s.post("/query", q, headers={"X-Querygate-Min-LSN": "0/zz"}), 400,
                        "invalid_request", "a malformed LSN")
            check_error(s.post("/query", q, headers={"X-Querygate-Min-LSN": "1"}), 400,
                        "invalid_request", "an LSN without its slash")
        finally:
            for n in "bc":
                pair.sql(n, "SELECT pg_wal_replay_resume()")
    finally:
        s.stop()
    # A longer wait: replay resumes while the read waits, and a replica serves it.
    s = server(pair, DB_READ_WAIT_MS=10000)
    try:
        both_usable(s, pair)
        for n in "bc":
            pair.sql(n, "SELECT pg_wal_replay_pause()")
        try:
            _, lsn = insert(s, "ryw-2")
            got = []
            t = threading.Thread(target=lambda: got.append(s.post(
                "/query", {"sql": "SELECT count(*) AS n FROM %s WHERE k = 'ryw-2'" % T},
                headers={"X-Querygate-Min-LSN": lsn}, conn=s.connection())))
            t.start()
            time.sleep(0.5)
            check(not got, "the read did not wait for replay: %r" % got)
            pair.sql("c", "SELECT pg_wal_replay_resume()")
            t.join(15)
        finally:
            for n in "bc":
                pair.sql(n, "SELECT pg_wal_replay_resume() WHERE pg_is_wal_replay_paused()")
        r = got[0]
        check(check_ok(r)["rows"][0]["n"] == 1 and r.header("x-querygate-served-by") == "replica",
              "read after replay resumed: %r" % r)
    finally:
        s.stop()


def test_a_replica_stopped_under_read_load_fails_no_read(pair):
    # DB_RETRIES=0: the one try elsewhere is the replica's own, not the retries'.
    s = server(pair, DB_POOL_SIZE=4, DB_RETRIES=0)
    stop = threading.Event()
    results, errors = [], []

    def reader():
        conn = s.connection()
        while not stop.is_set():
            try:
                r = s.post("/query", {"sql": "SELECT inet_server_port() AS p, pg_sleep(0.02)"},
                           conn=conn)
                results.append((r.status, r.json["rows"][0]["p"] if r.status == 200 else r.raw))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
                conn = s.connection()
    try:
        both_usable(s, pair)
        threads = [threading.Thread(target=reader) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.8)
        pair.stop("c", "immediate")
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(30)
        failed = [r for r in results if r[0] != 200]
        print("   %d reads, %d on c before it stopped" %
              (len(results), sum(1 for r in results if r[1] == pair.port["c"])))
        check(not errors and not failed, "reads failed: %r %r" % (errors[:3], failed[:3]))
        check(any(r[1] == pair.port["c"] for r in results), "c took no reads before it stopped")
        check(not replicas(s)[str(pair.port["c"])]["usable"], "c still usable")
        pair.start("c")
        usable(s, pair, "c", True)
        check("replica 127.0.0.1:%d is set aside" % pair.port["c"] in "".join(s.lines),
              "no log line of c set aside")
    finally:
        stop.set()
        s.stop()


def test_a_replica_connection_keeps_nothing_of_a_request(pair):
    """As an attacker with a read key: what one request does on a replica's pooled
    connection (one connection only) never reaches the next, another key's, request:
    session settings, advisory locks (also spelled U&"..."), PREPARE from dynamic SQL,
    and two requests pipelined on one HTTP connection."""
    keys = {"r1": "replica-reader-one-0123456789", "r2": "replica-reader-two-0123456789"}
    s = server(pair, replicas="b", DB_READ_POOL_SIZE=1, DB_MAX_OVERFLOW=0, AUTH="keys",
               API_KEYS="%s read;%s read" % (keys["r1"], keys["r2"]))

    def post(key, sql):
        return s.post("/query", {"sql": sql}, headers={"Authorization": "Bearer " + keys[key]})

    def q(key, sql):
        r = post(key, sql)
        check(r.header("x-querygate-served-by") == "replica", "not on the replica: %r" % r)
        return r

    look = ("SELECT current_setting('search_path') AS p, current_setting('statement_timeout') "
            "AS t, (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = "
            "pg_backend_pid()) AS locks, (SELECT count(*) FROM pg_prepared_statements WHERE "
            "from_sql) AS prepared, pg_backend_pid() AS pid")
    try:
        wait_for("the replica usable",
                 lambda: post("r2", "SELECT 1").header("x-querygate-served-by") == "replica")
        clean = check_ok(q("r2", look))["rows"][0]
        probes = [
            "SELECT set_config('search_path', 'pg_catalog', false), "
            "set_config('statement_timeout', '1', false)",
            'SELECT U&"pg_\\0061dvisory_lock"(77), pg_advisory_lock(78)',
            "DO $$ BEGIN EXECUTE 'PREPARE qg_probe AS SELECT 1'; END $$",
        ]
        for sql in probes:
            check_ok(q("r1", sql))
            seen = check_ok(q("r2", look))["rows"][0]
            # A caller's PREPARE fails the audit: that connection is closed, not reset.
            check(seen["pid"] == clean["pid"] or "PREPARE" in sql,
                  "not the same pooled connection after %r: %r" % (sql, seen))
            clean["pid"] = seen["pid"]
            check(seen == clean, "after %r the next request saw %r" % (sql, seen))
        # Pipelined: both requests in one write on one HTTP connection.
        def req(key, sql):
            body = json.dumps({"sql": sql}).encode()
            return ("POST /query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                    "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % (keys[key], len(body))).encode() + body
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as k:
            k.sendall(req("r1", 'SELECT U&"pg_\\0061dvisory_lock"(79), '
                                "set_config('search_path', 'pg_catalog', false)") +
                      req("r2", look))
            data = b""
            while data.count(b"HTTP/1.1 ") < 2 or not data.rstrip().endswith(b"}"):
                chunk = k.recv(65536)
                if not chunk:
                    break
                data += chunk
        check(data.count(b"HTTP/1.1 200") == 2, "two answers: %r" % data[:600])
        second = json.loads(data.rsplit(b"\r\n\r\n", 1)[1])["rows"][0]
        check(second == clean, "the pipelined request saw %r" % second)
    finally:
        s.stop()


def test_no_usable_replica_follows_db_read_fallback(pair):
    nowhere = "postgresql://qg:%s@127.0.0.1:1/qg" % pair.password
    s = Server(DATABASE_URL=pair.url_for("a"), DATABASE_READ_URLS=nowhere, HEALTH_CACHE_MS=100,
               DB_CONNECT_TIMEOUT=2)
    try:
        wait_for("the replica down", lambda: "not answering" in
                 (list(replicas(s).values())[0].get("why") or ""))
        p, by = read_port(s)
        check(p == pair.port["a"] and by == "primary", "fallback read on %r by %r" % (p, by))
        check(any("no read replica is usable: reads go to the primary" in ln for ln in s.lines),
              "no log line of the fallback")
    finally:
        s.stop()
    s = Server(DATABASE_URL=pair.url_for("a"), DATABASE_READ_URLS=nowhere, HEALTH_CACHE_MS=100,
               DB_CONNECT_TIMEOUT=2, DB_READ_FALLBACK="none")
    try:
        time.sleep(0.3)
        e = check_error(s.post("/query", {"sql": "SELECT 1"}), 503, "db_unavailable",
                        "DB_READ_FALLBACK=none")
        check("DB_READ_FALLBACK" in e["message"], e)
        insert(s, "fallback-none")  # writes are not reads
    finally:
        s.stop()


def test_a_fenced_primary_takes_no_write(pair):
    """A failover manager fences a server with default_transaction_read_only until it is
    sure only one takes writes (pg_auto_failover, a promoted standby). With
    target_session_attrs=read-write such a server is no primary: a write on a connection
    pooled before the fence waits for one instead of overriding the fence."""
    s = Server(DATABASE_URL=pair.url_for("a", attrs="read-write"), DB_POOL_TIMEOUT=1.5,
               DB_RETRY_DELAY=0.05, DB_CONNECT_TIMEOUT=2)
    try:
        insert(s, "before-fence")  # pools a connection that predates the fence
        try:
            pair.sql("a", "ALTER SYSTEM SET default_transaction_read_only = on")
            pair.sql("a", "SELECT pg_reload_conf()")
            time.sleep(0.3)
            for sql in ("INSERT INTO %s (k) VALUES ('fenced')",
                        "INSERT INTO %s (k) VALUES ('fenced') RETURNING k"):
                e = check_error(s.post("/insert", {"sql": sql % T}), 503, "db_unavailable",
                                "a write on a fenced primary")
                check("outcome" not in e, e)
            n = pair.sql("a", "SELECT count(*) FROM %s WHERE k = 'fenced'" % T).strip()
            check(n == "0", "%s writes went through the fence" % n)
        finally:
            pair.sql("a", "ALTER SYSTEM RESET default_transaction_read_only")
            pair.sql("a", "SELECT pg_reload_conf()")
        time.sleep(0.3)
        insert(s, "after-fence")
        check(any("does not accept writes" in ln for ln in s.lines), "no log line of the fence")
    finally:
        s.stop()


def pgbouncer(action, *args):
    tool = os.path.join(source_dir(), "tests", "tools", "pgbouncer-ctl")
    subprocess.run([tool, action] + [str(a) for a in args], check=True, timeout=30)


def test_behind_pgbouncer_with_a_replica(pair):
    top = tempfile.mkdtemp(prefix="qg-bouncers.")
    os.chmod(top, 0o755)
    ports = {n: free_port() for n in "ab"}
    for n in "ab":
        pgbouncer("start", os.path.join(top, n), ports[n], pair.port[n], pair.password)
    try:
        url = "postgresql://qg:%s@127.0.0.1:%%d/qg?sslmode=disable" % pair.password
        s = Server(DATABASE_URL=url % ports["a"], DATABASE_READ_URLS=url % ports["b"],
                   HEALTH_CACHE_MS=100, DB_POOLER_MODE="on")
        try:
            wait_for("the replica behind PgBouncer usable",
                lambda: list(replicas(s).values())[0]["usable"])
            p, lsn = insert(s, "bouncer")
            check(p == pair.port["a"], "write behind PgBouncer ran on %r" % p)
            r = s.post("/query", {"sql": "SELECT inet_server_port() AS p, count(*) AS n FROM %s "
                                         "WHERE k = 'bouncer' GROUP BY 1" % T},
                       headers={"X-Querygate-Min-LSN": lsn})
            row = check_ok(r)["rows"][0]
            check(row["n"] == 1 and r.header("x-querygate-served-by") in ("replica", "primary"), r)
            ports_seen = {read_port(s)[0] for _ in range(4)}
            check(ports_seen == {pair.port["b"]}, "reads behind PgBouncer ran on %r" % ports_seen)
        finally:
            s.stop()
    finally:
        for n in "ab":
            pgbouncer("stop", os.path.join(top, n))
        subprocess.run(["rm", "-rf", top], check=False)


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)

"""Isolation between callers on shared pooled connections: issue 10's attacks, replayed.

Keys: RO (read, role ro), RW and RW2 (read,write, role rw), R2 (read, no role) and
ADM (read,write,admin, no role): R2 and ADM share the service login's pool, RW and RW2
the rw role's. Small pools, so every request lands on a connection others used.
"""
import json
import os
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, check, check_error, check_ok,  # noqa: E402
                       database_url, run_tests)

PID = os.getpid()
T = "t_iso_%d" % PID
RO_ROLE, RW_ROLE = "qgt_iso_ro_%d" % PID, "qgt_iso_rw_%d" % PID
PW = "iso-pw-%d" % PID
RO, RW, RW2 = ("%s-key-%d-0123456789abcdef" % (n, PID) for n in ("ro", "rw", "rw2"))
R2, ADM = ("%s-key-%d-0123456789abcdef" % (n, PID) for n in ("r2", "adm"))
WHO = {RO: RO_ROLE, RW: RW_ROLE, RW2: RW_ROLE, R2: "qg", ADM: "qg"}


def bearer(key):
    return {"Authorization": "Bearer " + key}


class State:
    pass


def setup():
    database_url()
    st = State()
    st.dir = tempfile.mkdtemp(prefix="qgt-iso-")
    roles = "".join("DO $$BEGIN CREATE ROLE {r} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; "
                    "END$$; ALTER ROLE {r} PASSWORD '{pw}'; ".format(r=r, pw=PW)
                    for r in (RO_ROLE, RW_ROLE))
    admin_sql(roles +
              "DROP TABLE IF EXISTS {t}_items, {t}_ids; "
              "CREATE TABLE {t}_items (id int PRIMARY KEY, name text, qty int); "
              "INSERT INTO {t}_items SELECT g, 'item' || g, g FROM generate_series(1, 8) g; "
              "CREATE TABLE {t}_ids (id serial PRIMARY KEY, x int); "
              "ALTER TABLE {t}_items OWNER TO qg; ALTER TABLE {t}_ids OWNER TO qg; "
              "GRANT SELECT ON {t}_items TO {ro}, {rw}; GRANT UPDATE, INSERT ON {t}_items TO {rw}"
              .format(t=T, ro=RO_ROLE, rw=RW_ROLE))
    u = urllib.parse.urlparse(database_url())
    passfile = os.path.join(st.dir, "pgpass")
    with open(passfile, "w") as f:
        for r in (RO_ROLE, RW_ROLE):
            f.write("%s:%s:*:%s:%s\n" % (u.hostname, u.port, r, PW))
    os.chmod(passfile, 0o600)
    keys = ";".join(["%s read %s" % (RO, RO_ROLE), "%s read,write %s" % (RW, RW_ROLE),
                     "%s read,write %s" % (RW2, RW_ROLE), "%s read" % R2,
                     "%s read,write,admin" % ADM])
    # One kept connection, overflow under load, recycled every second: pools open
    # connections all the time, as after DB_POOL_RECYCLE.
    st.s = Server(AUTH="keys", API_KEYS=keys, PGPASSFILE=passfile, DB_POOL_SIZE=1,
                  DB_MAX_OVERFLOW=3, DB_POOL_RECYCLE=1, HTTP_THREADS=4)
    return st


def teardown(st):
    st.s.stop()
    admin_sql("DROP TABLE IF EXISTS {t}_items, {t}_ids; DROP ROLE IF EXISTS {ro}; "
              "DROP ROLE IF EXISTS {rw}".format(t=T, ro=RO_ROLE, rw=RW_ROLE))


def q(st, key, sql, params=None, path="/query"):
    body = {"sql": sql}
    if params is not None:
        body["params"] = params
    return st.s.post(path, body, headers=bearer(key), conn=st.s.connection())


def tx(st, key, statements, read_only=False):
    return st.s.post("/transaction", {"statements": [{"sql": s} for s in statements],
                                      "read_only": read_only},
                     headers=bearer(key), conn=st.s.connection())


def test_role_pools_under_mixed_load(st):
    """Every key's requests run as its own role (a role pool's login name outlives the request)."""
    wrong, errors = [], []
    stop = time.time() + 4

    def client(key):
        c = st.s.connection()
        while time.time() < stop:
            r = st.s.post("/query", {"sql": "SELECT current_user AS u, session_user AS s"},
                          headers=bearer(key), conn=c)
            if r.status != 200:
                errors.append((key[:3], r.status, r.raw[:200]))
                c = st.s.connection()
                continue
            row = r.json["rows"][0]
            if row["u"] != WHO[key] or row["s"] != WHO[key]:
                wrong.append((key[:3], row))
            time.sleep(0.01 if key == RO else 0)

    threads = [threading.Thread(target=client, args=(k,)) for k in (RO, RW, RW2, R2, ADM, RO)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not wrong, "requests ran as another role: %s" % wrong[:5])
    check(not errors, "requests failed: %s" % errors[:5])
    check(st.s.alive(), "the service died: " + st.s.log_excerpt())


def test_caller_cannot_end_the_transaction(st):
    """COMMIT, ROLLBACK and kin in a caller's statements are refused, unsent."""
    r = tx(st, RW, ["COMMIT", "CREATE TEMP TABLE %s_items (id int, name text, qty int)" % T,
                    "INSERT INTO %s_items VALUES (1, 'fake', 0)" % T, "COMMIT"], read_only=True)
    check_error(r, 400, "transaction_control")
    check(r.json["error"].get("statement_index") == 0, r.json)
    for _ in range(5):
        r = q(st, RW2, "SELECT name FROM %s_items WHERE id = 1" % T)
        check_ok(r)
        check(r.json["rows"] == [{"name": "item1"}], r.json)
    r = tx(st, RW, ["INSERT INTO %s_items VALUES (105, 'x', 1)" % T, "COMMIT", "SELECT 1/0"])
    check_error(r, 400, "transaction_control")
    r = tx(st, RW, ["INSERT INTO %s_items VALUES (102, 'x', 1)" % T, "ROLLBACK",
                    "INSERT INTO %s_items VALUES (103, 'x', 1)" % T])
    check_error(r, 400, "transaction_control")
    r = q(st, ADM, "SELECT count(*) AS n FROM %s_items WHERE id > 100" % T)
    check(r.json["rows"] == [{"n": 0}], "all or nothing broke: %s" % r.json)
    for sql in ("  /* hi */ commit", "END", "SAVEPOINT s", "SET TRANSACTION READ WRITE",
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"):
        check_error(q(st, R2, sql), 400, "transaction_control", sql)
    r = tx(st, RW2, ["SET transaction_read_only = off",
                    "UPDATE %s_items SET qty = 0 WHERE id = 2" % T], read_only=True)
    check_error(r, 400, "transaction_control")


def test_session_state_does_not_outlive_a_request(st):
    """Advisory locks (also spelled U&"..."), settings and lastval stay with their request."""
    r = q(st, RO, 'SELECT count(U&"pg_\\0061dvisory_lock"(i)) AS n FROM generate_series(100000, 102000) i')
    check_ok(r)
    held = admin_sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
    check(held.strip() == "0", "advisory locks left on the pool: %s" % held)
    r = q(st, ADM, "INSERT INTO %s_ids (x) VALUES (1)" % T, path="/update")
    check_ok(r)
    r = q(st, ADM, "INSERT INTO %s_ids (x) VALUES (1)" % T, path="/update")
    check_ok(r)
    for _ in range(3):
        check_error(q(st, R2, "SELECT lastval()"), 400, "sql_error", "another caller's lastval()")
    r = tx(st, ADM, ["SELECT set_config('statement_timeout', '1', false)",
                     "SELECT set_config('search_path', 'pg_catalog', false)"])
    check_ok(r)
    r = q(st, R2, "SELECT current_setting('statement_timeout') AS t, "
                  "current_setting('search_path') AS p")
    check(r.json["rows"] == [{"t": "30s", "p": '"$user", public'}], r.json)


def test_prepared_statements_stay_with_their_caller(st):
    """A read key neither sees nor replaces the statements a write key's requests prepared."""
    upd = "UPDATE %s_items SET qty = :q WHERE id = :id" % T
    for _ in range(3):
        check_ok(q(st, ADM, upd, {"q": 5, "id": 3}, path="/update"))
    r = q(st, R2, "SELECT name, statement FROM pg_prepared_statements")
    check_ok(r)
    check(r.json["rows"] == [], "another caller's SQL is visible: %s" % r.json["rows"])
    hijack = " ".join("EXECUTE 'DEALLOCATE qg_%d'; EXECUTE 'PREP' || 'ARE qg_%d(text, text) AS "
                      "UPDATE %s_items SET name = ''pwned'', qty = -1';" % (i, i, T)
                      for i in range(1, 6))
    # Errors (no such statement) are fine: what counts is what ADM's next UPDATE does.
    q(st, R2, "DO $$BEGIN %s EXCEPTION WHEN OTHERS THEN NULL; END$$" % hijack)
    for i in range(1, 6):
        q(st, R2, "DO $$BEGIN EXECUTE 'PREP' || 'ARE qg_%d(text, text) AS UPDATE %s_items "
                  "SET name = ''pwned'', qty = -1'; END$$" % (i, T))
    for _ in range(3):
        r = q(st, ADM, upd, {"q": 6, "id": 3}, path="/update")
        check_ok(r)
        check(r.json["affected_rows"] == 1, "hijacked: %s" % r.json)
    r = q(st, ADM, "SELECT count(*) AS n FROM %s_items WHERE name = 'pwned' OR qty < 0" % T)
    check(r.json["rows"] == [{"n": 0}], r.json)


def test_transaction_ends_hidden_in_code_fail(st):
    """COMMIT inside a DO block or a procedure cannot end the service's transaction."""
    admin_sql("CREATE OR REPLACE PROCEDURE {t}_commit() LANGUAGE plpgsql AS "
              "$$BEGIN INSERT INTO {t}_items VALUES (201, 'proc', 1); COMMIT; END$$; "
              "ALTER PROCEDURE {t}_commit() OWNER TO qg".format(t=T))
    for sql in ("DO $$BEGIN INSERT INTO %s_items VALUES (202, 'do', 1); COMMIT; END$$" % T,
                "CALL %s_commit()" % T):
        check_error(q(st, ADM, sql, path="/update"), 400, "sql_error", sql)
    r = q(st, ADM, "SELECT count(*) AS n FROM %s_items WHERE id > 200" % T)
    check(r.json["rows"] == [{"n": 0}], r.json)


def test_pipelined_http_requests_stay_apart(st):
    """Two requests of two keys sent back to back on one HTTP connection, in one write."""
    import socket

    def req(key, sql):
        body = json.dumps({"sql": sql}).encode()
        return ("POST /query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (key, len(body))).encode() + body

    for _ in range(5):
        k = socket.create_connection(("127.0.0.1", st.s.port), timeout=10)
        k.sendall(req(R2, 'SELECT U&"pg_\\0061dvisory_lock"(77), '
                              "set_config('search_path', 'pg_catalog', false)") +
                  req(ADM, "SELECT current_setting('search_path') AS p, "
                           "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory') AS locks"))
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.rstrip().endswith(b"}"):
            chunk = k.recv(65536)
            if not chunk:
                break
            data += chunk
        k.close()
        check(data.count(b"HTTP/1.1 200") == 2, "two answers: %r" % data[:600])
        second = json.loads(data.rsplit(b"\r\n\r\n", 1)[1])
        check(second["rows"] == [{"p": '"$user", public', "locks": 0}],
              "the second request saw the first's state: %r" % second)


def test_copy_is_refused_at_once(st):
    """COPY answers 400 at once instead of hanging a worker."""
    t0 = time.time()
    check_error(q(st, R2, "COPY (SELECT 1) TO STDOUT"), 400, "unsupported_statement")
    check_error(q(st, ADM, "COPY %s_items FROM STDIN" % T, path="/update"), 400,
                "unsupported_statement")
    check(time.time() - t0 < 10, "COPY took %.1f s" % (time.time() - t0))
    check_ok(q(st, R2, "SELECT 1"))


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)

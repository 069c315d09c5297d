"""Named queries (QUERIES_DIR): POST /queries/NAME, GET /queries, scopes, ALLOW_RAW_SQL, SIGHUP, prepared once."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, binary, check, check_error, check_ok,  # noqa: E402
                       database_url, run_tests)

PID = os.getpid()
T = "t_named_%d" % PID
READ = "read-key-%d-0123456789" % PID
WRITE = "write-key-%d-0123456789" % PID
NAMED = "named-key-%d-0123456789" % PID
ADMIN = "admin-key-%d-0123456789" % PID
ALL = "all-key-%d-0123456789ab" % PID
KEYS = "%s read;%s write;%s named;%s admin;%s read,write,admin" % (READ, WRITE, NAMED, ADMIN,
                                                                   ALL)

QUERIES = {
    "notes_by_owner.sql": "-- the notes of one owner\n"
                          "SELECT id, owner, body FROM {t} WHERE owner = :owner ORDER BY id\n",
    "add-note.sql": "-- querygate: write\n"
                    "INSERT INTO {t} (owner, body) VALUES (:owner, :body) RETURNING id, owner;\n",
    "rename_owner.sql": "--  QueryGate:  WRITE\n"
                        "UPDATE {t} SET owner = :to WHERE owner = :from\n",
    "sneaky.sql": "-- querygate: read\nDELETE FROM {t} WHERE owner = :owner\n",
    "big_number.sql": "SELECT 12345678901234567890::numeric AS n, :x::int8 AS x\n",
}


def bearer(key):
    return {"Authorization": "Bearer " + key}


def write_queries(folder, files):
    for name, text in files.items():
        with open(os.path.join(folder, name), "w") as f:
            f.write(text.format(t=T))


class State:
    pass


def setup():
    database_url()
    admin_sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id serial PRIMARY KEY, owner text, "
              "body text); GRANT ALL ON {t} TO qg; GRANT ALL ON SEQUENCE {t}_id_seq TO qg"
              .format(t=T))
    st = State()
    st.dir = tempfile.mkdtemp(prefix="qgt-named-")
    st.queries = os.path.join(st.dir, "queries")
    os.mkdir(st.queries)
    write_queries(st.queries, QUERIES)
    st.s = Server(AUTH="keys", HOST="127.0.0.1", API_KEYS=KEYS, QUERIES_DIR=st.queries)
    return st


def teardown(st):
    st.s.stop()
    shutil.rmtree(st.dir, ignore_errors=True)
    admin_sql("DROP TABLE IF EXISTS %s" % T)


def run(s, name, params=None, key=ALL, conn=None, **extra):
    body = dict(extra)
    if params is not None:
        body["params"] = params
    return s.post("/queries/" + name, body, headers=bearer(key), conn=conn)


def test_startup_error_names_the_file(st):
    def start(folder):
        env = {k: v for k, v in os.environ.items() if k not in ("API_KEYS", "API_KEYS_FILE")}
        env.update({"DATABASE_URL": database_url(), "PORT": "0", "AUTH": "none",
                    "QUERIES_DIR": folder})
        return subprocess.run([binary()], env=env, capture_output=True, text=True, timeout=10)

    bad = os.path.join(st.dir, "bad")
    os.mkdir(bad)
    write_queries(bad, {"fine.sql": "SELECT 1", "two.sql": "SELECT 1;\nSELECT 2"})
    r = start(bad)
    check(r.returncode == 2 and "QUERIES_DIR" in r.stderr and "two.sql" in r.stderr
          and "more than one statement" in r.stderr, (r.returncode, r.stderr))
    os.remove(os.path.join(bad, "two.sql"))
    write_queries(bad, {"open.sql": "SELECT 'no end"})
    r = start(bad)
    check(r.returncode == 2 and "open.sql" in r.stderr and "unterminated" in r.stderr,
          (r.returncode, r.stderr))
    r = start(os.path.join(st.dir, "nowhere"))
    check(r.returncode == 2 and "QUERIES_DIR" in r.stderr and "nowhere" in r.stderr,
          (r.returncode, r.stderr))


def test_list_with_params(st):
    j = check_ok(st.s.get("/queries", headers=bearer(READ)))
    check(j == {"queries": [
        {"name": "add-note", "mode": "write", "params": ["owner", "body"]},
        {"name": "big_number", "mode": "read", "params": ["x"]},
        {"name": "notes_by_owner", "mode": "read", "params": ["owner"]},
        {"name": "rename_owner", "mode": "write", "params": ["to", "from"]},
        {"name": "sneaky", "mode": "read", "params": ["owner"]},
    ]}, j)
    check(st.s.request("HEAD", "/queries", headers=bearer(READ)).status == 200, "HEAD")


def test_write_and_read_shapes(st):
    s = st.s
    # A write with RETURNING: affected_rows and the rows (no id: that is /insert's).
    j = check_ok(run(s, "add-note", {"owner": "alice", "body": "one"}))
    check(set(j) == {"affected_rows", "rows"} and j["affected_rows"] == 1
          and j["rows"][0]["owner"] == "alice" and isinstance(j["rows"][0]["id"], int), j)
    # A batch of parameter sets, in one transaction.
    j = check_ok(run(s, "add-note", [{"owner": "alice", "body": "two"},
                                     {"owner": "bob", "body": "three"}]))
    check(j["affected_rows"] == 2 and [r["owner"] for r in j["rows"]] == ["alice", "bob"], j)
    # A read answers exactly as /query does with the same SQL.
    named = run(s, "notes_by_owner", {"owner": "alice"})
    raw = s.post("/query", {"sql": QUERIES["notes_by_owner.sql"].format(t=T),
                            "params": {"owner": "alice"}}, headers=bearer(ALL))
    check(named.status == 200 and named.json == raw.json and named.json["row_count"] == 2
          and [r["body"] for r in named.json["rows"]] == ["one", "two"], (named, raw))
    # A write without RETURNING answers exactly as /update does.
    named = run(s, "rename_owner", {"from": "bob", "to": "carol"})
    raw = s.post("/update", {"sql": QUERIES["rename_owner.sql"].format(t=T),
                             "params": {"from": "carol", "to": "carol"}}, headers=bearer(ALL))
    check(named.json == {"affected_rows": 1} and raw.json == named.json, (named, raw))
    j = check_ok(run(s, "notes_by_owner", {"owner": "carol"}))
    check(j["row_count"] == 1 and j["rows"][0]["body"] == "three", j)
    # numbers_as_strings as on /query.
    j = check_ok(run(s, "big_number", {"x": 9007199254740993}, numbers_as_strings=True))
    check(j["rows"] == [{"n": "12345678901234567890", "x": "9007199254740993"}], j)
    # A read streams as /query does, with Accept: application/x-ndjson.
    hdrs = dict(bearer(ALL), Accept="application/x-ndjson")
    r = s.post("/queries/notes_by_owner", {"params": {"owner": "alice"}}, headers=hdrs)
    lines = [json.loads(ln) for ln in r.raw.decode().splitlines()]
    check(r.status == 200 and r.header("Content-Type").startswith("application/x-ndjson")
          and "columns" in lines[0] and [ln.get("body") for ln in lines[1:-1]] == ["one", "two"]
          and lines[-1] == {"row_count": 2}, (r, lines))
    # A read runs READ ONLY, whatever the file does.
    check_error(run(s, "sneaky", {"owner": "alice"}), 403, "read_only", "write in a read query")
    check(check_ok(run(s, "notes_by_owner", {"owner": "alice"}))["row_count"] == 2, "kept")


def test_not_found_and_bad_bodies(st):
    s = st.s
    e = check_error(run(s, "nope", {}), 404, "not_found", "unknown name")
    check("nope" in e["message"] and "GET /queries" in e["message"], e)
    check_error(run(s, "notes_by_owner.sql", {"owner": "x"}), 404, "not_found", "with .sql")
    check_error(s.post("/queries/", {}, headers=bearer(ALL)), 404, "not_found", "no name")
    check_error(s.post("/queries/a/b", {}, headers=bearer(ALL)), 404, "not_found", "two segments")
    r = s.get("/queries/notes_by_owner", headers=bearer(ALL))
    check_error(r, 405, "method_not_allowed", "GET a query")
    check(r.header("allow") == "POST", r.headers)
    # Missing and unknown parameters: as for /query.
    sql = QUERIES["notes_by_owner.sql"].format(t=T)
    for params, code in (({}, "missing_parameter"), (None, "missing_parameter"),
                         ({"owner": "a", "extra": 1}, "unknown_parameter")):
        named = run(s, "notes_by_owner", params)
        body = {"sql": sql} if params is None else {"sql": sql, "params": params}
        raw = s.post("/query", body, headers=bearer(ALL))
        check_error(named, 400, code, "named %r" % params)
        check(named.json == raw.json, (named, raw))
    e = check_error(run(s, "add-note", [{"owner": "a", "body": "b"}, {"owner": "a"}]), 400,
                    "missing_parameter", "batch")
    check(e.get("statement_index") == 1, e)
    check_error(run(s, "notes_by_owner", [{"owner": "a"}]), 400, "invalid_request",
                "a batch for a read")
    check_error(run(s, "notes_by_owner", {"owner": "a"}, sql="SELECT 1"), 400,
                "invalid_request", "sql in the body")
    check_error(s.post("/queries/notes_by_owner", "{", headers=bearer(ALL)), 400,
                "invalid_json", "bad JSON")


def test_scopes(st):
    s = st.s
    check_ok(run(s, "notes_by_owner", {"owner": "alice"}, key=READ))
    r = run(s, "rename_owner", {"from": "x", "to": "y"}, key=READ)
    check_error(r, 403, "forbidden", "read key, write query")
    check('scope="write"' in (r.header("www-authenticate") or ""), r.headers)
    check_ok(run(s, "rename_owner", {"from": "x", "to": "y"}, key=WRITE))
    r = run(s, "notes_by_owner", {"owner": "alice"}, key=WRITE)
    check_error(r, 403, "forbidden", "write key, read query")
    check('scope="read"' in (r.header("www-authenticate") or ""), r.headers)
    # named: either mode, and nothing else.
    check_ok(run(s, "notes_by_owner", {"owner": "alice"}, key=NAMED))
    check_ok(run(s, "rename_owner", {"from": "x", "to": "y"}, key=NAMED))
    check_error(s.post("/query", {"sql": "SELECT 1"}, headers=bearer(NAMED)), 403, "forbidden",
                "named key on /query")
    check_error(s.post("/update", {"sql": "SELECT 1"}, headers=bearer(NAMED)), 403, "forbidden",
                "named key on /update")
    check(check_ok(s.get("/queries", headers=bearer(NAMED)))["queries"], "a named key lists")
    check_error(s.get("/pool", headers=bearer(NAMED)), 403, "forbidden", "named key on /pool")
    check_error(run(s, "notes_by_owner", {"owner": "a"}, key=ADMIN), 403, "forbidden", "admin")
    check_error(s.post("/queries/notes_by_owner", {}), 401, "unauthorized", "no key")
    check_error(s.get("/queries"), 401, "unauthorized", "no key lists")


def test_raw_sql_disabled(st):
    s = Server(AUTH="keys", API_KEYS=KEYS, QUERIES_DIR=st.queries, ALLOW_RAW_SQL="false")
    try:
        q = {"sql": "SELECT 1 AS one"}
        tx = {"statements": [q]}
        for path, body, key in (("/query", q, READ), ("/update", q, WRITE),
                                ("/insert", q, WRITE), ("/transaction", tx, WRITE),
                                ("/query", q, NAMED), ("/update", q, READ)):
            e = check_error(s.post(path, body, headers=bearer(key)), 403, "raw_sql_disabled",
                            "%s with a non-admin key" % path)
            check("ALLOW_RAW_SQL" in e["message"], e)
        check_error(s.post("/query", q), 401, "unauthorized", "no key still 401")
        # admin keys keep raw SQL (their other scopes decide as before).
        check(check_ok(s.post("/query", q, headers=bearer(ALL)))["rows"] == [{"one": 1}], "admin")
        check_ok(s.post("/transaction", tx, headers=bearer(ALL)))
        check_error(s.post("/query", q, headers=bearer(ADMIN)), 403, "forbidden", "admin only")
        # Named queries keep working.
        check_ok(run(s, "notes_by_owner", {"owner": "alice"}, key=READ))
        check_ok(run(s, "notes_by_owner", {"owner": "alice"}, key=NAMED))
        check_ok(s.get("/queries", headers=bearer(READ)))
    finally:
        s.stop()
    # Without keys every caller holds admin: the start log says the setting changes nothing.
    s = Server(AUTH="none", ALLOW_RAW_SQL="false")
    try:
        check_ok(s.post("/query", {"sql": "SELECT 1"}))
        check(any("ALLOW_RAW_SQL=false changes nothing" in ln for ln in s.lines), s.lines)
    finally:
        s.stop()


def wait_for(s, n, text):
    deadline = time.time() + 10
    while time.time() < deadline:
        found = [ln for ln in s.lines[n:] if text in ln]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no %r in the log: %s" % (text, s.lines[n:]))


def test_sighup_reload(st):
    folder = os.path.join(st.dir, "reload")
    os.mkdir(folder)
    write_queries(folder, {"slow.sql": "SELECT pg_sleep(:s) IS NULL AS slept, :tag::text AS tag"})
    s = Server(AUTH="keys", API_KEYS=KEYS, QUERIES_DIR=folder)
    try:
        # In flight across a reload that drops its query: it keeps the set it started with.
        result = {}
        t = threading.Thread(target=lambda: result.update(r=run(
            s, "slow", {"s": 1, "tag": "old"}, conn=s.connection())))
        t.start()
        running = ("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%AS slept, $2%' "
                   "AND pid <> pg_backend_pid()")
        deadline = time.time() + 10
        while admin_sql(running) == "0" and time.time() < deadline:
            time.sleep(0.02)
        os.remove(os.path.join(folder, "slow.sql"))
        write_queries(folder, {"fresh.sql": "-- querygate: write\nSELECT :v::int AS v"})
        n = len(s.lines)
        s.proc.send_signal(signal.SIGHUP)
        line = wait_for(s, n, "named queries reloaded")
        check("1 query" in line, line)
        t.join(10)
        r = result.get("r")
        check(r is not None and r.status == 200 and r.json["rows"][0]["tag"] == "old", result)
        check_error(run(s, "slow", {"s": 0, "tag": "x"}), 404, "not_found", "dropped")
        check(check_ok(run(s, "fresh", {"v": 7}))["rows"] == [{"v": 7}], "new query runs")
        j = check_ok(s.get("/queries", headers=bearer(READ)))
        check(j == {"queries": [{"name": "fresh", "mode": "write", "params": ["v"]}]}, j)
        # A bad file: the old set stays, the log names it and says why.
        write_queries(folder, {"broken.sql": "SELECT 1; DELETE FROM x",
                               "zz_good.sql": "SELECT 2 AS two"})
        n = len(s.lines)
        s.proc.send_signal(signal.SIGHUP)
        line = wait_for(s, n, "not reloaded")
        check("broken.sql" in line and "more than one statement" in line
              and "old ones stay" in line, line)
        check(check_ok(run(s, "fresh", {"v": 8}))["rows"] == [{"v": 8}], "old set kept")
        check_error(run(s, "zz_good", {}), 404, "not_found", "nothing of the bad set")
        check(s.alive(), "still running")
    finally:
        s.stop()


def test_prepared_once_per_connection(st):
    # One connection, so that pg_prepared_statements shows the one named queries use.
    s = Server(AUTH="keys", API_KEYS=KEYS, QUERIES_DIR=st.queries, DB_POOL_SIZE=1,
               DB_MAX_OVERFLOW=0)
    try:
        probe = {"sql": "SELECT statement FROM pg_prepared_statements "
                        "WHERE statement NOT LIKE '%pg_prepared_statements%' ORDER BY statement"}

        def prepared():
            rows = check_ok(s.post("/query", probe, headers=bearer(ALL)))["rows"]
            return [r["statement"] for r in rows]

        check(prepared() == [], "nothing prepared yet")
        # Raw SQL is prepared on its second use only; a named query on its first.
        check_ok(s.post("/query", {"sql": "SELECT :n::int * 2 AS twice", "params": {"n": 1}},
                        headers=bearer(ALL)))
        check_ok(run(s, "notes_by_owner", {"owner": "alice"}))
        have = prepared()
        check(len(have) == 1 and "WHERE owner = $1" in have[0] and "twice" not in have[0], have)
        for _ in range(3):
            check_ok(run(s, "notes_by_owner", {"owner": "alice"}))
        check(prepared() == have, "prepared once: %s" % prepared())
        check_ok(run(s, "add-note", [{"owner": "p", "body": "1"}, {"owner": "p", "body": "2"}]))
        check(len(prepared()) == 2, prepared())
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

"""Every endpoint, routing (404, 405, HEAD), headers, and every request-level error code."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, check, check_error, check_ok, database_url,  # noqa: E402
                       run_tests)

T = "t_endpoints_%d" % os.getpid()


def setup():
    database_url()
    admin_sql("DROP TABLE IF EXISTS {t}, {t}_secret; "
              "CREATE TABLE {t} (id serial PRIMARY KEY, name text UNIQUE NOT NULL); "
              "GRANT ALL ON {t} TO qg; GRANT ALL ON SEQUENCE {t}_id_seq TO qg; "
              "CREATE TABLE {t}_secret (x int); REVOKE ALL ON {t}_secret FROM PUBLIC, qg"
              .format(t=T))
    return Server(HTTP_MAX_BODY=4096)


def teardown(s):
    s.stop()
    admin_sql("DROP TABLE IF EXISTS {t}, {t}_secret".format(t=T))


def test_health_live(s):
    r = s.get("/health/live")
    check(check_ok(r) == {"status": "alive"}, r)
    check(r.header("content-type") == "application/json", r.headers)


def test_health(s):
    j = check_ok(s.get("/health"))
    check(j["status"] == "healthy", j)
    check(isinstance(j["connection_count"], int) and isinstance(j["latency_ms"], (int, float)), j)
    check(j["pool"]["size"] == 5, j)


def test_health_ready_cached(s):
    a = check_ok(s.get("/health/ready"))
    b = check_ok(s.get("/health/ready"))
    check(a["status"] == b["status"] == "healthy", (a, b))
    # HEALTH_CACHE_MS defaults to a second: the second answer is the first check.
    check(a["latency_ms"] == b["latency_ms"], (a, b))


def test_health_after_its_backend_was_terminated(_s):
    """Issue 11.2: a failover or a DBA ends the health check's session; the database is fine."""
    app = "qg_health_kill_%d" % os.getpid()
    url = database_url()
    s = Server(DATABASE_URL=url + ("&" if "?" in url else "?") + "application_name=" + app,
               HEALTH_CACHE_MS=60000)
    kill = ("SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE application_name = '%s'" % app)
    try:
        check_ok(s.get("/health"))  # opens the health connection, and nothing else
        check(admin_sql(kill) == "1", "the health backend was not found")
        check(check_ok(s.get("/health/ready"))["status"] == "healthy", "ready")
        check(admin_sql(kill) == "1", "the health backend was not reopened")
        j = check_ok(s.get("/health"))
        check(j["status"] == "healthy" and j["pool"]["health_connection"] == 1, j)
    finally:
        s.stop()


def test_pool(s):
    j = check_ok(s.get("/pool"))
    for k in ("size", "max_overflow", "checked_out", "idle", "overflow", "waiting", "timeout_s",
              "recycle_s", "connects", "recycles", "timeouts", "errors"):
        check(k in j and isinstance(j[k], (int, float)), "pool lacks %s: %r" % (k, j))
    check(j["size"] == 5 and j["max_overflow"] == 10 and j["timeout_s"] == 30, j)


def test_metrics(s):
    s.post("/query", {"sql": "SELECT 1"})
    s.post("/query", {"sql": "SELECT * FROM nope_%s" % T})
    r = s.get("/metrics")
    check(r.status == 200 and r.header("content-type").startswith("text/plain; version=0.0.4"),
          r)
    text = r.raw.decode()
    for want in ('querygate_http_requests_total{endpoint="/query",status="200"}',
                 'querygate_http_requests_total{endpoint="/query",status="400"}',
                 'querygate_http_request_duration_seconds_bucket{endpoint="/query",le="0.0005"}',
                 'querygate_http_request_duration_seconds_bucket{endpoint="/query",le="+Inf"}',
                 'querygate_http_request_duration_seconds_count{endpoint="/query"}',
                 'querygate_pool_size{pool="primary"} 5', "querygate_pool_checked_out", "querygate_pool_idle",
                 "querygate_pool_overflow", "querygate_pool_waiting",
                 "querygate_pool_connects_total", "querygate_pool_recycles_total",
                 "querygate_pool_timeouts_total", "querygate_pool_errors_total",
                 "querygate_db_retries_total", 'querygate_db_errors_total{class="42"}',
                 'querygate_requests_served_total{pool="primary"}',
                 "querygate_build_info{version="):
        check(want in text, "metrics lack %s" % want)
    for line in text.splitlines():
        check(line.startswith("#") or len(line.rsplit(" ", 1)) == 2, "bad line %r" % line)


def test_metrics_count_each_request_once(s):
    def count(text):
        for line in text.splitlines():
            if line.startswith('querygate_http_requests_total{endpoint="/pool",status="200"}'):
                return int(line.split()[-1])
        return 0
    before = count(s.get("/metrics").raw.decode())
    for _ in range(3):
        s.get("/pool")
    after = count(s.get("/metrics").raw.decode())
    check(after - before == 3, (before, after))


def test_head(s):
    for path in ("/health/live", "/pool", "/metrics", "/health"):
        g = s.get(path)
        h = s.request("HEAD", path)
        check(h.status == g.status and h.raw == b"", (path, h))
        check(h.header("x-request-id"), h.headers)


def test_not_found(s):
    for path in ("/nope", "/query/", "/QUERY", "/health/live/x"):
        check_error(s.get(path), 404, "not_found", path)
    check_error(s.post("/nope", {"sql": "SELECT 1"}), 404, "not_found")


def test_method_not_allowed(s):
    r = s.get("/query")
    check_error(r, 405, "method_not_allowed")
    check(r.header("allow") == "POST", r.headers)
    r = s.post("/health", {})
    check_error(r, 405, "method_not_allowed")
    check(r.header("allow") == "GET, HEAD", r.headers)
    for m in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        check_error(s.request(m, "/update"), 405, "method_not_allowed", m)


def test_request_id_echo_and_generation(s):
    r = s.get("/pool", headers={"X-Request-Id": "abc-123_XYZ"})
    check(r.header("x-request-id") == "abc-123_XYZ", r.headers)
    a = s.get("/pool").header("x-request-id")
    b = s.get("/pool").header("x-request-id")
    check(a and b and a != b and len(a) == 16, (a, b))
    # Not sane (too long): replaced by a new one.
    r = s.get("/pool", headers={"X-Request-Id": "x" * 201})
    check(len(r.header("x-request-id")) == 16, r.headers)
    r = check_error(s.post("/query", "{"), 400, "invalid_json")


def test_unsupported_media_type(s):
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                  "application/json; charset=latin1"):
        r = s.post("/query", b'{"sql":"SELECT 1"}', headers={"Content-Type": ctype})
        check_error(r, 415, "unsupported_media_type", ctype)
    r = s.request("POST", "/query", body=b'{"sql":"SELECT 1"}')
    check_error(r, 415, "unsupported_media_type", "no content type")
    for ctype in ("application/json; charset=utf-8", "Application/JSON;charset=UTF-8",
                  'application/json; charset="utf-8"'):
        check_ok(s.post("/query", b'{"sql":"SELECT 1"}', headers={"Content-Type": ctype}), ctype)


def test_invalid_json(s):
    for body in (b"", b"{", b"nope", b'{"sql": "SELECT 1",}', b'{"sql":"a\x00b"}',
                 b'{"sql":"SELECT 1","sql":"SELECT 2"}', b"\xff\xfe"):
        check_error(s.post("/query", body), 400, "invalid_json", body)
    # Valid JSON, but PostgreSQL text cannot hold NUL: the core calls it a bad request.
    e = check_error(s.post("/query", b'{"sql":"a\\u0000b"}'), 400, "invalid_request")
    check("NUL" in e["message"], e)


def test_invalid_request(s):
    cases = [
        ([], "the body must be a JSON object"),
        ({"sql": 1}, '"sql"'),
        ({"sql": ""}, '"sql"'),
        ({"params": {}}, '"sql"'),
        ({"sql": "SELECT 1", "parms": {}}, "parms"),
        ({"sql": "SELECT 1", "params": [1]}, "params"),
        ({"sql": "SELECT 1", "numbers_as_strings": "yes"}, "numbers_as_strings"),
    ]
    for body, needle in cases:
        e = check_error(s.post("/query", body), 400, "invalid_request", body)
        check(needle in e["message"], "%r: message %r lacks %r" % (body, e["message"], needle))
    e = check_error(s.post("/transaction", {"statements": []}), 400, "invalid_request")
    e = check_error(s.post("/transaction", {"statements": [{"sql": "SELECT 1"}],
                                            "isolation": "chaos"}), 400, "invalid_request")
    e = check_error(s.post("/update", {"sql": "SELECT 1", "params": []}), 400, "invalid_request")


def test_missing_and_unknown_parameter(s):
    e = check_error(s.post("/query", {"sql": "SELECT :a::int + :b::int", "params": {"a": 1}}),
                    400, "missing_parameter")
    check("b" in e["message"], e)
    e = check_error(s.post("/query", {"sql": "SELECT :a::int", "params": {"a": 1, "zz": 2}}),
                    400, "unknown_parameter")
    check("zz" in e["message"], e)


def test_multiple_statements(s):
    check_error(s.post("/update", {"sql": "SELECT 1; DROP TABLE %s" % T}), 400,
                "multiple_statements")
    check(admin_sql("SELECT count(*) FROM %s" % T) is not None, "table still there")


def test_sql_error(s):
    e = check_error(s.post("/query", {"sql": "SELECT * FROM no_such_table_here"}), 400,
                    "sql_error")
    check(e["sqlstate"] == "42P01" and e["position"] == 15, e)
    e = check_error(s.post("/query", {"sql": "SELECT 1/0"}), 400, "sql_error")
    check(e["sqlstate"] == "22012", e)


def test_unterminated_is_sql_error(s):
    """PostgreSQL answers 42601 at these positions (tests/db/test_params_pg.c compares)."""
    for sql, pos in (("SELECT 'abc", 8), ('SELECT "abc', 8), ("SELECT $$abc", 8),
                     ("SELECT 1 /* x", 10), ("SELECT E'a\\'", 8), ("SELECT :a, 'é', 'x", 17),
                     ("SELECT 'a'\n'b", 8)):
        e = check_error(s.post("/query", {"sql": sql, "params": {"a": 1}} if ":a" in sql
                               else {"sql": sql}), 400, "sql_error", sql)
        check(e["sqlstate"] == "42601" and e["position"] == pos and
              "unterminated" in e["message"], (sql, e))
    e = check_error(s.post("/transaction", {"statements": [{"sql": "SELECT 1"},
                                                           {"sql": "SELECT 'x"}]}),
                    400, "sql_error")
    check(e["sqlstate"] == "42601" and e["position"] == 8 and e["statement_index"] == 1, e)
    # The server finds it (backslash escapes: the scanner assumes standard strings), at
    # the caller's position, not the rewritten text's.
    e = check_error(s.post("/transaction", {"statements": [
        {"sql": "SET LOCAL standard_conforming_strings = off"},
        {"sql": "SELECT :x::text, 'a\\'", "params": {"x": "1"}}]}), 400, "sql_error")
    check(e["sqlstate"] == "42601" and e["position"] == 18 and e["statement_index"] == 1, e)


def test_forbidden(s):
    e = check_error(s.post("/query", {"sql": "SELECT * FROM %s_secret" % T}), 403, "forbidden")
    check(e["sqlstate"] == "42501", e)


def test_read_only(s):
    e = check_error(s.post("/query", {"sql": "INSERT INTO %s (name) VALUES ('ro')" % T}), 403,
                    "read_only")
    check(e["sqlstate"] == "25006", e)
    check(admin_sql("SELECT count(*) FROM %s WHERE name = 'ro'" % T) == "0", "write happened")


def test_conflict(s):
    body = {"sql": "INSERT INTO %s (name) VALUES (:n)" % T, "params": {"n": "dup"}}
    check_ok(s.post("/update", body))
    e = check_error(s.post("/update", body), 409, "conflict")
    check(e["sqlstate"] == "23505" and e.get("detail"), e)


def test_payload_too_large(s):
    big = '{"sql":"SELECT 1 -- %s"}' % ("x" * 5000)
    r = s.post("/query", big)
    check_error(r, 413, "payload_too_large")
    # Without Content-Length (chunked): answered when the body ends.
    c = s.connection()
    c.putrequest("POST", "/query")
    c.putheader("Content-Type", "application/json")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    for _ in range(10):
        c.send(b"200\r\n" + b" " * 512 + b"\r\n")
    c.send(b"0\r\n\r\n")
    r = c.getresponse()
    check(r.status == 413, r.status)
    c.close()
    check_ok(s.post("/query", {"sql": "SELECT 1"}), "still serving")


def test_keep_alive_after_errors(s):
    c = s.connection()
    for body in ({"sql": "SELECT 1"}, {"sql": "SELECT nope"}, "{", {"sql": "SELECT 2"}):
        s.request("POST", "/query", body=body, conn=c)
    r = s.request("GET", "/nope", conn=c)
    check(r.status == 404, r)
    check_ok(s.request("POST", "/query", body={"sql": "SELECT 3"}, conn=c))
    c.close()


def test_garbage_request_line(s):
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=1)
    sock.sendall(b"\x00\x01\x02 garbage\r\n\r\n")
    try:
        sock.recv(4096)
    except OSError:
        pass
    sock.close()
    check_ok(s.get("/health/live"), "alive after garbage")


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

"""POST /query with Accept: application/x-ndjson: streamed lines, errors mid-stream, the client
leaving, back-pressure on a slow reader, the drain."""
import json
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, check, check_error, check_ok, database_url,  # noqa: E402
                       proc_stats, run_tests)

NDJSON = {"Accept": "application/x-ndjson"}
# Rows as fast as the server makes them (generate_series alone first builds its whole set).
ENDLESS = ("SELECT a * 100000 + b AS g, repeat('x', 300) AS pad "
           "FROM generate_series(1, 100000) a, generate_series(1, 100000) b")
TYPES = ("SELECT 1::int2 a, 9223372036854775807::int8 b, 12345678901234567890.123456789::numeric c, "
         "'NaN'::float8 d, 0.1::float8 e, true f, NULL::int g, '{\"k\":[1,2]}'::jsonb h, "
         "ARRAY[[1,2],[3,NULL]] i, ARRAY['a',NULL,'c\"d'] j, '\\x00ff'::bytea k, "
         "'2024-02-29'::date l, '2024-02-29 13:14:15.5'::timestamp m, "
         "'2024-02-29 13:14:15+02'::timestamptz n, '1 day 2 hours'::interval o, "
         "'13:14:15+02'::timetz p, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid q, "
         "'10.0.0.1/8'::inet r, 'h\u00e9llo \u2603 \"q\" \\ t'::text s, 1 AS a")


def app_url(app):
    url = database_url()
    return url + ("&" if "?" in url else "?") + "application_name=" + app


def setup():
    database_url()
    # NOTE: ASan keeps freed memory in quarantine (256 MB): RSS would grow with the batches
    # freed, not with what is held. A small quarantine keeps the RSS check meaningful.
    asan = os.environ.get("ASAN_OPTIONS", "")
    return Server(MAX_RESULT_ROWS=100, DATABASE_URL=app_url("qg_stream_%d" % os.getpid()),
                  ASAN_OPTIONS=(asan + ":" if asan else "") + "quarantine_size_mb=4")


def teardown(s):
    s.stop()


def stream(s, sql, **extra):
    body = {"sql": sql}
    body.update(extra)
    r = s.post("/query", body, headers=NDJSON)
    check(r.status == 200, (sql, r))
    check(r.header("content-type") == "application/x-ndjson", r.headers)
    check(r.header("transfer-encoding") == "chunked", r.headers)
    check(r.raw.endswith(b"\n"), r.raw[-200:])
    return r.raw.decode().split("\n")[:-1]


def test_format(s):
    lines = stream(s, "SELECT g, 'r' || g AS name FROM generate_series(1, 3) g")
    check(lines == ['{"columns":[{"name":"g","type":"int4"},{"name":"name","type":"text"}]}',
                    '{"g":1,"name":"r1"}', '{"g":2,"name":"r2"}', '{"g":3,"name":"r3"}',
                    '{"row_count":3}'], lines)
    lines = stream(s, "SELECT 1 AS a WHERE false")
    check(lines == ['{"columns":[{"name":"a","type":"int4"}]}', '{"row_count":0}'], lines)
    # Parameters as for an ordinary /query.
    lines = stream(s, "SELECT :x::int + 1 AS y", params={"x": 41})
    check(lines[1] == '{"y":42}', lines)
    # Past MAX_RESULT_ROWS (100 here): a stream has no cap; an ordinary answer has.
    lines = stream(s, "SELECT g FROM generate_series(1, 5000) g")
    check(len(lines) == 5002 and lines[-1] == '{"row_count":5000}', lines[-3:])
    check([json.loads(x)["g"] for x in lines[1:-1]] == list(range(1, 5001)), "rows in order")
    check_error(s.post("/query", {"sql": "SELECT g FROM generate_series(1, 5000) g"}), 422,
                "result_too_large")
    # Other Accept values: the ordinary answer.
    for accept in ("application/json", "*/*", "application/x-ndjsonx"):
        r = s.post("/query", {"sql": "SELECT 1 AS a"}, headers={"Accept": accept})
        check(check_ok(r)["rows"] == [{"a": 1}], (accept, r))
    r = s.post("/query", {"sql": "SELECT 1 AS a"},
               headers={"Accept": "application/json;q=0.5, Application/X-NDJSON"})
    check(r.header("content-type") == "application/x-ndjson", r)


def test_error_before_first_line_is_ordinary(s):
    r = s.post("/query", {"sql": "SELECT nosuchcolumn"}, headers=NDJSON)
    e = check_error(r, 400, "sql_error")
    check(e["sqlstate"] == "42703" and r.header("content-type").startswith("application/json"), r)
    check_error(s.post("/query", {"sql": "SELECT :x"}, headers=NDJSON), 400, "missing_parameter")
    check_error(s.post("/query", {"sql": "CREATE TABLE nope (x int)"}, headers=NDJSON), 403,
                "read_only")


def test_same_bytes_as_query(s):
    for nas in (False, True):
        normal = s.post("/query", {"sql": TYPES, "numbers_as_strings": nas}).raw.decode()
        check(normal.startswith('{"rows":['), normal)
        row = normal[len('{"rows":['):normal.index('],"row_count":1,')]
        cols = normal[normal.index(',"columns":') + len(',"columns":'):-1]
        lines = stream(s, TYPES, numbers_as_strings=nas)
        check(lines[1] == row, "streamed %r\nvs /query %r" % (lines[1], row))
        check(lines[0] == '{"columns":%s}' % cols, (lines[0], cols))
        check(lines[2] == '{"row_count":1}', lines)


def test_error_mid_stream(s):
    lines = stream(s, "SELECT 1/(1000-g) AS v FROM generate_series(1, 2000) g")
    check(len(lines) == 1 + 999 + 1, len(lines))
    check([json.loads(x)["v"] for x in lines[1:-1]] == [0] * 998 + [1], lines[-3:])
    e = json.loads(lines[-1])["error"]
    check(e["code"] == "sql_error" and e["sqlstate"] == "22012" and e["message"], e)
    # The access line said 200 when the stream began; how it ended is logged too.
    deadline = time.time() + 2
    while not any("stream ended by an error after 999 rows" in x for x in s.lines) and \
            time.time() < deadline:
        time.sleep(0.02)
    ended = [x for x in s.lines if "stream ended by an error after 999 rows" in x]
    check(len(ended) == 1 and "sql_error 22012" in ended[0] and "division" not in ended[0],
          ended)
    # The connection is clean for the next request.
    check(check_ok(s.post("/query", {"sql": "SELECT 1 AS a"}))["rows"] == [{"a": 1}], "after")


def dechunk(data):
    """The body of a raw HTTP/1.1 response with a chunked body (complete or cut)."""
    data = bytes(data)
    pos = data.index(b"\r\n\r\n") + 4
    body = bytearray()
    while pos < len(data):
        eol = data.index(b"\r\n", pos)
        n = int(data[pos:eol], 16)
        if n == 0:
            break
        body += data[eol + 2:eol + 2 + n]
        pos = eol + 2 + n + 2
    return bytes(body)


def raw_request(s, sql):
    """A socket that sent an NDJSON /query of sql; its response is unread."""
    body = json.dumps({"sql": sql}).encode()
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Accept: application/x-ndjson\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return sock


def statement_running(marker):
    return int(admin_sql("SELECT count(*) FROM pg_stat_activity WHERE state <> 'idle' AND "
                         "query LIKE '%%%s%%' AND pid <> pg_backend_pid()" % marker))


def pool(s):
    return check_ok(s.get("/pool"))


def test_cancel_on_disconnect(s):
    marker = "cancel_me_%d" % os.getpid()
    sock = raw_request(s, ENDLESS + " -- " + marker)
    got = sock.recv(65536)
    check(got.startswith(b"HTTP/1.1 200"), got[:200])
    time.sleep(0.3)  # the client reads nothing: the server waits on its send
    check(statement_running(marker) == 1, "the statement runs")
    check(pool(s)["checked_out"] == 1, pool(s))
    sock.close()
    deadline = time.time() + 3
    while (statement_running(marker) or pool(s)["checked_out"]) and time.time() < deadline:
        time.sleep(0.05)
    check(statement_running(marker) == 0, "the statement still runs after the client left")
    p = pool(s)
    check(p["checked_out"] == 0 and p["idle"] >= 1, p)
    check(check_ok(s.post("/query", {"sql": "SELECT current_setting('transaction_read_only') r"}))
          ["rows"] == [{"r": "on"}], "the connection is reused")


def test_slow_reader_bounded_memory(s):
    """A 40 MB result to a client that reads a little at a time: the service holds a batch or
    two, not the result (it would be 40 MB more)."""
    pid = s.proc.pid
    stream(s, "SELECT g, repeat('x', 300) AS pad FROM generate_series(1, 20000) g")  # warm up
    base = proc_stats(pid)["rss_kb"]
    rows = 100000
    sock = raw_request(s, "SELECT a * 1000 + b AS g, repeat('y', 400) AS pad FROM "
                          "generate_series(0, %d) a, generate_series(1, 1000) b "
                          "WHERE a * 1000 + b <= %d" % (rows // 1000, rows))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    data = bytearray()
    peak = base
    t_end = time.time() + 1.5
    while time.time() < t_end:  # slow: 32 KB every 10 ms
        data += sock.recv(32768)
        time.sleep(0.01)
        peak = max(peak, proc_stats(pid)["rss_kb"])
    slow = len(data)
    while not data.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
        peak = max(peak, proc_stats(pid)["rss_kb"])
    sock.close()
    body = dechunk(data)
    check(len(body) > 40 * 1000 * 1000 and body.endswith(b'{"row_count":%d}\n' % rows),
          (len(body), body[-200:]))
    check(slow < 20 * 1000 * 1000, "not slow enough to test anything: %d bytes" % slow)
    check(peak - base < 12 * 1024, "RSS grew %d kB (base %d kB) streaming %d bytes" %
          (peak - base, base, len(data)))


def metric(s, name):
    for line in s.get("/metrics").raw.decode().splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError("no metric " + name)


def test_metrics_count_rows_and_bytes(s):
    rows0, bytes0 = metric(s, "querygate_stream_rows_total"), metric(s, "querygate_stream_bytes_total")
    lines = stream(s, "SELECT g FROM generate_series(1, 1234) g")
    rows1, bytes1 = metric(s, "querygate_stream_rows_total"), metric(s, "querygate_stream_bytes_total")
    check(rows1 - rows0 == 1234, (rows0, rows1))
    check(bytes1 - bytes0 == sum(len(x) + 1 for x in lines), (bytes0, bytes1))


def read_all(sock):
    sock.settimeout(15)
    data = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return data
        data += chunk
        if data.endswith(b"\r\n0\r\n\r\n"):
            return data


def last_error(data):
    """The error of a complete chunked NDJSON body's last line; every line is JSON."""
    check(data.endswith(b"\r\n0\r\n\r\n"), "the chunked body did not end: %r" % data[-200:])
    lines = dechunk(data).split(b"\n")
    check(lines[-1] == b"" and len(lines) > 3, lines[-3:])
    check(all(json.loads(x) for x in lines[:-1]), "a line is not JSON")
    return json.loads(lines[-2].decode())["error"]


def test_statement_timeout_mid_stream(_):
    """PG_STATEMENT_TIMEOUT covers the stream, a client that stopped reading included."""
    s = Server(PG_STATEMENT_TIMEOUT=500)
    try:
        sock = raw_request(s, ENDLESS)
        time.sleep(1.0)  # past the timeout, reading nothing
        e = last_error(read_all(sock))
        sock.close()
        check(e["code"] == "statement_timeout" and e["sqlstate"] == "57014", e)
        check(check_ok(s.get("/pool"))["checked_out"] == 0, "connection back")
    finally:
        s.stop()


def test_zz_drain_ends_streams(_):
    """SIGTERM mid-stream: the stream runs until SHUTDOWN_TIMEOUT, then ends with a last line
    shutting_down; the service exits 0."""
    app = "qg_stream_drain_%d" % os.getpid()
    s = Server(SHUTDOWN_TIMEOUT=0.5, DATABASE_URL=app_url(app))
    sock = raw_request(s, ENDLESS)
    data = bytearray(sock.recv(65536))
    check(data.startswith(b"HTTP/1.1 200"), data[:200])
    t0 = time.time()
    s.proc.send_signal(signal.SIGTERM)
    data += read_all(sock)
    sock.close()
    rc = s.proc.wait(15)
    check(rc == 0 and time.time() - t0 < 10, "rc %s after %.1fs" % (rc, time.time() - t0))
    e = last_error(data)
    check(e["code"] == "shutting_down" and e["message"], e)
    deadline = time.time() + 3
    while int(admin_sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'"
                        % app)) and time.time() < deadline:
        time.sleep(0.05)


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)

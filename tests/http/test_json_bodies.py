"""Hostile bodies: every JSONTestSuite n_*.json, deep nesting, NUL bytes, truncation; never a crash."""
import glob
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import Server, check, check_error, check_ok, database_url, run_tests, source_dir  # noqa: E402,E501

SUITE = os.path.join(source_dir(), "..", "shared", "testdata", "JSONTestSuite", "test_parsing")


def setup():
    database_url()
    return Server(HTTP_MAX_BODY=2 * 1024 * 1024)


def teardown(s):
    check(s.alive(), "the server died")
    s.stop()


def test_json_test_suite_n_files(s):
    files = sorted(glob.glob(os.path.join(SUITE, "n_*.json")))
    if not files:
        print("  (skipped: %s is missing)" % SUITE)
        return
    bad = []
    for path in files:
        with open(path, "rb") as f:
            body = f.read()
        r = s.post("/query", body)
        if r.status != 400 or r.code not in ("invalid_json", "invalid_request"):
            bad.append((os.path.basename(path), r.status, r.raw[:100]))
    check(not bad, "not answered 400: %r" % bad)
    check_ok(s.get("/health/live"))
    print("  %d files answered 400" % len(files))


def test_deep_nesting(s):
    for body in (b"[" * 100000, b'{"sql":"SELECT 1","params":{"a":' + b"[" * 100000 + b"]" *
                 100000 + b"}}", b'{"a":' * 50000 + b"1" + b"}" * 50000):
        r = s.post("/query", body)
        check(r.status == 400 and r.code in ("invalid_json", "invalid_request"), r)
    check_ok(s.get("/health/live"))


def test_nul_bytes(s):
    for body in (b"\x00", b'{"sql":"SELECT 1"}\x00', b'{"sql":"SELECT\x00 1"}',
                 b'\x00{"sql":"SELECT 1"}'):
        check_error(s.post("/query", body), 400, "invalid_json", body)


def test_truncated_bodies(s):
    full = json.dumps({"sql": "SELECT :a::int AS a", "params": {"a": 1}}).encode()
    for n in range(len(full)):
        check_error(s.post("/query", full[:n]), 400, "invalid_json", full[:n])
    check_ok(s.post("/query", full))


def test_body_shorter_than_content_length(s):
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=1)
    sock.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"sql\":")
    sock.shutdown(socket.SHUT_WR)
    try:
        sock.recv(4096)
    except OSError:
        pass
    sock.close()
    check_ok(s.get("/health/live"))


def test_utf8(s):
    r = s.post("/query", '{"sql":"SELECT :t::text AS t","params":{"t":"\\ud83d\\ude00 é"}}')
    check(check_ok(r)["rows"] == [{"t": "\U0001F600 é"}], r)
    check_error(s.post("/query", b'{"sql":"SELECT \xc3\x28"}'), 400, "invalid_json")


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

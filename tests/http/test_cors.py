"""CORS (CORS_ALLOW_ORIGINS, CORS_ALLOW_HEADERS): response headers, preflights, origins not allowed, bad settings."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, binary, check, check_error, check_ok, database_url,  # noqa: E402
                       run_tests)

APP = "http://app.example"
LOCAL = "http://127.0.0.1:5000"
EVIL = "http://evil.example"
EXPOSE = "X-Request-Id, Retry-After, WWW-Authenticate, X-Querygate-LSN, X-Querygate-Served-By"
ALLOWED_HEADERS = ("Content-Type, Authorization, X-Request-Id, X-Querygate-Min-LSN, traceparent, "
                   "tracestate")
KEY = "cors-preflight-key-0123456789abcdef"


def cors_headers(r):
    return {k: v for k, v in r.headers.items() if k.startswith("access-control-")}


def preflight(s, path, origin, method="POST", headers=None):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        h["Access-Control-Request-Headers"] = headers
    return s.request("OPTIONS", path, headers=h)


def setup():
    return Server(CORS_ALLOW_ORIGINS=" %s , %s" % (APP, LOCAL))


def test_allowed_origin_simple_and_post(s):
    for origin in (APP, LOCAL):
        r = s.get("/health/live", headers={"Origin": origin})
        check_ok(r, origin)
        check(r.header("access-control-allow-origin") == origin, r.headers)
        check(r.header("access-control-expose-headers") == EXPOSE, r.headers)
        check(r.header("vary") == "Origin", r.headers)
        check(r.header("access-control-allow-credentials") is None, r.headers)
    r = s.post("/query", {"sql": "SELECT 1 AS a"}, headers={"Origin": APP})
    check(check_ok(r)["rows"] == [{"a": 1}], r)
    check(r.header("access-control-allow-origin") == APP, r.headers)
    # Errors too, or a page could not read why it failed.
    r = s.post("/query", "{", headers={"Origin": APP})
    check_error(r, 400, "invalid_json")
    check(r.header("access-control-allow-origin") == APP, r.headers)
    r = s.get("/nope", headers={"Origin": APP})
    check_error(r, 404, "not_found")
    check(r.header("access-control-allow-origin") == APP, r.headers)


def test_origin_not_allowed_gets_no_cors_headers(s):
    # Near misses: a trailing slash, another port, another scheme, another case.
    for origin in (EVIL, APP + "/", "http://app.example:80", "https://app.example",
                   "http://APP.example", "null", ""):
        r = s.post("/query", {"sql": "SELECT 1 AS a"}, headers={"Origin": origin})
        check_ok(r, origin)  # answered: it is the browser that withholds it from the page
        check(cors_headers(r) == {}, (origin, r.headers))
        check(r.header("vary") == "Origin", r.headers)
    r = s.get("/pool")
    check(cors_headers(r) == {} and r.header("vary") == "Origin", r.headers)


def test_preflight_allowed(s):
    r = preflight(s, "/query", APP, headers="content-type, authorization")
    check(r.status == 204 and r.raw == b"", r)
    check(r.header("access-control-allow-origin") == APP, r.headers)
    check(r.header("access-control-allow-methods") == "POST", r.headers)
    check(r.header("access-control-allow-headers") == "content-type, authorization", r.headers)
    check(r.header("access-control-max-age") == "600", r.headers)
    check(r.header("vary") == "Origin", r.headers)
    check(r.header("x-request-id"), r.headers)
    r = preflight(s, "/pool", LOCAL, method="GET")
    check(r.status == 204, r)
    check(r.header("access-control-allow-methods") == "GET, HEAD", r.headers)
    check(r.header("access-control-allow-headers") == ALLOWED_HEADERS, r.headers)
    # One requested header outside the set: the set is answered, and the browser refuses.
    r = preflight(s, "/transaction", APP, headers="Content-Type, X-Evil")
    check(r.status == 204, r)
    check(r.header("access-control-allow-headers") == ALLOWED_HEADERS, r.headers)
    check(r.header("access-control-allow-methods") == "POST", r.headers)


def test_preflight_with_trace_context(s):
    """OpenTelemetry's fetch instrumentation asks for traceparent and tracestate."""
    asked = "authorization,content-type,traceparent,tracestate"
    r = preflight(s, "/query", APP, headers=asked)
    check(r.status == 204 and r.header("access-control-allow-headers") == asked, r.headers)
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = s.post("/query", {"sql": "SELECT 1 AS a"},
               headers={"Origin": APP, "traceparent": tp, "tracestate": "vendor=x"})
    check(check_ok(r)["rows"] == [{"a": 1}] and r.header("access-control-allow-origin") == APP, r)


def test_preflight_origin_not_allowed_is_403(s):
    r = preflight(s, "/query", EVIL, headers="content-type")
    e = check_error(r, 403, "forbidden")
    check("CORS_ALLOW_ORIGINS" in e["message"] and EVIL in e["message"], e)
    check(cors_headers(r) == {}, r.headers)
    check(r.header("vary") == "Origin", r.headers)


def test_options_that_is_no_preflight(s):
    check_error(preflight(s, "/nope", APP), 404, "not_found")
    # No Access-Control-Request-Method: a plain OPTIONS, which no endpoint accepts.
    r = s.request("OPTIONS", "/query", headers={"Origin": APP})
    check_error(r, 405, "method_not_allowed")
    check(r.header("allow") == "POST", r.headers)


def teardown(s):
    s.stop()


def test_wildcard():
    s = Server(CORS_ALLOW_ORIGINS="*")
    try:
        for origin in (APP, EVIL, "null"):
            r = s.get("/health/live", headers={"Origin": origin})
            check(r.header("access-control-allow-origin") == "*", r.headers)
            check(r.header("access-control-expose-headers") == EXPOSE, r.headers)
        r = s.get("/health/live")
        check(cors_headers(r) == {} and r.header("vary") == "Origin", r.headers)
        r = preflight(s, "/update", EVIL)
        check(r.status == 204 and r.header("access-control-allow-origin") == "*", r.headers)
    finally:
        s.stop()


def test_not_configured():
    s = Server()
    try:
        r = s.get("/health/live", headers={"Origin": APP})
        check(cors_headers(r) == {} and r.header("vary") is None, r.headers)
        check_error(preflight(s, "/query", APP), 405, "method_not_allowed")
    finally:
        s.stop()


def test_preflight_needs_no_api_key():
    # Browsers never send Authorization on a preflight: it is answered before any key check.
    s = Server(CORS_ALLOW_ORIGINS=APP, AUTH="keys", API_KEYS=KEY + " read,write")
    try:
        r = preflight(s, "/query", APP, headers="authorization, content-type")
        check(r.status == 204, r)
        check(r.header("access-control-allow-origin") == APP, r.headers)
        r = s.post("/query", {"sql": "SELECT 2 AS b"},
                   headers={"Origin": APP, "Authorization": "Bearer " + KEY})
        check(check_ok(r)["rows"] == [{"b": 2}], r)
        check(r.header("access-control-allow-origin") == APP, r.headers)
    finally:
        s.stop()


def test_allow_headers_setting():
    s = Server(CORS_ALLOW_ORIGINS=APP, CORS_ALLOW_HEADERS="Content-Type, X-Tenant")
    try:
        r = preflight(s, "/query", APP, headers="x-tenant,content-type")
        check(r.status == 204 and r.header("access-control-allow-headers") == "x-tenant,content-type",
              r.headers)
        r = preflight(s, "/query", APP, headers="content-type,traceparent")
        check(r.status == 204 and r.header("access-control-allow-headers") ==
              "Content-Type, X-Tenant", r.headers)
    finally:
        s.stop()


def test_bad_settings_are_startup_errors():
    for value, words in (("http://a.example/", "path"), ("app.example", "not an origin"),
                         ("*, http://a.example", "stand alone"),
                         ("http://a.example,,http://b.example", "empty entry"),
                         ("http://*.example", "wildcard")):
        env = dict(os.environ, DATABASE_URL=database_url(), PORT="0", HOST="127.0.0.1",
                   AUTH="none", CORS_ALLOW_ORIGINS=value)
        p = subprocess.run([binary()], env=env, capture_output=True, text=True, timeout=30)
        check(p.returncode != 0, (value, p.returncode, p.stderr))
        check("CORS_ALLOW_ORIGINS" in p.stderr and words in p.stderr, (value, p.stderr))
    for value in ("Content-Type,,Authorization", "X Tenant", "X-A:b"):
        env = dict(os.environ, DATABASE_URL=database_url(), PORT="0", HOST="127.0.0.1",
                   AUTH="none", CORS_ALLOW_ORIGINS=APP, CORS_ALLOW_HEADERS=value)
        p = subprocess.run([binary()], env=env, capture_output=True, text=True, timeout=30)
        check(p.returncode != 0, (value, p.returncode, p.stderr))
        check("CORS_ALLOW_HEADERS" in p.stderr and "not a header name" in p.stderr,
              (value, p.stderr))


if __name__ == "__main__":
    tests = {n: f for n, f in globals().items() if n.startswith("test_")}
    # The shared server's tests first (they take it as s), then those that start their own.
    codes = []
    for group, args in (({n: f for n, f in tests.items() if f.__code__.co_argcount}, (setup, teardown)),
                        ({n: f for n, f in tests.items() if not f.__code__.co_argcount}, ())):
        try:
            run_tests(group, *args)
        except SystemExit as e:
            codes.append(e.code)
    sys.exit(1 if 1 in codes else max(codes))

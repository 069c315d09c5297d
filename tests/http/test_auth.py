"""API keys: 401/403, scopes, open health probes, key files, SIGHUP reload, secure default, database roles."""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, binary, check, check_error, check_ok,  # noqa: E402
                       database_url, run_tests)

PID = os.getpid()
T = "t_auth_%d" % PID
ROLE = "qgt_auth_reader_%d" % PID
ROLE_PASSWORD = "role-pw-%d" % PID
READ = "read-key-%d-0123456789" % PID
WRITE = "write-key-%d-0123456789" % PID
ADMIN = "admin-key-%d-0123456789" % PID
ROLEKEY = "role-key-%d-0123456789" % PID
NEW = "new-key-%d-0123456789ab" % PID


def bearer(key):
    return {"Authorization": "Bearer " + key}


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def key_file_text(*lines):
    return "# querygate keys for test_auth\n\n" + "".join(l + "\n" for l in lines) + \
           "   # an indented comment\n\n"


class State:
    pass


def setup():
    database_url()
    st = State()
    st.dir = tempfile.mkdtemp(prefix="qgt-auth-")
    admin_sql("DROP TABLE IF EXISTS {t}_open, {t}_secret; "
              "DO $$BEGIN CREATE ROLE {r} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; "
              "END$$; ALTER ROLE {r} PASSWORD '{pw}'; "
              "CREATE TABLE {t}_open (x int); INSERT INTO {t}_open VALUES (1); "
              "CREATE TABLE {t}_secret (s text); INSERT INTO {t}_secret VALUES ('hidden-{p}'); "
              "ALTER TABLE {t}_open OWNER TO qg; ALTER TABLE {t}_secret OWNER TO qg; "
              "GRANT SELECT ON {t}_open TO {r}"
              .format(t=T, r=ROLE, pw=ROLE_PASSWORD, p=PID))
    u = urllib.parse.urlparse(database_url())
    st.passfile = os.path.join(st.dir, "pgpass")
    write(st.passfile, "%s:%s:%s:%s:%s\n" % (u.hostname, u.port, u.path.lstrip("/") or "*",
                                             ROLE, ROLE_PASSWORD))
    st.keys = os.path.join(st.dir, "keys")
    write(st.keys, key_file_text(READ + " read", WRITE + "   write,read  # the writer",
                                 "\t" + ROLEKEY + "\tread,write\t" + ROLE))
    st.s = Server(AUTH="keys", API_KEYS_FILE=st.keys, API_KEYS="%s admin;" % ADMIN,
                  PGPASSFILE=st.passfile, HTTP_MAX_BODY=1048576)
    return st


def teardown(st):
    st.s.stop()
    admin_sql("DROP TABLE IF EXISTS {t}_open, {t}_secret; DROP ROLE IF EXISTS {r}"
              .format(t=T, r=ROLE))


def test_401_variants(st):
    s = st.s
    q = {"sql": "SELECT 1"}
    r = s.post("/query", q)
    check_error(r, 401, "unauthorized", "no header")
    check(r.header("www-authenticate") == "Bearer", r.headers)
    r = s.post("/query", q, headers={"Authorization": "Basic cWc6c2VjcmV0"})
    check_error(r, 401, "unauthorized", "Basic")
    check(r.header("www-authenticate") == "Bearer", r.headers)
    for empty in ("Bearer", "Bearer ", "Bearer  \t"):
        r = s.post("/query", q, headers={"Authorization": empty})
        check_error(r, 401, "unauthorized", "empty bearer %r" % empty)
        check(r.header("www-authenticate").startswith("Bearer"), r.headers)
    for wrong in (READ + "x", READ[:-1], "x" + READ, READ.upper()):
        r = s.post("/query", q, headers=bearer(wrong))
        e = check_error(r, 401, "unauthorized", "wrong key")
        check(r.header("www-authenticate") == 'Bearer error="invalid_token"', r.headers)
        check(READ not in r.raw.decode() and wrong not in e["message"], r)
    # Every protected endpoint, GET ones too.
    for path in ("/pool", "/metrics", "/health"):
        r = s.get(path)
        check_error(r, 401, "unauthorized", path)
        check(r.header("www-authenticate") == "Bearer", r.headers)


def test_403_scope(st):
    s = st.s
    cases = [(READ, "POST", "/update", "write"), (READ, "POST", "/transaction", "write"),
             (WRITE, "GET", "/pool", "admin"), (ADMIN, "POST", "/query", "read"),
             (ADMIN, "POST", "/insert", "write"), (READ, "GET", "/metrics", "admin"),
             (READ, "GET", "/health", "admin")]
    for key, method, path, scope in cases:
        body = {"sql": "SELECT 1"} if path != "/transaction" else {"statements": [{"sql": "SELECT 1"}]}
        r = s.post(path, body, headers=bearer(key)) if method == "POST" else \
            s.get(path, headers=bearer(key))
        e = check_error(r, 403, "forbidden", "%s %s" % (method, path))
        check(scope in e["message"], e)
        check(r.header("www-authenticate") ==
              'Bearer error="insufficient_scope", scope="%s"' % scope, r.headers)


def test_scopes_allow(st):
    s = st.s
    check(check_ok(s.post("/query", {"sql": "SELECT 7 AS x"}, headers=bearer(READ)))["rows"] ==
          [{"x": 7}], "read")
    check(check_ok(s.post("/query", {"sql": "SELECT 7 AS x"}, headers={
        "Authorization": "bearer   %s  " % WRITE}))["row_count"] == 1, "scheme any case")
    check_ok(s.post("/update", {"sql": "UPDATE %s_open SET x = x" % T}, headers=bearer(WRITE)))
    check_ok(s.post("/transaction", {"statements": [{"sql": "SELECT 1"}]}, headers=bearer(WRITE)))
    check(check_ok(s.get("/pool", headers=bearer(ADMIN)))["size"] == 5, "pool")
    check(check_ok(s.get("/health", headers=bearer(ADMIN)))["status"] == "healthy", "health")
    r = s.get("/metrics", headers=bearer(ADMIN))
    check(r.status == 200 and b"querygate_http_requests_total" in r.raw, r)
    check('status="401"' in r.raw.decode() and 'status="403"' in r.raw.decode(),
          "401/403 counted")


def test_health_probes_open_and_brief(st):
    s = st.s
    check(check_ok(s.get("/health/live")) == {"status": "alive"}, "live")
    # Without an admin key: healthy or not, nothing more.
    for hdrs in ({}, bearer(READ), bearer(READ + "x"), {"Authorization": "Basic x"}):
        r = s.get("/health/ready", headers=hdrs)
        check(check_ok(r) == {"status": "healthy"}, (hdrs, r))
        check(s.get("/health/live", headers=hdrs).status == 200, hdrs)
    j = check_ok(s.get("/health/ready", headers=bearer(ADMIN)))
    check(j["status"] == "healthy" and "pool" in j and "latency_ms" in j, j)


def test_unhealthy_ready_says_nothing_more(_st):
    """A database that cannot be reached: the open probe gives no error text (it may name hosts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = "postgresql://qg:x@127.0.0.1:%d/qg" % port
    s = Server(DATABASE_URL=url, AUTH="keys", API_KEYS=ADMIN + " admin", DB_RETRIES=0,
               DB_CONNECT_TIMEOUT=1, HEALTH_CACHE_MS=0)
    try:
        r = s.get("/health/ready")
        check(r.status == 503 and r.json == {"status": "unhealthy"}, r)
        r = s.get("/health/ready", headers=bearer(ADMIN))
        check(r.status == 503 and r.json["status"] == "unhealthy" and r.json.get("error"), r)
    finally:
        s.stop()


def raw_request(port, head, timeout=5):
    """Sends head (bytes) and returns what the server answers before timeout, without a body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(head)
        data = b""
        t0 = time.time()
        try:
            while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        return data, time.time() - t0


def test_401_before_the_body(st):
    """An unauthenticated 1 MiB POST is answered at once: the body is never read, never buffered."""
    for auth in (b"", b"Authorization: Bearer " + READ.encode() + b"x\r\n",
                 b"Authorization: Bearer " + READ.encode() + b"\r\n"):
        path = b"/query" if b"x\r\n" in auth or not auth else b"/update"
        head = (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
                auth + b"Content-Length: 1048576\r\n\r\n")
        data, took = raw_request(st.s.port, head)
        check(data.startswith(b"HTTP/1.1 401") or data.startswith(b"HTTP/1.1 403"), data[:200])
        check(took < 3, "answered after %.1fs" % took)
        check(b"connection: close" in data.lower(), data[:300])


def test_database_role_is_final(st):
    s = st.s
    h = bearer(ROLEKEY)
    check(check_ok(s.post("/query", {"sql": "SELECT x FROM %s_open" % T}, headers=h))["rows"] ==
          [{"x": 1}], "the role reads its table")
    check(check_ok(s.post("/query", {"sql": "SELECT current_user AS u"}, headers=h))["rows"] ==
          [{"u": ROLE}], "logged in as the role")
    e = check_error(s.post("/query", {"sql": "SELECT s FROM %s_secret" % T}, headers=h), 403,
                    "forbidden", "other table")
    check(e.get("sqlstate") == "42501", e)
    # A key without a role uses the service's own login.
    check(check_ok(s.post("/query", {"sql": "SELECT s FROM %s_secret" % T}, headers=bearer(READ)))
          ["row_count"] == 1, "main pool")
    secret = "hidden-%d" % PID
    read = {"sql": "SELECT s FROM %s_secret" % T}
    for escape in ("RESET ROLE", "SET ROLE qg", "SET SESSION AUTHORIZATION qg",
                   "SELECT set_config('role', 'qg', true)", "SET LOCAL ROLE qg",
                   "SELECT set_config('session_authorization', 'qg', true)"):
        for read_only in (False, True):
            r = s.post("/transaction", {"statements": [{"sql": escape}, read],
                                        "read_only": read_only}, headers=h)
            e = check_error(r, 403, "forbidden", escape)
            check(e.get("sqlstate") == "42501", (escape, e))
            check(secret not in r.raw.decode(), (escape, r))
    r = s.post("/query", {"sql": "SELECT set_config('role', 'qg', true), query_to_xml("
                                 "'SELECT * FROM %s_secret', true, false, '')" % T}, headers=h)
    e = check_error(r, 403, "forbidden", "one-statement flip")
    check(e.get("sqlstate") == "42501" and secret not in r.raw.decode(), r)
    # The pool is not poisoned: the next request is still the role, still confined.
    check(check_ok(s.post("/query", {"sql": "SELECT current_user AS u"}, headers=h))["rows"] ==
          [{"u": ROLE}], "after the escapes")


def test_sighup_reload_keeps_requests(st):
    s = st.s
    result = {}

    def slow():
        result["r"] = s.post("/query", {"sql": "SELECT pg_sleep(1) AS z"}, headers=bearer(READ),
                             conn=s.connection())

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    # READ removed, NEW added; the API_KEYS entry stays.
    write(st.keys, key_file_text(NEW + " read", WRITE + " write,read",
                                 ROLEKEY + " read,write " + ROLE))
    n = len(s.lines)
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while not any("reloaded" in ln for ln in s.lines[n:]) and time.time() < deadline:
        time.sleep(0.05)
    check(any("API keys reloaded; 4 keys" in ln for ln in s.lines[n:]), s.lines[n:])
    t.join(10)
    check(result.get("r") is not None and result["r"].status == 200, result)
    check_ok(s.post("/query", {"sql": "SELECT 1"}, headers=bearer(NEW)))
    check_error(s.post("/query", {"sql": "SELECT 1"}, headers=bearer(READ)), 401, "unauthorized",
                "removed key")
    check_ok(s.get("/pool", headers=bearer(ADMIN)))
    # A bad file: the old keys stay, the log says why (file and line, never the key).
    write(st.keys, key_file_text(READ + " read", WRITE + " bogus"))
    n = len(s.lines)
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while not any("not reloaded" in ln for ln in s.lines[n:]) and time.time() < deadline:
        time.sleep(0.05)
    bad = [ln for ln in s.lines[n:] if "not reloaded" in ln]
    check(bad and "line 4" in bad[0] and st.keys in bad[0] and WRITE not in bad[0], s.lines[n:])
    check_ok(s.post("/query", {"sql": "SELECT 1"}, headers=bearer(NEW)))
    check_error(s.post("/query", {"sql": "SELECT 1"}, headers=bearer(READ)), 401, "unauthorized",
                "still removed")
    check(s.alive(), "still running")


def run_binary(env_extra, args=(), timeout=10):
    env = {k: v for k, v in os.environ.items()
           if k not in ("AUTH", "API_KEYS", "API_KEYS_FILE", "HOST")}
    env.update({"DATABASE_URL": database_url(), "PORT": "0"})
    env.update(env_extra)
    return subprocess.run([binary()] + list(args), env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_bad_key_file_is_startup_error(st):
    path = os.path.join(st.dir, "bad-keys")
    secret = "never-shown-key-0123456789"
    write(path, "# comment\n\n%s read\n%s read,wrte\n" % (READ, secret))
    r = run_binary({"API_KEYS_FILE": path})
    check(r.returncode == 2 and path in r.stderr and "line 4" in r.stderr, (r.returncode, r.stderr))
    check(secret not in r.stderr and READ not in r.stderr, r.stderr)
    r = run_binary({"API_KEYS": "%s read;%s" % (READ, secret)})
    check(r.returncode == 2 and "API_KEYS entry 2" in r.stderr and secret not in r.stderr,
          (r.returncode, r.stderr))
    r = run_binary({"API_KEYS_FILE": os.path.join(st.dir, "missing")})
    check(r.returncode == 2 and "cannot open" in r.stderr, (r.returncode, r.stderr))


def test_secure_default(_st):
    for host in ("0.0.0.0", "::"):
        r = run_binary({"HOST": host})
        check(r.returncode == 2, (host, r.returncode, r.stderr))
        for word in ("API_KEYS", "API_KEYS_FILE", "AUTH=none"):
            check(word in r.stderr, (word, r.stderr))
    # AUTH=none anywhere: starts, with a warning.
    s = Server(HOST="0.0.0.0", AUTH="none")
    try:
        check_ok(s.post("/query", {"sql": "SELECT 1"}))
        check_ok(s.get("/pool"))
        check(any("warn" in ln and "WARNING" in ln and "AUTH=none" in ln for ln in s.lines),
              s.lines)
    finally:
        s.stop()


def test_loopback_without_keys_is_open(_st):
    s = Server(AUTH="keys")
    try:
        check_ok(s.post("/query", {"sql": "SELECT 1"}))
        check_ok(s.get("/pool"))
        check(check_ok(s.get("/health/ready"))["status"] == "healthy", "ready")
        check(any("no API keys configured" in ln for ln in s.lines), s.lines)
    finally:
        s.stop()


def test_keys_only_hashed_in_the_process(st):
    """API_KEYS is overwritten in the environment once hashed."""
    path = "/proc/%d/environ" % st.s.proc.pid
    if not os.path.exists(path):
        print("  (skipped: no /proc)")
        return
    with open(path, "rb") as f:
        env = f.read()
    check(re.search(rb"(^|\0)API_KEYS=\**\0", env) and ADMIN.encode() not in env, "API_KEYS")


def test_answers_match_spec(st):
    """401, 403 and the brief probe answers as openapi.yaml describes them."""
    try:
        import yaml  # noqa: F401
    except ImportError:
        print("  (skipped: python3-yaml is not installed)")
        return
    import test_openapi as spec_check
    with open(spec_check.SPEC_PATH) as f:
        spec = yaml.safe_load(f)
    s = st.s
    answers = [
        ("post", "/query", s.post("/query", {"sql": "SELECT 1"})),
        ("post", "/query", s.post("/query", {"sql": "SELECT 1"}, headers=bearer(READ + "x"))),
        ("post", "/query", s.post("/query", {"sql": "SELECT 1"}, headers={"Authorization": "Bearer"})),
        ("post", "/update", s.post("/update", {"sql": "SELECT 1"}, headers=bearer(READ))),
        ("get", "/pool", s.get("/pool")),
        ("get", "/metrics", s.get("/metrics", headers=bearer(WRITE))),
        ("get", "/health", s.get("/health", headers=bearer(READ))),
        ("get", "/health/ready", s.get("/health/ready")),
        ("get", "/health/ready", s.get("/health/ready", headers=bearer(ADMIN))),
    ]
    for method, path, r in answers:
        op = spec["paths"][path][method]
        resp = op["responses"].get(str(r.status))
        check(resp is not None, "%s %s: %d not documented" % (method, path, r.status))
        resp = spec_check.resolve(spec, resp)
        spec_check.validate(spec, resp["content"]["application/json"]["schema"], r.json)
        for name, h in resp.get("headers", {}).items():
            h = spec_check.resolve(spec, h)
            v = r.header(name)
            check(v or not h.get("required"), "%s %s -> %d: no %s" % (method, path, r.status, name))
            if v and "pattern" in h["schema"]:
                check(re.search(h["schema"]["pattern"], v), (name, v))
        if r.status in (401, 403):
            check(op.get("security"), "%s %s has no security requirement" % (method, path))


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

"""A real browser: headless Chromium (driven by playwright-core) calls querygate from an allowed
and from another origin; a browser app with a token from its identity provider (this test) runs a
named query, and raw SQL is refused (ALLOW_RAW_SQL=false)."""
import base64
import functools
import hashlib
import hmac
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, check, database_url, node_major,  # noqa: E402
                       run_tests, skip, source_dir)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
KEY = "browser-test-key-0123456789abcdef"
BROWSER_DIR = os.path.join(source_dir(), "tests", "browser")
JWT_SECRET = "browser-test-jwt-secret-%s" % os.urandom(12).hex()
ROLE, ROLE_PW = "qgt_browser_%d" % os.getpid(), "browser-pw-%d" % os.getpid()


def mint(claims):
    """An HS256 token, as the identity provider would sign it."""
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    si = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    return si + "." + b64(hmac.new(JWT_SECRET.encode(), si.encode(), hashlib.sha256).digest())


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        """POST /token: the identity provider's stand-in signs a token for the page's user."""
        if self.path != "/token":
            self.send_error(404)
            return
        body = json.dumps({"token": mint({"sub": "alice", "role": ROLE, "aud": "browser-app",
                                          "exp": int(time.time()) + 60})}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def static_site():
    """The pages, served from their own origin (127.0.0.1 on a free port); returns (server, origin)."""
    handler = functools.partial(Quiet, directory=os.path.join(BROWSER_DIR, "page"))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, "http://127.0.0.1:%d" % srv.server_address[1]


def setup():
    if not os.access(CHROMIUM, os.X_OK):
        skip("%s is not installed (scripts/deps test installs Debian's chromium)" % CHROMIUM)
    if not shutil.which("node") or not shutil.which("npm"):
        skip("node and npm are not installed")
    if node_major() < 20:
        skip("playwright-core needs Node.js 20 or later; this one is %d (Debian 12 ships 18)"
             % node_major())
    # From the committed lock file; the modules stay in tests/browser/node_modules (ignored).
    p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=BROWSER_DIR, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("npm ci failed:\n" + p.stdout + p.stderr)
    sites = [static_site(), static_site()]
    allowed = sites[0][1]
    s = Server(CORS_ALLOW_ORIGINS=allowed, AUTH="keys", API_KEYS=KEY + " read,write")
    return {"s": s, "sites": sites, "app": token_app(allowed)}


def token_app(origin):
    """querygate for a browser app: tokens only, its role, one named query, no raw SQL."""
    admin_sql("DO $$BEGIN CREATE ROLE {r} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; "
              "END$$; ALTER ROLE {r} PASSWORD '{pw}'".format(r=ROLE, pw=ROLE_PW))
    d = tempfile.mkdtemp(prefix="qgt-browser-")
    u = urllib.parse.urlparse(database_url())
    with open(os.path.join(d, "pgpass"), "w") as f:
        f.write("%s:%s:*:%s:%s\n" % (u.hostname, u.port, ROLE, ROLE_PW))
    os.chmod(os.path.join(d, "pgpass"), 0o600)
    os.mkdir(os.path.join(d, "queries"))
    with open(os.path.join(d, "queries", "whoami.sql"), "w") as f:
        f.write("-- querygate: read\n"
                "SELECT current_user AS role, current_setting('request.jwt.claims', true)::json "
                "->> 'sub' AS sub, :greeting::text AS greeting\n")
    return Server(CORS_ALLOW_ORIGINS=origin, AUTH="keys", JWT_SECRET=JWT_SECRET,
                  JWT_AUDIENCE="browser-app", PGPASSFILE=os.path.join(d, "pgpass"),
                  QUERIES_DIR=os.path.join(d, "queries"), ALLOW_RAW_SQL="false")


def teardown(st):
    for srv, _ in st["sites"]:
        srv.shutdown()
    st["s"].stop()
    st["app"].stop()
    admin_sql("DROP ROLE IF EXISTS %s" % ROLE)


def test_allowed_origin_reads_rows_blocked_origin_gets_typeerror(st):
    s = st["s"]
    api = "http://127.0.0.1:%d" % s.port
    urls = ["%s/index.html?api=%s&key=%s" % (origin, api, KEY) for _, origin in st["sites"]]
    p = subprocess.run(["node", os.path.join(BROWSER_DIR, "cors.mjs")] + urls, cwd=BROWSER_DIR,
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "node failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
    allowed, blocked = json.loads(p.stdout.strip().splitlines()[-1])

    seen = allowed["seen"]
    check(seen["ok"] and seen["status"] == 200, allowed)
    check(seen["rows"] == [{"answer": 42, "said": "from the browser"}], allowed)
    check(seen["requestId"] and len(seen["requestId"]) == 16,
          "X-Request-Id not exposed to the page: %r" % allowed)
    check(seen["servedBy"] == "primary", "X-Querygate-Served-By not exposed: %r" % allowed)

    seen = blocked["seen"]
    check(not seen["ok"] and seen["name"] == "TypeError", blocked)
    check(any("CORS policy" in m for m in blocked["console"]), blocked["console"])

    # What the service saw: both preflights (one refused), and one POST only.
    log = "".join(s.lines)
    check(log.count("OPTIONS /query 204") == 1 and log.count("OPTIONS /query 403") == 1, log)
    check(log.count("POST /query") == 1, log)


def test_token_from_the_identity_provider_runs_a_named_query_not_raw_sql(st):
    """The page fetches a token from its own origin, then calls querygate on another one."""
    app = st["app"]
    url = "%s/token.html?api=http://127.0.0.1:%d&query=whoami" % (st["sites"][0][1], app.port)
    p = subprocess.run(["node", os.path.join(BROWSER_DIR, "cors.mjs"), url], cwd=BROWSER_DIR,
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "node failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
    seen = json.loads(p.stdout.strip().splitlines()[-1])[0]["seen"]
    check(seen["ok"], seen)
    named = seen["named"]
    check(named["status"] == 200 and named["rows"] == [
        {"role": ROLE, "sub": "alice", "greeting": "hello from the browser"}], named)
    raw = seen["raw"]
    check(raw["status"] == 403 and raw["code"] == "raw_sql_disabled", raw)
    check(named["requestId"] and raw["requestId"], "X-Request-Id not exposed: %r" % seen)
    log = "".join(app.lines)
    check("POST /queries/whoami 200" in log and "POST /query 403" in log, log)


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

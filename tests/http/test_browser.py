"""A real browser: headless Chromium (driven by playwright-core) calls querygate from an allowed and from another origin."""
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import Server, check, node_major, run_tests, skip, source_dir  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
KEY = "browser-test-key-0123456789abcdef"
BROWSER_DIR = os.path.join(source_dir(), "tests", "browser")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def static_site():
    """The page, served from its own origin (127.0.0.1 on a free port); returns (server, origin)."""
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
    return {"s": s, "sites": sites}


def teardown(st):
    for srv, _ in st["sites"]:
        srv.shutdown()
    st["s"].stop()


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

    seen = blocked["seen"]
    check(not seen["ok"] and seen["name"] == "TypeError", blocked)
    check(any("CORS policy" in m for m in blocked["console"]), blocked["console"])

    # What the service saw: both preflights (one refused), and one POST only.
    log = "".join(s.lines)
    check(log.count("OPTIONS /query 204") == 1 and log.count("OPTIONS /query 403") == 1, log)
    check(log.count("POST /query") == 1, log)


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

"""Shared helpers for the HTTP tests: start querygate, call it, check answers (stdlib only)."""
import http.client
import json
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

SKIP = 77


def skip(why):
    print("SKIP: " + why)
    sys.exit(SKIP)


def database_url():
    url = os.environ.get("QG_TEST_DATABASE_URL")
    if not url:
        skip("QG_TEST_DATABASE_URL is not set; run the suite with scripts/test")
    return url


def binary():
    path = os.environ.get("QG_BINARY")
    if not path or not os.access(path, os.X_OK):
        skip("QG_BINARY does not name the querygate binary; run the suite with ctest")
    return path


def source_dir():
    return os.environ.get("QG_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


def node_major():
    """The major version of the installed Node.js, or 0 without one."""
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10)
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def admin_sql(sql):
    """Runs sql as the superuser with psql; returns stdout (unaligned, tuples only)."""
    url = os.environ.get("QG_TEST_ADMIN_URL")
    if not url:
        skip("QG_TEST_ADMIN_URL is not set; run the suite with scripts/test")
    return psql(url, sql)


def psql(url, sql):
    """Runs sql with psql on url; returns stdout (unaligned, tuples only)."""
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError("psql failed: " + out.stderr)
    return out.stdout.strip()


def cluster(action):
    """Stops or starts the test cluster (only in tests named *_fault* / *_restart*)."""
    tool, pgdir = os.environ.get("QG_TEST_PGCLUSTER"), os.environ.get("QG_TEST_PG_DIR")
    if not tool or not pgdir:
        skip("QG_TEST_PGCLUSTER/QG_TEST_PG_DIR are not set; run the suite with scripts/test")
    out = subprocess.run([tool, action, pgdir], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError("pgcluster %s failed: %s" % (action, out.stderr))


def proc_stats(pid):
    """Threads, open file descriptors and resident memory (kB) of a process, from /proc."""
    rss = threads = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return {"threads": threads, "fds": len(os.listdir("/proc/%d/fd" % pid)), "rss_kb": rss}


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.raw = body
        self.json = None
        ctype = headers.get("content-type", "")
        if body and ctype.startswith("application/json"):
            self.json = json.loads(body.decode("utf-8"))

    def header(self, name):
        return self.headers.get(name.lower())

    @property
    def code(self):
        """The error code of an error body, else None."""
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            return self.json["error"].get("code")
        return None

    def __repr__(self):
        return "<%d %s>" % (self.status, self.raw[:300])


class Server:
    """One querygate process on a free port, with a reused keep-alive connection."""

    def __init__(self, ssl_context=None, **env):
        """env: the service's variables; ssl_context: talk HTTPS with it (TLS_* set in env)."""
        self.ssl_context = ssl_context
        self.scheme = None
        self.env = dict(os.environ)
        self.env.update({"DATABASE_URL": database_url(), "PORT": "0", "HOST": "127.0.0.1",
                         "AUTH": "none"})
        self.env.update({k: str(v) for k, v in env.items()})
        self.lines = []
        self.raw_lines = []  # as written, undecoded: to check that they are UTF-8
        self.proc = subprocess.Popen([binary()], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.port = None
        self._found = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._found.wait(15) or self.port is None:
            self.proc.kill()
            raise RuntimeError("no 'listening on' line; log:\n" + "".join(self.lines))
        self.conn = None
        deadline = time.time() + 10
        while True:
            try:
                if self.get("/health/live").status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("/health/live never answered")
            time.sleep(0.05)

    def _read_log(self):
        for raw in self.proc.stderr:
            self.raw_lines.append(raw)
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            m = re.search(r"listening on (https?)://(\[[^\]]+\]|[^:\s]+):(\d+)", line)
            if m and self.port is None:
                self.scheme = m.group(1)
                self.port = int(m.group(3))
                self._found.set()
        self._found.set()

    def connection(self):
        if self.ssl_context:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                               context=self.ssl_context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method, path, body=None, headers=None, conn=None):
        """Sends one request (body: dict/list -> JSON, str/bytes as is) on a kept-alive connection."""
        hdrs = {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        own = conn is None
        for attempt in range(2):
            c = conn or self.conn or self.connection()
            try:
                c.request(method, path, body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
                if own:
                    self.conn = None if r.will_close else c
                return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                c.close()
                if own:
                    self.conn = None
                if attempt or not own:
                    raise
        raise AssertionError("unreachable")

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, headers=None, **kw):
        """POST with Content-Type: application/json unless headers name another."""
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        return self.request("POST", path, body=body, headers=hdrs, **kw)

    def stop(self, expect_rc=0):
        if self.conn:
            self.conn.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        if expect_rc is not None and rc != expect_rc:
            raise AssertionError("querygate exited %d, want %d; log:\n%s" %
                                 (rc, expect_rc, self.log_excerpt()))
        return rc

    def log_excerpt(self):
        """A sanitizer report from its first line, else the log's last lines."""
        for i, line in enumerate(self.lines):
            if "ERROR: AddressSanitizer" in line or "runtime error:" in line or \
                    "ERROR: LeakSanitizer" in line:
                return "".join(self.lines[max(0, i - 3):i + 40])
        return "".join(self.lines[-30:])

    def alive(self):
        return self.proc.poll() is None


class PgPair:
    """A primary and its streaming standby of the test's own (scripts/pgcluster pair):
    nodes "a" (the primary at first) and "b", in a new temporary directory. For failover
    and replica tests; only in tests that run alone (named *_restart* / *_fault*)."""

    def __init__(self):
        self.tool = os.environ.get("QG_TEST_PGCLUSTER")
        if not self.tool:
            skip("QG_TEST_PGCLUSTER is not set; run the suite with scripts/test")
        self.top = tempfile.mkdtemp(prefix="qg-pair.")
        os.chmod(self.top, 0o755)  # the server runs as another user when we are root
        out = self._tool("pair", self.top, env={"QG_PG_FSYNC": "off"})
        self.vars = dict(w.split("=", 1) for line in out.splitlines()
                         for w in shlex.split(line)[1:])
        self.port = {"a": int(self.vars["QG_PAIR_A_PORT"]), "b": int(self.vars["QG_PAIR_B_PORT"])}
        with open(os.path.join(self.top, "a", "password")) as f:
            self.password = f.read().strip()
        self.url = self.vars["QG_PAIR_URL"]  # both nodes, target_session_attrs=read-write

    def _tool(self, *args, env=None):
        out = subprocess.run([self.tool] + list(args), capture_output=True, text=True,
                             timeout=120, env=dict(os.environ, **(env or {})))
        if out.returncode != 0:
            raise RuntimeError("pgcluster %s failed: %s" % (" ".join(args), out.stderr))
        return out.stdout

    def url_for(self, *nodes, attrs=None):
        """A URL naming nodes in that order, with target_session_attrs=attrs if given."""
        hosts = ",".join("127.0.0.1:%d" % self.port[n] for n in nodes)
        return "postgresql://qg:%s@%s/qg%s" % (
            self.password, hosts, "?target_session_attrs=" + attrs if attrs else "")

    def stop(self, node, mode="fast"):
        self._tool("stop", os.path.join(self.top, node), mode)

    def start(self, node):
        self._tool("start", os.path.join(self.top, node))

    def promote(self, node):
        self._tool("promote", os.path.join(self.top, node))

    def make_standby(self, node, of):
        """node's data is replaced by a base backup of the running node `of`; it then
        streams from it (a demoted old primary comes back this way). A new node (a third
        server, "c") gets a port of its own."""
        out = self._tool("standby", os.path.join(self.top, node), os.path.join(self.top, of))
        m = re.search(r"QG_STANDBY_PORT=(\d+)", out)
        if m:
            self.port[node] = int(m.group(1))

    def sql(self, node, sql):
        """Runs sql as the superuser on node; returns stdout (unaligned, tuples only)."""
        return psql("host=%s/%s/run port=%d user=postgres dbname=qg" %
                    (self.top, node, self.port[node]), sql)

    def close(self):
        for node in list(self.port):
            try:
                self.stop(node, "immediate")
            except RuntimeError:
                pass
        subprocess.run(["rm", "-rf", self.top], check=False)


class DbProxy:
    """A TCP proxy to the test database (or to target_url's host): cut() ends every
    connection at once, and with plain=True (no TLS on either leg, so it can read the
    server's messages) cut_after_commit() ends the next connection whose server says
    COMMIT, right after that message. Setting target (host, port) sends the connections
    made from then on elsewhere (a virtual IP or DNS name moving after a failover)."""

    def __init__(self, plain=False, target_url=None):
        u = urllib.parse.urlsplit(target_url or database_url())
        self.target = (u.hostname, u.port or 5432)
        self.listener = socket.create_server(("127.0.0.1", 0))
        netloc = "%s@127.0.0.1:%d" % (u.netloc.rsplit("@", 1)[0], self.listener.getsockname()[1])
        query = "sslmode=disable&gssencmode=disable" if plain else u.query
        self.url = urllib.parse.urlunsplit(u._replace(netloc=netloc, query=query))
        self.plain = plain
        self.armed = threading.Event()
        self.cuts = 0
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            self.socks += [a, b]
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
            to_client = self._messages if self.plain else self._pump
            threading.Thread(target=to_client, args=(b, a), daemon=True).start()

    @staticmethod
    def _close(*socks):
        for k in socks:
            try:
                k.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        self._close(src, dst)

    def _messages(self, server, client):
        """Server to client, a whole protocol message at a time (type byte, int32 length)."""
        buf = b""
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                buf += data
                out = b""
                while len(buf) >= 5:
                    end = 1 + struct.unpack("!I", buf[1:5])[0]
                    if len(buf) < end:
                        break
                    msg, buf = buf[:end], buf[end:]
                    out += msg
                    if self.armed.is_set() and msg[:1] == b"C" and msg[5:].startswith(b"COMMIT\0"):
                        self.armed.clear()
                        self.cuts += 1
                        client.sendall(out)
                        raise OSError("cut after COMMIT")
                if out:
                    client.sendall(out)
        except OSError:
            pass
        self._close(server, client)

    def cut(self):
        """Every connection ends at once, without a word from the server."""
        self._close(*self.socks)

    def cut_after_commit(self):
        self.armed.set()

    def close(self):
        self.listener.close()
        self.cut()


def post_once(conn, path, body):
    """One POST, never repeated (an insert sent twice would hide the bug we look for)."""
    conn.request("POST", path, body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(data or b"null")


def classify_write(status, headers, body):
    """'ok', 'unknown' (outcome unknown), 'failed' (a contract failure) or a description of a bug."""
    if status == 200:
        return "ok"
    err = (body or {}).get("error", {}) if isinstance(body, dict) else {}
    if status != 503 or not headers.get("retry-after"):
        return "bad %d %r" % (status, body)
    if err.get("code") == "db_unavailable":
        return "unknown" if err.get("outcome") == "unknown" else "failed"
    if err.get("code") == "pool_timeout" and "outcome" not in err:
        return "failed"
    return "bad %d %r" % (status, body)


class WriteLoad:
    """Clients that insert unique keys into table through /insert, each POST sent once,
    while faults happen; every answer is kept (its classify_write and when it came) and
    compared to the table afterwards: none lost, none applied twice, no phantoms."""

    def __init__(self, server, table, clients=16):
        self.server, self.table = server, table
        self.outcomes = {}  # key -> (classification, time answered)
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]
        for t in self.threads:
            t.start()

    def _client(self, n):
        # Without RETURNING the insert takes COMMIT along (one round trip); with it,
        # COMMIT follows once the rows are read: both paths meet the faults.
        sql = "INSERT INTO %s (k) VALUES (:k)%s" % (self.table, " RETURNING k" if n % 2 else "")
        conn = self.server.connection()
        i = 0
        while not self.halt.is_set():
            key = "%d-%d" % (n, i)
            i += 1
            try:
                got = classify_write(*post_once(conn, "/insert", {"sql": sql, "params": {"k": key}}))
            except (OSError, http.client.HTTPException) as e:
                got = "bad transport %r" % e
                conn.close()
                conn = self.server.connection()
            with self.lock:
                self.outcomes[key] = (got, time.time())
        conn.close()

    def oks_after(self, t):
        """Times of the 200 answers that came after t, in order."""
        with self.lock:
            return sorted(at for v, at in self.outcomes.values() if v == "ok" and at > t)

    def stop(self):
        self.halt.set()
        for t in self.threads:
            t.join(30)

    def check_table(self, rows):
        """rows: `SELECT k, count(*) FROM table GROUP BY k` as psql -At prints it.
        Returns the count of each classification ("bad" for all bugs)."""
        in_table = dict((k, int(c)) for k, c in (ln.split("|") for ln in rows.splitlines()))
        counts = {}
        for v, _ in self.outcomes.values():
            counts[v if not v.startswith("bad") else "bad"] = counts.get(v, 0) + 1
        bad = [(k, v) for k, (v, _) in self.outcomes.items() if v.startswith("bad")]
        check(not bad, "answers outside the contract: %r" % bad[:5])
        twice = [k for k, c in in_table.items() if c > 1]
        check(not twice, "applied more than once: %r" % twice[:5])
        lost = [k for k, (v, _) in self.outcomes.items() if v == "ok" and k not in in_table]
        check(not lost, "answered 200 but not in the table: %r" % lost[:5])
        phantom = [k for k in in_table if self.outcomes.get(k, ("?",))[0] not in ("ok", "unknown")]
        check(not phantom, "in the table though answered as failed: %r" %
              [(k, self.outcomes.get(k)) for k in phantom[:5]])
        return counts


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def check_error(r, status, code, what=""):
    """Asserts an error answer: status, code, a message, and X-Request-Id."""
    check(r.status == status and r.code == code,
          "%s: want %d %s, got %r" % (what, status, code, r))
    check(isinstance(r.json["error"].get("message"), str) and r.json["error"]["message"],
          "%s: error without message: %r" % (what, r))
    check(r.header("x-request-id"), "%s: no X-Request-Id" % what)
    if status == 503:
        check(r.header("retry-after"), "%s: 503 without Retry-After" % what)
    return r.json["error"]


def check_ok(r, what=""):
    check(r.status == 200, "%s: want 200, got %r" % (what, r))
    return r.json


def run_tests(namespace, setup=None, teardown=None):
    """Runs every test_* function of namespace in order; exits 0, 1 (failures) or 77."""
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    failures = 0
    state = setup() if setup else None
    try:
        for name, fn in tests:
            t0 = time.time()
            try:
                fn(state) if setup else fn()
                print("ok   %-45s %.2fs" % (name, time.time() - t0), flush=True)
            except Exception:
                failures += 1
                print("FAIL %s" % name, flush=True)
                traceback.print_exc()
    finally:
        if teardown:
            try:
                teardown(state)
            except Exception:
                failures += 1
                print("FAIL teardown", flush=True)
                traceback.print_exc()
    print("%d of %d failed" % (failures, len(tests)) if failures else "all %d passed" % len(tests))
    sys.exit(1 if failures else 0)

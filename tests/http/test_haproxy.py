"""HAProxy with docker/haproxy.cfg (the file docker/compose.replicas.yaml mounts) in front of
two querygate processes, under a read and write load: a SIGTERM'd instance drains without
costing a request; a SIGKILL'd one costs at most its requests in flight, none sent twice.

Skips without haproxy (Debian package `haproxy`). For trying it against a changed
configuration or delay by hand: QG_HAPROXY_CFG=path, QG_HAPROXY_SHUTDOWN_DELAY=seconds.
"""
import csv
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, binary, check, database_url, free_port,  # noqa: E402
                       run_tests, skip, source_dir)

T = "t_haproxy_%d" % os.getpid()
# The checks take a draining instance out in about 1.25 s (docker/haproxy.cfg); 3 s leaves
# room for a slow check on a busy machine.
DELAY = int(os.environ.get("QG_HAPROXY_SHUTDOWN_DELAY", "3"))
CFG = os.environ.get("QG_HAPROXY_CFG") or os.path.join(source_dir(), "docker", "haproxy.cfg")


class Balancer:
    """`haproxy -db -f CFG` on a free port, its servers qg1 and qg2 the given instances."""

    def __init__(self, instances):
        self.dir = tempfile.mkdtemp(prefix="qg-haproxy.")
        self.sock = os.path.join(self.dir, "admin.sock")
        self.port = free_port()
        env = dict(os.environ, HAPROXY_PORT=str(self.port), HAPROXY_STATS_SOCKET=self.sock)
        for i, s in enumerate(instances):
            env["QG%d_ADDR" % (i + 1)] = "127.0.0.1:%d" % s.port
        # Append mode: haproxy writes through the same open file, which log_tail() seeks.
        self.log = open(os.path.join(self.dir, "haproxy.log"), "a+")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", CFG], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            self.wait_status({"qg1": "UP", "qg2": "UP"}, 10)
        except BaseException:
            self.stop()
            raise

    def status(self):
        """{"qg1": "UP"|"DOWN"|..., ...} from the admin socket's `show stat`."""
        k = socket.socket(socket.AF_UNIX)
        try:
            k.settimeout(5)
            k.connect(self.sock)
            k.sendall(b"show stat\n")
            data = b""
            while True:
                part = k.recv(65536)
                if not part:
                    break
                data += part
        finally:
            k.close()
        rows = csv.DictReader(data.decode().lstrip("# ").splitlines())
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "be_querygate"
                and r["svname"] not in ("BACKEND", "FRONTEND")}

    def wait_status(self, want, timeout):
        """Waits until every server named in want has its status; returns the time it did."""
        deadline = time.time() + timeout
        got = None
        while time.time() < deadline:
            check(self.proc.poll() is None, "haproxy exited:\n" + self.log_tail())
            try:
                got = self.status()
                if all(got.get(n) == s for n, s in want.items()):
                    return time.time()
            except OSError:
                pass  # the socket is not there yet
            time.sleep(0.05)
        raise AssertionError("haproxy: want %r, have %r after %ds\n%s" %
                             (want, got, timeout, self.log_tail()))

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def log_tail(self):
        self.log.flush()
        self.log.seek(0)
        return "".join(self.log.readlines()[-30:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Load:
    """Clients sending /query and /insert through the balancer, each request once (a write
    sent twice is exactly what must not happen), each with its own X-Request-Id so that the
    instances' access logs tell who served it. Every outcome is kept:
    rid -> (kind, key, sent at, answered at, "ok" or what went wrong)."""

    def __init__(self, lb, clients=6):
        self.lb = lb
        self.done = {}
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]
        for t in self.threads:
            t.start()

    def _client(self, n):
        conn = self.lb.connection()
        i = 0
        while not self.halt.is_set():
            rid = "hx-%d-%d-%d" % (os.getpid(), n, i)
            if i % 3 == 2:
                kind, path = "insert", "/insert"
                body = {"sql": "INSERT INTO %s (k) VALUES (:k) RETURNING k" % T,
                        "params": {"k": rid}}
            else:
                kind, path = "query", "/query"
                body = {"sql": "SELECT :n::int AS n", "params": {"n": i}}
            i += 1
            t0 = time.time()
            try:
                conn.request("POST", path, body=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json", "X-Request-Id": rid})
                r = conn.getresponse()
                data = r.read()
                if r.status != 200:
                    got = "%d %s" % (r.status, data[:200])
                elif kind == "query":
                    got = "ok" if json.loads(data)["rows"] == [{"n": i - 1}] else "wrong %s" % data
                else:
                    got = "ok" if json.loads(data)["rows"] == [{"k": rid}] else "wrong %s" % data
                if r.will_close:
                    conn.close()
                    conn = self.lb.connection()
            except (OSError, http.client.HTTPException) as e:
                got = "transport %r" % e
                conn.close()
                conn = self.lb.connection()
            with self.lock:
                self.done[rid] = (kind, body["params"].get("k"), t0, time.time(), got)
        conn.close()

    def stop(self):
        self.halt.set()
        for t in self.threads:
            t.join(60)
        return dict(self.done)


def served(instances):
    """rid -> indexes of the instances whose access log has it (load requests only)."""
    by = {}
    for i, s in enumerate(instances):
        for line in list(s.lines):
            if '"hx-' not in line:
                continue
            try:
                rid = json.loads(line).get("request_id", "")
            except ValueError:
                continue
            if rid.startswith("hx-"):
                by.setdefault(rid, []).append(i)
    return by


def wait_logged(instances, rids, timeout=10):
    """Waits until every rid is in some instance's log (a line may trail its answer)."""
    deadline = time.time() + timeout
    while True:
        by = served(instances)
        missing = [r for r in rids if r not in by]
        if not missing or time.time() > deadline:
            return by
        time.sleep(0.05)


def wait_both_served(instances, n=20, timeout=15):
    """Waits until the load reached each instance n times: both are in the rotation."""
    deadline = time.time() + timeout
    while True:
        counts = [0, 0]
        for idx in served(instances).values():
            for i in idx:
                counts[i] += 1
        if min(counts) >= n:
            return
        check(time.time() < deadline, "the load did not reach both instances: %r" % counts)
        time.sleep(0.1)


def check_writes(done, may_fail):
    """No write twice in the table, none answered 200 and missing; a write in the table
    that was not answered 200 must be one that failed in flight (outcome unknown)."""
    rows = admin_sql("SELECT k, count(*) FROM %s GROUP BY k" % T)
    in_table = dict((k, int(c)) for k, c in (ln.split("|") for ln in rows.splitlines() if ln))
    twice = [k for k, c in in_table.items() if c > 1]
    check(not twice, "written more than once: %r" % twice[:5])
    writes = {rid: v for rid, v in done.items() if v[0] == "insert"}
    lost = [rid for rid, v in writes.items() if v[4] == "ok" and v[1] not in in_table]
    check(not lost, "answered 200 but not in the table: %r" % lost[:5])
    stray = [k for k in in_table if k not in writes or (writes[k][4] != "ok" and k not in may_fail)]
    check(not stray, "in the table though not answered 200: %r" % stray[:5])
    return len(writes)


def stop_clean(s):
    """SIGINT (no SHUTDOWN_DELAY): exit 0, and under the sanitizers no report."""
    s.proc.send_signal(signal.SIGINT)
    rc = s.proc.wait(40)
    check(rc == 0, "querygate exited %d:\n%s" % (rc, s.log_excerpt()))


def start_pair(**env):
    admin_sql("TRUNCATE %s" % T)
    qs = []
    try:
        for _ in range(2):
            qs.append(Server(LOG_FORMAT="json", **env))
    except BaseException:
        for s in qs:
            s.proc.kill()
        raise
    return qs


def setup():
    database_url()
    if not shutil.which("haproxy"):
        skip("haproxy is not installed (Debian package haproxy; scripts/deps test)")
    admin_sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (k text NOT NULL); "
              "GRANT ALL ON {t} TO qg".format(t=T))


def teardown(_):
    admin_sql("DROP TABLE IF EXISTS %s" % T)


def test_config_checks(_):
    """haproxy -c accepts the file with the variables set, and refuses it without them."""
    env = dict(os.environ, QG1_ADDR="127.0.0.1:8081", QG2_ADDR="127.0.0.1:8082",
               HAPROXY_STATS_SOCKET=os.path.join(tempfile.gettempdir(), "qg-hx-check.sock"))
    r = subprocess.run(["haproxy", "-c", "-f", CFG], env=env, capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 0 and "[WARNING]" not in r.stdout + r.stderr, (r.stdout, r.stderr))
    env.pop("QG1_ADDR")
    r = subprocess.run(["haproxy", "-c", "-f", CFG], env=env, capture_output=True, text=True,
                       timeout=30)
    check(r.returncode != 0, "haproxy -c accepted the file without QG1_ADDR")


def test_compose_files(_):
    """docker/compose.yaml and compose.replicas.yaml: every variable given to querygate is
    one it knows (--help lists it); the replicas file's haproxy mounts this test's
    haproxy.cfg, gives it every variable it needs, names real querygate services, and
    `haproxy -c` accepts the file with that environment; the instances' SHUTDOWN_DELAY
    outlasts the checks' worst case."""
    import yaml  # python3-yaml, in scripts/deps' test list
    docker = os.path.join(source_dir(), "docker")
    help_text = subprocess.run([binary(), "--help"], capture_output=True, text=True,
                               timeout=10).stdout
    known = set(re.findall(r"^  ([A-Z][A-Z0-9_]+) ", help_text, re.M))
    check(len(known) > 30, "--help lists no variables? %r" % help_text[:300])
    qg_services = {}
    for name in ("compose.yaml", "compose.replicas.yaml"):
        with open(os.path.join(docker, name)) as f:
            doc = yaml.safe_load(f)
        for svc, spec in doc["services"].items():
            if (spec.get("build") or {}).get("dockerfile") != "docker/Dockerfile":
                continue
            qg_services[(name, svc)] = spec
            unknown = set(spec.get("environment", {})) - known
            check(not unknown, "%s: %s sets variables querygate does not know: %r"
                  % (name, svc, sorted(unknown)))
    replicas = yaml.safe_load(open(os.path.join(docker, "compose.replicas.yaml")))["services"]
    instances = sorted(svc for (name, svc) in qg_services if name == "compose.replicas.yaml")
    check(instances == ["querygate1", "querygate2"], instances)

    hx = replicas["haproxy"]
    check(hx["image"].startswith("haproxy:2.6"), hx["image"])
    mounts = {}
    for v in hx["volumes"]:
        src, dst = v.split(":")[:2]
        mounts[dst] = os.path.realpath(os.path.join(docker, src))
    check(mounts.get("/usr/local/etc/haproxy/haproxy.cfg") ==
          os.path.realpath(os.path.join(docker, "haproxy.cfg")), mounts)
    check(os.path.realpath(CFG) == os.path.realpath(os.path.join(docker, "haproxy.cfg")),
          "this run uses %s, not the file compose mounts" % CFG)
    env = {k: str(v) for k, v in hx["environment"].items()}
    with open(CFG) as f:
        cfg = f.read()
    # Variables the file uses without a default must all be given.
    needed = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", cfg))
    check(needed == {"QG1_ADDR", "QG2_ADDR"} and needed <= set(env), (needed, env))
    for var in sorted(needed):
        host, port = env[var].rsplit(":", 1)
        check(host in instances and port == "8080", "%s=%s" % (var, env[var]))
    ports = [str(p) for p in hx["ports"]]
    check(ports and all(p.endswith(":" + env["HAPROXY_PORT"]) for p in ports), (ports, env))
    r = subprocess.run(["haproxy", "-c", "-f", CFG], env=dict(os.environ, **env),
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "haproxy -c with the compose environment: %s%s"
          % (r.stdout, r.stderr))

    # Writes to the primary; reads to the replica; a drain that outlasts the checks.
    m = re.search(r"^\s*default-server\b(.*)$", cfg, re.M)
    opts = m.group(1).split()
    arg = dict(zip(opts, opts[1:]))
    ms = lambda v: float(v[:-2]) / 1000 if v.endswith("ms") else float(v.rstrip("s"))  # noqa: E731
    inter, fall = ms(arg["inter"]), int(arg["fall"])
    worst = inter + (fall - 1) * ms(arg.get("fastinter", arg["inter"])) + \
        ms(re.search(r"timeout check (\S+)", cfg).group(1))
    for svc in instances:
        e = replicas[svc]["environment"]
        check("@primary:" in e["DATABASE_URL"] and
              "target_session_attrs=read-write" in e["DATABASE_URL"], e["DATABASE_URL"])
        check("@replica:" in e["DATABASE_READ_URLS"], e["DATABASE_READ_URLS"])
        delay = int(e["SHUTDOWN_DELAY"])
        check(delay > worst, "%s: SHUTDOWN_DELAY %d s, but HAProxy may take %.2f s to see the "
              "drain" % (svc, delay, worst))
        grace = int(str(replicas[svc]["stop_grace_period"]).rstrip("s"))
        check(grace > delay + int(e.get("SHUTDOWN_TIMEOUT", 30)), "%s: stop_grace_period" % svc)


def stop_all(load, lb, qs):
    """Whatever a case started and did not stop itself: the load, HAProxy, the instances."""
    if load:
        load.stop()
    if lb:
        lb.stop()
    for s in qs:
        if s.alive():
            s.proc.kill()
            s.proc.wait(10)


def test_sigterm_drains_without_a_failed_request(_):
    """SIGTERM to one instance under load: its /health/ready turns 503, HAProxy takes it
    out within SHUTDOWN_DELAY, it finishes what it has and exits 0; no request fails."""
    qs = start_pair(SHUTDOWN_DELAY=DELAY)
    lb = load = None
    try:
        lb = Balancer(qs)
        load = Load(lb)
        wait_both_served(qs)
        t_term = time.time()
        qs[0].proc.send_signal(signal.SIGTERM)
        t_down = t_exit = None
        while t_down is None or t_exit is None:
            check(time.time() < t_term + DELAY + 40, "qg1 DOWN after %s s, exited after %s s"
                  % (t_down and t_down - t_term, t_exit and t_exit - t_term))
            if t_exit is None and qs[0].proc.poll() is not None:
                t_exit = time.time()
            if t_down is None and lb.status().get("qg1") == "DOWN":
                t_down = time.time()
            time.sleep(0.02)
        rc = qs[0].proc.returncode
        time.sleep(1.5)  # the load goes on with one instance
        done = load.stop()
        load = None
        check(rc == 0, "the stopped instance exited %d:\n%s" % (rc, qs[0].log_excerpt()))
        failed = {rid: v for rid, v in done.items() if v[4] != "ok"}
        check(not failed, "%d of %d requests failed (SIGTERM at %.2f, DOWN at +%.2fs, exit at "
              "+%.2fs): %r" % (len(failed), len(done), t_term, t_down - t_term,
                               t_exit - t_term, sorted(failed.items(), key=lambda x: x[1][2])[:5]))
        by = wait_logged(qs, list(done))
        twice = [rid for rid, idx in by.items() if len(idx) > 1]
        check(not twice, "served twice: %r" % twice[:5])
        unlogged = [rid for rid in done if rid not in by]
        check(not unlogged, "answered 200 but in no instance's log: %r" % unlogged[:5])
        after = [rid for rid, v in done.items() if v[2] > t_exit]
        check(after, "no request after the exit: the check says nothing")
        stray = [rid for rid in after if by[rid] != [1]]
        check(not stray, "sent after the exit, not served by the other instance: %r" % stray[:5])
        writes = check_writes(done, may_fail=set())
        print("  SIGTERM: %d requests (%d writes), 0 failed; qg1 DOWN %.2fs after SIGTERM "
              "(SHUTDOWN_DELAY %ds), exited after %.2fs; %d requests after its exit"
              % (len(done), writes, t_down - t_term, DELAY, t_exit - t_term, len(after)))
        stop_clean(qs[1])
        # No instance left: HAProxy answers itself, in querygate's error shape, and the
        # request reached no instance (no "outcome"): safe to send again.
        lb.wait_status({"qg1": "DOWN", "qg2": "DOWN"}, 10)
        c = lb.connection()
        c.request("POST", "/insert", body=b'{"sql": "SELECT 1"}',
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        body = json.loads(r.read())
        c.close()
        check(r.status == 503 and r.getheader("Retry-After") and
              body["error"]["code"] == "db_unavailable" and "outcome" not in body["error"],
              (r.status, r.getheaders(), body))
    finally:
        stop_all(load, lb, qs)


def test_sigkill_costs_at_most_the_requests_in_flight(_):
    """SIGKILL (no drain): HAProxy cannot know before its checks fail. What the contract
    guarantees, and all that is asserted: requests in flight on the killed instance may fail
    (502 from HAProxy, or the connection ends), never replayed elsewhere, so no write is
    applied twice; new connections to the dead port are refused and redispatched (nothing
    was sent); the health check takes it out, and from then on nothing fails."""
    qs = start_pair(SHUTDOWN_DELAY=DELAY)
    lb = load = None
    try:
        lb = Balancer(qs)
        load = Load(lb)
        wait_both_served(qs)
        t_kill = time.time()
        qs[1].proc.kill()
        qs[1].proc.wait(10)
        t_down = lb.wait_status({"qg2": "DOWN"}, 10)
        time.sleep(1.5)
        done = load.stop()
        load = None
        failed = {rid: v for rid, v in done.items() if v[4] != "ok"}
        late = [rid for rid, v in failed.items() if v[2] > t_down]
        check(not late, "failed though sent after qg2 was DOWN: %r" % late[:5])
        early = [rid for rid, v in failed.items() if v[3] < t_kill]
        check(not early, "failed before the kill: %r" % early[:5])
        odd = [v[4] for v in failed.values() if v[4][:4] not in ("502 ", "503 ", "504 ")
               and not v[4].startswith("transport")]
        check(not odd, "failures other than HAProxy's or a cut connection: %r" % odd[:5])
        # A request answered by qg1 after failing on qg2 would mean a replay. qg1's log is
        # read once it has the requests sent after qg2 was out (their lines come later).
        by = wait_logged(qs, [rid for rid, v in done.items() if v[4] == "ok" and v[2] > t_down])
        replayed = [rid for rid in failed if 0 in by.get(rid, [])]
        check(not replayed, "failed, yet served by the surviving instance: %r" % replayed[:5])
        writes = check_writes(done, may_fail={v[1] for v in failed.values() if v[0] == "insert"})
        print("  SIGKILL: %d requests (%d writes), %d failed in flight (%s); qg2 DOWN %.2fs "
              "after the kill" % (len(done), writes, len(failed),
                                  ", ".join(sorted({v[4][:40] for v in failed.values()})) or "-",
                                  t_down - t_kill))
        stop_clean(qs[0])
    finally:
        stop_all(load, lb, qs)


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)

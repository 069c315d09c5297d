#!/usr/bin/env python3
"""Soak: many mixed requests against one querygate; its resources must not grow.

Not part of the default suite (ctest does not look in tests/soak). Starts its own
querygate ($QG_BINARY) against $QG_TEST_DATABASE_URL, sends --requests mixed requests
(query, insert, update, batch insert, transaction, health, pool) from --threads keep-alive clients,
and samples every second the service's resident memory, open file descriptors and
threads (/proc) and its database connections (pg_stat_activity, through
$QG_TEST_ADMIN_URL, by an application_name of its own). Prints one row per second,
then the figures after warm-up; exits 1 if a figure grew past its tolerance or a
request failed.

    eval "$(scripts/pgcluster start /tmp/soak-pg)"
    QG_TEST_DATABASE_URL=$QG_PG_URL QG_TEST_ADMIN_URL=$QG_PG_ADMIN_URL \\
      QG_BINARY=build/rel/querygate python3 tests/soak/soak.py
"""
import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "http"))
from qgharness import Server, admin_sql, database_url, proc_stats  # noqa: E402

T = "soak_%d" % os.getpid()
APP = "qg_soak_%d" % os.getpid()
KEYS = 1000


def request_for(rng):
    """One request of the mix: (method, path, body)."""
    k = rng.randrange(KEYS)
    x = rng.random()
    if x < 0.40:
        return "POST", "/query", {"sql": "SELECT k, v, note FROM %s WHERE k = :k" % T,
                                  "params": {"k": k}}
    if x < 0.60:
        return "POST", "/insert", {"sql": "INSERT INTO %s_log (k, note) VALUES (:k, :n) "
                                          "RETURNING id" % T,
                                   "params": {"k": k, "n": "soak %d" % rng.randrange(10**9)}}
    if x < 0.70:
        return "POST", "/update", {"sql": "UPDATE %s SET v = v + 1 WHERE k = :k" % T,
                                   "params": {"k": k}}
    if x < 0.75:
        return "POST", "/insert", {"sql": "INSERT INTO %s_log (k, note) VALUES (:k, :n)" % T,
                                   "params": [{"k": (k + i) % KEYS, "n": "batch"}
                                              for i in range(rng.randrange(1, 20))]}
    if x < 0.90:
        return "POST", "/transaction", {"statements": [
            {"sql": "UPDATE %s SET v = v + 1, note = :n WHERE k = :k" % T,
             "params": {"k": k, "n": "tx"}},
            {"sql": "SELECT v FROM %s WHERE k = :k" % T, "params": {"k": k}},
            {"sql": "INSERT INTO %s_log (k, note) VALUES (:k, 'tx') RETURNING id" % T,
             "params": {"k": k}}]}
    return "GET", rng.choice(["/health/ready", "/health/live", "/health", "/pool"]), None


class Counter:
    def __init__(self, total):
        self.lock = threading.Lock()
        self.left = total
        self.done = 0
        self.statuses = {}
        self.errors = []

    def take(self):
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def record(self, status, what):
        with self.lock:
            self.done += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status != 200 and len(self.errors) < 10:
                self.errors.append(what)


def client(port, seed, counter):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while counter.take():
        method, path, body = request_for(rng)
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data else {}
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            text = r.read()
            counter.record(r.status, (path, r.status, text[:200]))
            if r.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        except (OSError, http.client.HTTPException) as e:
            counter.record("transport", (path, repr(e)))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.close()


class AdminSession:
    """One psql kept open: a sample costs a query, not a process start."""

    def __init__(self):
        self.p = subprocess.Popen(["psql", os.environ["QG_TEST_ADMIN_URL"], "-qAtX"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  bufsize=1)

    def value(self, sql):
        self.p.stdin.write(sql + ";\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


def sample(pid, admin, counter, t0):
    st = proc_stats(pid)
    st["db"] = int(admin.value("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                               "= '%s'" % APP))
    st["t"] = time.time() - t0
    st["done"] = counter.done
    return st


def figures(rows):
    return {k: statistics.median(r[k] for r in rows) for k in ("rss_kb", "fds", "threads", "db")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--warmup", type=float, default=0.2,
                    help="fraction of the requests before the baseline is taken")
    ap.add_argument("--rss-mb", type=float, default=8.0, help="tolerated RSS growth (MB)")
    ap.add_argument("--fds", type=int, default=2, help="tolerated growth in open fds")
    ap.add_argument("--pool-size", type=int, default=10,
                    help="DB_POOL_SIZE (and so the HTTP workers); at least --threads, else "
                         "requests queue for a worker")
    args = ap.parse_args()

    url = database_url()
    admin_sql("DROP TABLE IF EXISTS {t}, {t}_log; "
              "CREATE TABLE {t} (k int PRIMARY KEY, v bigint NOT NULL DEFAULT 0, note text); "
              "INSERT INTO {t} (k) SELECT generate_series(0, {n} - 1); "
              "CREATE TABLE {t}_log (id bigserial PRIMARY KEY, k int, note text); "
              "GRANT ALL ON {t}, {t}_log TO qg; GRANT ALL ON SEQUENCE {t}_log_id_seq TO qg"
              .format(t=T, n=KEYS))
    s = Server(DATABASE_URL=url + ("&" if "?" in url else "?") + "application_name=" + APP,
               DB_POOL_SIZE=args.pool_size, DB_MAX_OVERFLOW=5)
    counter = Counter(args.requests)
    admin = AdminSession()
    rows = []
    t0 = time.time()
    try:
        workers = [threading.Thread(target=client, args=(s.port, i, counter))
                   for i in range(args.threads)]
        for w in workers:
            w.start()
        print("%6s %8s %7s %8s %5s %7s %4s" % ("t_s", "done", "req/s", "rss_kb", "fds",
                                              "threads", "db"))
        last = 0
        while any(w.is_alive() for w in workers):
            time.sleep(1)
            row = sample(s.proc.pid, admin, counter, t0)
            rows.append(row)
            print("%6.1f %8d %7d %8d %5d %7d %4d" % (row["t"], row["done"], row["done"] - last,
                                                     row["rss_kb"], row["fds"], row["threads"],
                                                     row["db"]), flush=True)
            last = row["done"]
        for w in workers:
            w.join()
        rows.append(sample(s.proc.pid, admin, counter, t0))
        secs = time.time() - t0
        c = s.connection()
        c.request("GET", "/pool")
        pool = json.loads(c.getresponse().read())
        c.close()
    finally:
        s.stop()
        admin.close()
        admin_sql("DROP TABLE IF EXISTS {t}, {t}_log".format(t=T))

    after = [r for r in rows if r["done"] >= args.warmup * args.requests]
    if len(after) < 6:
        print("too few samples after warm-up (%d); send more requests" % len(after))
        return 1
    base, end = figures(after[:3]), figures(after[-3:])
    peak = {k: max(r[k] for r in after) for k in base}
    print("\n%d requests in %.1fs (%.0f/s), %d threads; statuses %r" %
          (counter.done, secs, counter.done / secs, args.threads, counter.statuses))
    print("pool: connects %d, recycles %d, errors %d, retries %d" %
          (pool["connects"], pool["recycles"], pool["errors"], pool["retries"]))
    print("after warm-up (%d%% of the requests): %-10s %10s %10s %10s" %
          (args.warmup * 100, "", "baseline", "end", "peak"))
    for k in ("rss_kb", "fds", "threads", "db"):
        print("  %-40s %10d %10d %10d" % (k, base[k], end[k], peak[k]))
    limits = {"rss_kb": args.rss_mb * 1024, "fds": args.fds, "threads": 0}
    bad = ["%s grew from %d to %d (tolerance %d)" % (k, base[k], end[k], limits[k])
           for k in limits if end[k] - base[k] > limits[k]]
    # The pool opens connections lazily up to the concurrency it meets: a bound, not a baseline.
    most = args.pool_size + 5 + 1  # DB_POOL_SIZE + DB_MAX_OVERFLOW + the health connection
    if peak["db"] > most:
        bad.append("%d database connections, more than the %d the pool may hold" % (peak["db"], most))
    failed = sum(n for st, n in counter.statuses.items() if st != 200)
    if failed:
        bad.append("%d requests failed, e.g. %r" % (failed, counter.errors[:3]))
    for b in bad:
        print("FAIL: " + b)
    print("OK" if not bad else "SOAK FAILED")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

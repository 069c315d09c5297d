"""GET /metrics: promtool accepts it, values follow the traffic sent, and /pool, /health, /metrics and pg_stat_activity agree."""
import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, check, check_error, check_ok, database_url,  # noqa: E402
                       run_tests)

T = "t_metrics_%d" % os.getpid()
# Its own application_name, so that other tests' servers on the same cluster do not count.
APP = "qg_metrics_%d" % os.getpid()

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse(text):
    """{(name, ((label, value), ...)): float}; fails on any line that is not a sample or comment."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        check(m, "not a sample: %r" % line)
        labels = []
        rest = m.group(3) or ""
        while rest:
            lm = LABEL.match(rest)
            check(lm, "bad labels in %r" % line)
            labels.append((lm.group(1), lm.group(2)))
            rest = rest[lm.end():]
        out[(m.group(1), tuple(sorted(labels)))] = float(m.group(4))
    return out


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def setup():
    database_url()
    admin_sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id serial PRIMARY KEY, "
              "name text UNIQUE NOT NULL); GRANT ALL ON {t} TO qg; "
              "GRANT ALL ON SEQUENCE {t}_id_seq TO qg".format(t=T))
    url = database_url()
    url += ("&" if "?" in url else "?") + "application_name=" + APP
    return Server(DATABASE_URL=url)


def teardown(s):
    s.stop()
    admin_sql("DROP TABLE IF EXISTS {t}".format(t=T))


def metrics(s):
    r = s.get("/metrics")
    check(r.status == 200 and r.header("content-type") == "text/plain; version=0.0.4; "
          "charset=utf-8", r)
    return r.raw.decode()


def test_promtool_accepts_real_output(s):
    # Traffic of every kind first, so that every family has samples.
    check_ok(s.post("/query", {"sql": "SELECT 1"}))
    check_ok(s.post("/insert", {"sql": "INSERT INTO %s (name) VALUES ('p')" % T}))
    check_error(s.post("/insert", {"sql": "INSERT INTO %s (name) VALUES ('p')" % T}), 409,
                "conflict")
    check_error(s.post("/query", {"sql": "SELECT * FROM nope_%s" % T}), 400, "sql_error")
    check_error(s.get("/nope"), 404, "not_found")
    check_ok(s.get("/health"))
    text = metrics(s)
    promtool = shutil.which("promtool")
    check(promtool, "promtool is missing: scripts/deps test installs it (Debian package "
          "prometheus)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
          "promtool: rc %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
    # HELP and TYPE for every family, before its samples.
    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    helped = set(re.findall(r"^# HELP (\S+) ", text, re.M))
    check(declared == helped, (declared ^ helped))
    for (name, _), _v in parse(text).items():
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        check(name in declared or family in declared, "no TYPE for %s" % name)
    for family in ("querygate_http_requests_total", "querygate_http_request_duration_seconds",
                   "querygate_pool_wait_seconds", "querygate_pool_size",
                   "querygate_pool_checked_out", "querygate_pool_idle", "querygate_pool_overflow",
                   "querygate_pool_waiting", "querygate_pool_connects_total",
                   "querygate_pool_recycles_total", "querygate_pool_timeouts_total",
                   "querygate_pool_errors_total", "querygate_db_retries_total",
                   "querygate_db_errors_total", "querygate_health_connection",
                   "querygate_build_info"):
        check(family in declared, "no family %s" % family)


def test_requests_counted_exactly(s):
    before = parse(metrics(s))
    for i in range(7):
        check_ok(s.post("/query", {"sql": "SELECT :i::int AS i", "params": {"i": i}}))
    check_error(s.get("/nope/%d" % os.getpid()), 404, "not_found")
    after = parse(metrics(s))

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    check(grew("querygate_http_requests_total", endpoint="/query", status="200") == 7,
          "query counter")
    check(grew("querygate_http_requests_total", endpoint="other", status="404") == 1, "other")
    check(grew("querygate_http_request_duration_seconds_count", endpoint="/query") == 7,
          "histogram count")
    check(grew("querygate_http_request_duration_seconds_sum", endpoint="/query") > 0, "sum")
    # /metrics counts itself once per scrape: the one that produced `before`.
    check(grew("querygate_http_requests_total", endpoint="/metrics", status="200") == 1,
          "metrics counter")
    # The pool wait is observed once per request that ran statements.
    check(grew("querygate_pool_wait_seconds_count") == 7, "pool wait count")


def test_histograms_monotonic(s):
    for _ in range(3):
        check_ok(s.post("/query", {"sql": "SELECT 1"}))
    samples = parse(metrics(s))
    for hist in ("querygate_http_request_duration_seconds", "querygate_pool_wait_seconds"):
        series = {}
        for (name, labels), v in samples.items():
            if name == hist + "_bucket":
                d = dict(labels)
                le = d.pop("le")
                series.setdefault(tuple(sorted(d.items())), []).append(
                    (float("inf") if le == "+Inf" else float(le), v))
        check(series, "no buckets for " + hist)
        for key, buckets in series.items():
            buckets.sort()
            counts = [v for _, v in buckets]
            check(counts == sorted(counts), "%s %s not monotonic: %r" % (hist, key, buckets))
            check(buckets[-1][0] == float("inf"), "no +Inf bucket")
            total = value(samples, hist + "_count", **dict(key))
            check(buckets[-1][1] == total, "%s %s: +Inf %r != count %r"
                  % (hist, key, buckets[-1][1], total))
    requests = sum(v for (n, lb), v in samples.items()
                   if n == "querygate_http_requests_total" and dict(lb)["endpoint"] == "/query")
    check(value(samples, "querygate_http_request_duration_seconds_count", endpoint="/query")
          == requests, "count != requests for /query")


def test_db_error_class(s):
    before = parse(metrics(s))
    name = "dup-%d" % os.getpid()
    check_ok(s.post("/insert", {"sql": "INSERT INTO %s (name) VALUES (:n)" % T,
                                "params": {"n": name}}))
    e = check_error(s.post("/insert", {"sql": "INSERT INTO %s (name) VALUES (:n)" % T,
                                       "params": {"n": name}}), 409, "conflict")
    check(e.get("sqlstate") == "23505", e)
    check_error(s.post("/query", {"sql": "SELECT 1/0"}), 400, "sql_error")
    after = parse(metrics(s))

    def grew(n, **labels):
        return value(after, n, **labels) - value(before, n, **labels)
    check(grew("querygate_db_errors_total", **{"class": "23"}) == 1, "class 23")
    check(grew("querygate_db_errors_total", **{"class": "22"}) == 1, "class 22")
    check(grew("querygate_http_requests_total", endpoint="/insert", status="409") == 1, "409")


def pg_sessions():
    return int(admin_sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'"
                         % APP))


def pool_snapshot(s):
    """/pool, /metrics and /health read back to back (no database traffic in between)."""
    pool = check_ok(s.get("/pool"))
    m = parse(metrics(s))
    return pool, m


def agree(pool, m, what):
    for key in ("size", "checked_out", "idle", "overflow", "waiting"):
        check(value(m, "querygate_pool_" + key, pool="primary") == pool[key],
              "%s: querygate_pool_%s %r != /pool %r" % (what, key, value(m, "querygate_pool_" +
                                                                          key), pool[key]))
    for key in ("connects", "recycles", "timeouts", "errors"):
        check(value(m, "querygate_pool_%s_total" % key, pool="primary") == pool[key], (what, key))
    check(value(m, "querygate_db_retries_total", pool="primary") == pool["retries"], what)
    check(value(m, "querygate_health_connection") == pool["health_connection"], what)


def test_pool_agrees_with_pg_stat_activity(s):
    # Several connections open at once: concurrent slow queries.
    threads = [threading.Thread(target=lambda: s.post(
        "/query", {"sql": "SELECT pg_sleep(0.3)"}, conn=s.connection())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    health = check_ok(s.get("/health"))
    pool, m = pool_snapshot(s)
    check(pool["health_connection"] == 1, pool)
    check(pool["checked_out"] == 0 and pool["idle"] >= 3, pool)
    check(health["connection_count"] == pool["checked_out"] + pool["idle"], (health, pool))
    agree(pool, m, "idle")
    n = pg_sessions()
    check(n == pool["checked_out"] + pool["idle"] + pool["health_connection"],
          "pg_stat_activity has %d sessions; /pool says %r" % (n, pool))

    # And while a statement runs.
    t = threading.Thread(target=lambda: s.post("/query", {"sql": "SELECT pg_sleep(1.5)"},
                                               conn=s.connection()))
    t.start()
    try:
        deadline = time.time() + 5
        while check_ok(s.get("/pool"))["checked_out"] != 1 and time.time() < deadline:
            time.sleep(0.02)
        pool, m = pool_snapshot(s)
        check(pool["checked_out"] == 1, pool)
        agree(pool, m, "busy")
        n = pg_sessions()
        check(n == pool["checked_out"] + pool["idle"] + 1, (n, pool))
    finally:
        t.join()


def test_requests_waiting_for_a_connection_are_waiting_and_timeouts(_s):
    """Issues 11.1 and 12.2: one slow request holds the only connection; reads that wait for
    it count in /pool's waiting, and those that give up after DB_POOL_TIMEOUT in timeouts."""
    s = Server(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=1)
    try:
        answers = []
        holder = threading.Thread(target=lambda: answers.append(s.post(
            "/query", {"sql": "SELECT pg_sleep(2)"}, conn=s.connection())))
        holder.start()
        deadline = time.time() + 5
        while check_ok(s.get("/pool"))["checked_out"] != 1 and time.time() < deadline:
            time.sleep(0.02)
        threads = [threading.Thread(target=lambda: answers.append(s.post(
            "/query", {"sql": "SELECT 1"}, conn=s.connection()))) for _ in range(2)]
        for t in threads:
            t.start()
        seen = None
        pool = None
        while seen is None and any(t.is_alive() for t in threads):
            pool, m = pool_snapshot(s)
            if pool["waiting"] == 2 and pool["checked_out"] == 1 and \
                    value(m, "querygate_pool_waiting", pool="primary") == 2:
                seen = pool
            time.sleep(0.02)
        for t in threads + [holder]:
            t.join()
        check(seen, "never saw waiting 2 while two requests waited; last /pool %r" % pool)
        check(sorted(r.status for r in answers) == [200, 503, 503], answers)
        for r in answers:
            if r.status == 503:
                check_error(r, 503, "pool_timeout")
        pool, m = pool_snapshot(s)
        check(pool["waiting"] == 0 and pool["timeouts"] == 2 and pool["checked_out"] == 0, pool)
        agree(pool, m, "after the timeouts")
        check(value(m, "querygate_pool_timeouts_total", pool="primary") == 2, "timeouts_total")
    finally:
        s.stop()


def test_health_connection_zero_before_any_check(_s):
    url = database_url()
    s = Server(DATABASE_URL=url + ("&" if "?" in url else "?") + "application_name=" + APP + "_2")
    try:
        pool = check_ok(s.get("/pool"))
        check(pool["health_connection"] == 0 and pool["idle"] == 0, pool)
        check(value(parse(metrics(s)), "querygate_health_connection") == 0, "gauge")
        check(check_ok(s.get("/health/ready"))["pool"]["health_connection"] == 1, "after")
    finally:
        s.stop()


if __name__ == "__main__":
    database_url()
    run_tests(dict(globals()), setup, teardown)

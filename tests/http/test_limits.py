"""Limits and overload: result caps, pool timeout, statement timeout, drain on SIGTERM, startup errors."""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, binary, check, check_error, check_ok,  # noqa: E402
                       database_url, run_tests)

T = "t_limits_%d" % os.getpid()


def test_result_too_large_rows():
    s = Server(MAX_RESULT_ROWS=10)
    try:
        check_ok(s.post("/query", {"sql": "SELECT g FROM generate_series(1, 10) g"}))
        e = check_error(s.post("/query", {"sql": "SELECT g FROM generate_series(1, 11) g"}),
                        422, "result_too_large")
        check("MAX_RESULT_ROWS" in e["message"], e)
    finally:
        s.stop()


def test_result_too_large_default_cap():
    s = Server()
    try:
        t0 = time.time()
        e = check_error(s.post("/query", {"sql": "SELECT g FROM generate_series(1, 1000000) g"}),
                        422, "result_too_large")
        check("MAX_RESULT" in e["message"], e)
        check(time.time() - t0 < 20, "took %.1fs" % (time.time() - t0))
        check_ok(s.get("/health/live"))
    finally:
        s.stop()


def test_write_results_over_the_cap_are_not_committed():
    """The last write carries COMMIT; rows past MAX_RESULT_BYTES must still roll it all back."""
    admin_sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (k text); GRANT ALL ON {t} TO qg"
              .format(t=T))
    s = Server(MAX_RESULT_BYTES=4096, DB_POOL_SIZE=1)
    ins = "INSERT INTO %s (k) VALUES (:k) RETURNING k, repeat('x', 1500) AS pad" % T
    try:
        check_error(s.post("/transaction", {"statements": [
            {"sql": ins, "params": {"k": "tx-1"}}, {"sql": ins, "params": {"k": "tx-2"}},
            {"sql": ins, "params": {"k": "tx-3"}}]}), 422, "result_too_large")
        check_error(s.post("/insert", {"sql": ins, "params": [
            {"k": "batch-1"}, {"k": "batch-2"}, {"k": "batch-3"}]}), 422, "result_too_large")
        big = "INSERT INTO %s (k) VALUES (:k) RETURNING repeat('x', 5000) AS pad" % T
        for _ in range(2):  # the second time on a connection that has seen the statement
            check_error(s.post("/insert", {"sql": big, "params": {"k": "one"}}),
                        422, "result_too_large")
            check_error(s.post("/update", {"sql": big, "params": {"k": "one"}}),
                        422, "result_too_large")
        check(admin_sql("SELECT count(*) FROM %s" % T) == "0", "a write past the cap was committed")
        check_ok(s.post("/transaction", {"statements": [
            {"sql": ins, "params": {"k": "tx-1"}}, {"sql": ins, "params": {"k": "tx-2"}}]}))
        check_ok(s.post("/insert", {"sql": ins, "params": [{"k": "batch-1"}, {"k": "batch-2"}]}))
        check(admin_sql("SELECT count(*) FROM %s" % T) == "4", "the writes within the cap")
    finally:
        s.stop()
        admin_sql("DROP TABLE %s" % T)


def test_pool_timeout_and_statement_timeout():
    s = Server(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=1, PG_STATEMENT_TIMEOUT=1500)
    try:
        holder = {}

        def hold():
            holder["r"] = s.request("POST", "/query", body={"sql": "SELECT pg_sleep(1.2)"},
                                    conn=s.connection())
        t = threading.Thread(target=hold)
        t.start()
        time.sleep(0.2)
        t0 = time.time()
        r = s.request("POST", "/query", body={"sql": "SELECT 1"}, conn=s.connection())
        waited = time.time() - t0
        check_error(r, 503, "pool_timeout")
        check(r.header("retry-after") == "1", r.headers)
        check(0.7 < waited < 3, "answered after %.2fs" % waited)
        t.join()
        check_ok(holder["r"], "the holder")
        check_ok(s.get("/health/live"))
        e = check_error(s.post("/query", {"sql": "SELECT pg_sleep(3)"}), 504,
                        "statement_timeout")
        check(e["sqlstate"] == "57014", e)
    finally:
        s.stop()


def app_url(app):
    """DATABASE_URL under an application_name of its own, to find the service's backends."""
    url = database_url()
    return url + ("&" if "?" in url else "?") + "application_name=" + app


def backends(app):
    return int(admin_sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'"
                         % app))


def no_backends_left(app):
    """The service exited: its backends go too (they leave a moment after the socket closes)."""
    deadline = time.time() + 3
    while backends(app) and time.time() < deadline:
        time.sleep(0.05)
    check(backends(app) == 0, "connections of the service left after exit: %s" %
          admin_sql("SELECT state, query FROM pg_stat_activity WHERE application_name = '%s'"
                    % app))


def drain(sig):
    """In flight (several, on the HTTP threads' loops): finished and committed; open
    connections: 503; new ones: refused; exit 0."""
    app = "qg_drain_%d_%d" % (os.getpid(), sig)
    admin_sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (k text); GRANT ALL ON {t} TO qg"
              .format(t=T))
    s = Server(SHUTDOWN_TIMEOUT=10, DATABASE_URL=app_url(app))
    idle = s.connection()
    check_ok(s.request("GET", "/health/live", conn=idle))
    check_ok(s.get("/health"))  # the health connection is open too
    result = {}

    def slow(i):
        result[i] = s.request("POST", "/transaction", conn=s.connection(), body={
            "statements": [{"sql": "INSERT INTO %s (k) VALUES ('in flight')" % T},
                           {"sql": "SELECT pg_sleep(1) AS s"}]})
    ts = [threading.Thread(target=slow, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    time.sleep(0.3)
    check(backends(app) >= 2, "pool and health connections: %d" % backends(app))
    s.proc.send_signal(sig)
    time.sleep(0.2)
    # An open connection is still served, with 503 shutting_down.
    r = s.request("GET", "/pool", conn=idle)
    check_error(r, 503, "shutting_down")
    refused = False
    try:
        s.request("GET", "/health/live", conn=s.connection())
    except ConnectionRefusedError:
        refused = True
    check(refused, "a new connection was accepted while draining")
    for t in ts:
        t.join()
    for i in range(3):
        check_ok(result[i], "the request in flight finished")
    check(s.stop() == 0, "exit code")
    check(any("draining" in line for line in s.lines), "no drain log line")
    no_backends_left(app)
    check(admin_sql("SELECT count(*) FROM %s WHERE k = 'in flight'" % T) == "3", "not committed")
    admin_sql("DROP TABLE %s" % T)


def test_drain_on_sigterm():
    drain(signal.SIGTERM)


def test_drain_on_sigint():
    drain(signal.SIGINT)


def test_drain_timeout_cancels():
    app = "qg_drain_cancel_%d" % os.getpid()
    admin_sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (k text); GRANT ALL ON {t} TO qg"
              .format(t=T))
    s = Server(SHUTDOWN_TIMEOUT=0.5, DATABASE_URL=app_url(app))
    result = {}

    def slow():
        result["r"] = s.request("POST", "/transaction", conn=s.connection(), body={
            "statements": [{"sql": "INSERT INTO %s (k) VALUES ('cut')" % T},
                           {"sql": "SELECT pg_sleep(30)"}]})
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    t0 = time.time()
    s.proc.send_signal(signal.SIGTERM)
    rc = s.proc.wait(15)
    check(rc == 0 and time.time() - t0 < 10, "rc %s after %.1fs" % (rc, time.time() - t0))
    t.join(10)
    # Cancelled by the shutdown, not by its own timeout: go elsewhere, it was rolled back.
    e = check_error(result.get("r"), 503, "shutting_down", "the cut request")
    check("rolled back" in e["message"], e)
    no_backends_left(app)
    check(admin_sql("SELECT count(*) FROM %s" % T) == "0", "the cut transaction was committed")
    admin_sql("DROP TABLE %s" % T)


def refused(s):
    try:
        s.request("GET", "/health/live", conn=s.connection())
        return False
    except ConnectionRefusedError:
        return True


def test_shutdown_delay():
    """SIGTERM with SHUTDOWN_DELAY: /health/ready 503 at once, the rest served for the delay,
    then the listener closes and the drain runs."""
    delay = 2
    s = Server(SHUTDOWN_DELAY=delay)
    idle = s.connection()
    check_ok(s.get("/health/ready"))
    check_ok(s.request("GET", "/health/live", conn=idle))
    t0 = time.time()
    s.proc.send_signal(signal.SIGTERM)
    while True:
        r = s.get("/health/ready", conn=s.connection())
        if r.status == 503 or time.time() - t0 > 2:
            break
        time.sleep(0.02)
    check(r.status == 503 and r.json["status"] == "unhealthy" and
          "SHUTDOWN_DELAY" in r.json["error"], r)
    # Everything else is served as before, on new connections and open ones alike.
    check_ok(s.post("/query", {"sql": "SELECT 1 AS one"}, conn=s.connection()))
    check_ok(s.request("GET", "/health/live", conn=idle))
    check_ok(s.get("/pool", conn=s.connection()))
    check(time.time() - t0 < delay, "the checks outlasted the delay: meaningless")
    while not refused(s) and time.time() - t0 < delay + 10:
        time.sleep(0.05)
    check(time.time() - t0 >= delay, "the listener closed %.2fs after SIGTERM, before %ds"
          % (time.time() - t0, delay))
    check(refused(s), "new connections still accepted after the delay")
    check(s.stop() == 0, "exit code")
    order = [ln for ln in s.lines if "SIGTERM" in ln]
    check(len(order) == 2 and "SHUTDOWN_DELAY" in order[0] and "draining" in order[1], order)


def test_shutdown_delay_cut_short():
    """A second SIGTERM, or a SIGINT, ends the delay; SIGINT alone has none."""
    for first, second in ((signal.SIGTERM, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT),
                          (signal.SIGINT, None)):
        s = Server(SHUTDOWN_DELAY=600)
        t0 = time.time()
        s.proc.send_signal(first)
        if second:
            while s.get("/health/ready", conn=s.connection()).status != 503:
                check(time.time() - t0 < 5, "/health/ready never answered 503")
                time.sleep(0.02)
            s.proc.send_signal(second)
        check(s.proc.wait(20) == 0, "exit code")
        check(any("draining" in ln for ln in s.lines), (first, second, s.lines[-3:]))


def run_binary(env_extra, args=()):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(env_extra)
    return subprocess.run([binary()] + list(args), env=env, capture_output=True, text=True,
                          timeout=10)


def test_startup_errors():
    r = run_binary({"PORT": "0"})
    check(r.returncode == 2 and "DATABASE_URL" in r.stderr and "scripts/run" in r.stderr,
          (r.returncode, r.stderr))
    r = run_binary({"DATABASE_URL": database_url(), "DB_POOL_SIZE": "lots"})
    check(r.returncode == 2 and "DB_POOL_SIZE" in r.stderr, (r.returncode, r.stderr))
    r = run_binary({"DATABASE_URL": database_url()}, ["--port", "banana"])
    check(r.returncode == 2 and "port" in r.stderr.lower(), (r.returncode, r.stderr))
    r = run_binary({"DATABASE_URL": database_url()}, ["--frobnicate"])
    check(r.returncode == 2 and "--frobnicate" in r.stderr, (r.returncode, r.stderr))
    r = run_binary({}, ["--help"])
    check(r.returncode == 0 and "DB_POOL_SIZE" in r.stdout and "--port" in r.stdout, r)
    r = run_binary({}, ["--version"])
    check(r.returncode == 0 and r.stdout.startswith("querygate "), r)
    secret = database_url()
    r = run_binary({"DATABASE_URL": secret, "PORT": "0", "HOST": "256.1.1.1"})
    check(r.returncode != 0 and "HOST" in r.stderr, (r.returncode, r.stderr))


def test_flags_and_json_log():
    s = Server(LOG_FORMAT="json")
    try:
        check_ok(s.get("/pool", headers={"X-Request-Id": "log-me"}))
        check_ok(s.post("/query", {"sql": "SELECT :p::text AS p", "params": {"p": "sekr1t-v4lue"}}))
        s.post("/query", {"sql": "SELECT 'sekr1t-b0dy' + 1"})
        time.sleep(0.1)
        check(not any("sekr1t" in ln for ln in s.lines), "a body or parameter reached the log")
        lines = [ln for ln in s.lines if "log-me" in ln]
        check(lines and '"status":200' in lines[0] and '"path":"/pool"' in lines[0], s.lines)
        password = database_url().split("@")[0].rsplit(":", 1)[-1]
        check(not any(password in ln for ln in s.lines), "password in the log")
    finally:
        s.stop()


def test_ipv6_listen():
    env = dict(os.environ, DATABASE_URL=database_url(), AUTH="none")
    p = subprocess.Popen([binary(), "--host", "::1", "--port", "0"], env=env,
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        line = p.stderr.readline()
        for _ in range(5):
            if "listening on" in line:
                break
            line = p.stderr.readline()
        check("listening on http://[::1]:" in line, line)
        port = int(line.rsplit(":", 1)[1].split()[0])
        import http.client
        c = http.client.HTTPConnection("::1", port, timeout=5)
        c.request("GET", "/health/live")
        check(c.getresponse().status == 200, "no answer on ::1")
        c.close()
    finally:
        p.send_signal(signal.SIGTERM)
        check(p.wait(10) == 0, "exit code")


if __name__ == "__main__":
    database_url()
    run_tests(dict(globals()))

"""Failover under a failover manager users run (issue 14): pg_auto_failover. A monitor and
two nodes of the test's own (scripts/autofailover), querygate given the multi-host URI of
`pg_autoctl show uri --formation default`, and `pg_autoctl perform failover` under a
16-client write load. The expectations are test_failover_restart's (done by hand there):
no acknowledged write lost, none applied twice, writes resuming within 5 s of the promotion,
failures only as the contract allows. A run where pg_auto_failover loses its own race (see
failover_under_load) is done again once, on a new formation.

Runs alone (the name has _restart): it times a failover of its own formation.
"""
import glob
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, WriteLoad, binary, check, run_tests, skip,  # noqa: E402
                       source_dir)

T = "t_autofailover"


class Formation:
    """scripts/autofailover's monitor, node1 (the first primary) and node2, in a new
    temporary directory; removed by close()."""

    def __init__(self):
        self.tool = os.path.join(source_dir(), "scripts", "autofailover")
        self.top = tempfile.mkdtemp(prefix="qg-autofailover.")
        os.chmod(self.top, 0o755)  # the servers run as another user when we are root
        try:
            out = self._tool("start")
        except Exception:
            self.close()
            raise
        self.vars = dict(w.split("=", 1) for line in out.splitlines()
                         for w in shlex.split(line)[1:])
        self.url = self.vars["QG_AF_URL"]  # both nodes, target_session_attrs=read-write
        self.monitor = os.path.join(self.top, "monitor")
        self.keep = bool(os.environ.get("QG_TEST_KEEP_FORMATION"))  # its logs, after a failure

    def _tool(self, *args, timeout=240):
        out = subprocess.run([self.tool, args[0], self.top] + list(args[1:]),
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError("autofailover %s failed: %s%s" % (" ".join(args), out.stdout,
                                                                 out.stderr))
        return out.stdout

    def ctl(self, *args):
        """pg_autoctl args; returns what it printed (its log goes to stderr)."""
        out = subprocess.run([self.tool, "ctl", self.top] + list(args), capture_output=True,
                             text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError("pg_autoctl %s failed (%d): %s%s" % (
                " ".join(args), out.returncode, out.stdout, out.stderr))
        return out.stdout + out.stderr

    def sql(self, node, sql):
        """sql as the superuser on node (monitor, node1, node2): psql's unaligned rows."""
        return self._tool("psql", node, "-qAt", "-c", sql).strip()

    def primary(self):
        return self.sql("monitor", "SELECT nodename FROM pgautofailover.node "
                                   "WHERE reportedstate = 'primary' AND goalstate = 'primary'")

    def states(self):
        return self.sql("monitor", "SELECT string_agg(nodename || ':' || reportedstate || '/' "
                                   "|| goalstate, ' ' ORDER BY nodename) FROM pgautofailover.node")

    def last_event(self):
        return int(self.sql("monitor", "SELECT max(eventid) FROM pgautofailover.event"))

    def events(self, after):
        """The monitor's events after the one numbered after: (time, node, reported, goal)."""
        rows = self.sql("monitor", "SELECT extract(epoch FROM eventtime), nodename, "
                                   "reportedstate, goalstate FROM pgautofailover.event "
                                   "WHERE eventid > %d ORDER BY eventid" % after)
        return [(float(t), n, r, g) for t, n, r, g in (ln.split("|") for ln in rows.splitlines())]

    def close(self):
        try:
            self._tool("stop")
        finally:
            if getattr(self, "keep", False):
                print("   the formation's logs are kept in %s (*.log, node*/log/)" % self.top)
            else:
                subprocess.run(["rm", "-rf", self.top], check=False)


class Race(Exception):
    """pg_auto_failover 2.0 lost the race described in failover_under_load."""


def new_formation():
    t0 = time.time()
    f = Formation()
    print("   formation up in %.1f s: %s" % (time.time() - t0, f.vars["QG_AF_URI"]))
    try:
        # Where and when each write committed, and whether its session was read-only by
        # default then: the two primaries told apart afterwards.
        f.sql("node1", "CREATE TABLE %s (k text NOT NULL, port int DEFAULT inet_server_port(), "
                       "at float8 DEFAULT extract(epoch FROM clock_timestamp()), "
                       "ro text DEFAULT current_setting('default_transaction_read_only')); "
                       "GRANT ALL ON %s TO qg" % (T, T))
    except Exception:
        f.close()
        raise
    return f


def setup():
    binary()
    if not shutil.which("pg_autoctl") and not glob.glob("/usr/lib/postgresql/*/bin/pg_autoctl"):
        skip("pg_autoctl is not installed (Debian: postgresql-15-auto-failover; "
             "scripts/deps test installs it)")
    return {"f": new_formation()}


def teardown(state):
    state["f"].close()


def test_writes_follow_a_pg_autoctl_failover_under_load(state):
    for attempt in (1, 2):
        try:
            return failover_under_load(state["f"])
        except Race as e:
            if attempt == 2:
                raise AssertionError("twice in a row: %s" % e)
            print("   %s; once more, on a new formation" % e)
            state["f"].close()
            state["f"] = new_formation()


def failover_under_load(f):
    # DB_POOL_TIMEOUT outlasts the failover (a few seconds here; up to pg_auto_failover's
    # demote timeout, 30 s, when the old primary's keeper does not answer).
    s = Server(DATABASE_URL=f.url, DB_POOL_SIZE=4, DB_MAX_OVERFLOW=4, DB_POOL_TIMEOUT=40,
               DB_RETRY_DELAY=0.05, DB_CONNECT_TIMEOUT=2)
    load = WriteLoad(s, T)
    try:
        time.sleep(1.0)
        # Synchronous replication, the state a failover keeps acknowledged writes in.
        deadline = time.time() + 20
        while f.states() != "node1:primary/primary node2:secondary/secondary":
            check(time.time() < deadline, "the formation is not settled: " + f.states())
            time.sleep(0.2)
        first = f.last_event()
        began = time.time()
        # Returns once the monitor sees node2 primary and node1 its secondary again.
        try:
            f.ctl("perform", "failover", "--pgdata", f.monitor, "--wait", "60")
        except Exception:
            f.keep = True
            raise
        done = time.time()
        # When the new primary opened for writes (see below); until then it is not known.
        promoted = None
        while time.time() < done + 6:
            events = f.events(first)
            opened = [t for t, n, r, g in events if n == "node2" and g == "wait_primary"]
            promoted = promoted or (opened[0] if opened else None)
            if promoted and load.oks_after(promoted):
                break
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        load.stop()
    try:
        # pg_auto_failover promotes the standby in stop_replication but keeps it
        # default_transaction_read_only (so target_session_attrs=read-write passes it by)
        # until the monitor, sure the old primary is demoted, assigns it wait_primary: its
        # keeper then turns writes on and reports wait_primary. The promotion moment is
        # that assignment, the monitor's event setting node2's goal to wait_primary.
        events = f.events(first)
        print("   the monitor's events, seconds after `pg_autoctl perform failover` began:")
        for t, n, r, g in events:
            print("   %+6.2f %s %s -> %s" % (t - began, n, r, g))
        # pg_auto_failover 2.0's race: node1's keeper reports while the failover is being
        # set up, and the monitor answers it wait_primary ("Secondary became unhealthy":
        # node2 is prepare_promotion by then) instead of draining. node1 turns synchronous
        # replication off and keeps taking writes; its keeper cannot go from wait_primary
        # to demote_timeout ("does not know how to reach state"), so node1 stays writable
        # after node2's promotion until primary_demote_timeout (30 s). The writes it
        # acknowledged meanwhile are lost with its timeline, whoever the client was.
        if any(n == "node1" and g == "wait_primary" for t, n, r, g in events):
            raise Race("pg_auto_failover set node1 wait_primary instead of draining (its race,"
                       " not querygate's: acknowledged writes on node1 may be lost)")
        check(promoted is not None, "the monitor never assigned node2 wait_primary")
        check(f.primary() == "node2", "node2 is not the primary after the failover")
        # Each row says where and when it was committed, and whether the session was
        # default_transaction_read_only then (pg_auto_failover's fence, see above).
        fenced = 0
        for port, ro, lo, hi, n in (ln.split("|") for ln in f.sql("node2", (
                "SELECT port, ro, min(at), max(at), count(*) FROM %s GROUP BY 1, 2 ORDER BY 3"
                % T)).splitlines()):
            print("   %5s rows committed on port %s (default_transaction_read_only %s) "
                  "from %+.2f s to %+.2f s" % (n, port, ro, float(lo) - began,
                                              float(hi) - began))
            fenced += int(n) if ro == "on" else 0
        # Sessions that connected while node2 was still a standby and finished their
        # startup just after its promotion saw a read-write server; the fence check after
        # BEGIN (exec.c, FENCE_SQL) keeps their writes off node2 until the monitor opens it.
        check(fenced == 0, "%d writes committed on node2 while pg_auto_failover kept it "
                           "read-only (before the old primary was known demoted)" % fenced)
        try:
            counts = load.check_table(f.sql("node2", "SELECT k, count(*) FROM %s GROUP BY k" % T))
        except AssertionError:
            f.keep = True
            raise
        after = load.oks_after(promoted)
        resumed = after[0] - promoted if after else None
        oks = sorted(at for v, at in load.outcomes.values() if v == "ok")
        gap = max((b - a for a, b in zip(oks, oks[1:])), default=0)
        print("   outcomes %r; perform failover took %.2f s; the promotion came %.2f s after it "
              "began; the first write after the promotion %s s after it; the longest pause "
              "between two acknowledged writes %.2f s"
              % (counts, done - began, promoted - began,
                 "%.2f" % resumed if resumed is not None else "never", gap))
        check(counts.get("ok", 0) > 50, counts)
        # DB_POOL_TIMEOUT outlasts the failover: every write waited for the new primary.
        check(counts.get("failed", 0) == 0, "writes failed instead of waiting: %r" % counts)
        check(resumed is not None and resumed < 5, "writes resumed after %r s" % resumed)
        check(len(after) > 16, "only %d writes after the promotion" % len(after))
        check(any("waits for a primary" in ln for ln in s.lines), "no log line of the wait")
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

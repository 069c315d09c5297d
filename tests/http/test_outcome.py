"""A write whose COMMIT answer arrived is its result, whatever happens to the connection next.

A proxy between querygate and PostgreSQL (qgharness.DbProxy) reads the server's messages
and, when armed, cuts the connection right after a CommandComplete "COMMIT": the session
reset that travels behind COMMIT in the same pipeline is lost, the commit is not.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import DbProxy, Server, admin_sql, check, check_ok, run_tests  # noqa: E402

T = "t_outcome_%d" % os.getpid()


class State:
    pass


def setup():
    st = State()
    st.proxy = DbProxy(plain=True)
    admin_sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int PRIMARY KEY, n int); "
              "INSERT INTO {t} VALUES (1, 0); ALTER TABLE {t} OWNER TO qg".format(t=T))
    st.s = Server(DATABASE_URL=st.proxy.url, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_RETRIES=0)
    return st


def teardown(st):
    st.s.stop()
    st.proxy.close()
    admin_sql("DROP TABLE IF EXISTS %s" % T)


def update(st):
    return st.s.post("/update", {"sql": "UPDATE %s SET n = n + 1 WHERE id = 1" % T})


def test_committed_write_is_reported_committed(st):
    """COMMIT rode with the statement and its reset; the cut came after COMMIT's answer."""
    check_ok(update(st))  # seen once: from now on COMMIT travels in the same pipeline
    for i in range(3):
        st.proxy.cut_after_commit()
        r = update(st)
        check(st.proxy.cuts == i + 1, "the proxy did not cut (cuts %d)" % st.proxy.cuts)
        check(r.status == 200 and r.json == {"affected_rows": 1},
              "a committed write answered %r" % r)
        check_ok(update(st))  # the next request gets a fresh connection
    n = admin_sql("SELECT n FROM %s WHERE id = 1" % T)
    check(n == "7", "want 7 increments stored, got %s" % n)


def test_commit_sent_alone_keeps_its_success(st):
    """A write with RETURNING sends COMMIT on its own: the same rule holds there."""
    sql = "UPDATE %s SET n = n + 1 WHERE id = 1 RETURNING n" % T
    st.proxy.cut_after_commit()
    r = st.s.post("/update", {"sql": sql})
    check(st.proxy.cuts >= 1 and not st.proxy.armed.is_set(), "the proxy did not cut")
    check(r.status == 200 and r.json.get("affected_rows") == 1, "got %r" % r)


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)

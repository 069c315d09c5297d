"""A write whose COMMIT answer arrived is its result, whatever happens to the connection next.

A small proxy between querygate and PostgreSQL parses the server's messages and, when
armed, cuts the connection right after a CommandComplete "COMMIT": the session reset
that travels behind COMMIT in the same pipeline is lost, the commit is not.
"""
import os
import socket
import struct
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import Server, admin_sql, check, check_ok, database_url, run_tests  # noqa: E402

T = "t_outcome_%d" % os.getpid()


class CommitCutter:
    """Forwards TCP to PostgreSQL; armed, it closes both sides after the next COMMIT's answer."""

    def __init__(self, host, port):
        self.upstream = (host, port)
        self.armed = threading.Event()
        self.cuts = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(server, client),
                             daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _server_to_client(self, server, client):
        buf = b""
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                buf += data
                out = b""
                while len(buf) >= 5:
                    length = struct.unpack("!I", buf[1:5])[0]
                    if len(buf) < 1 + length:
                        break
                    msg, buf = buf[:1 + length], buf[1 + length:]
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
        for s in (server, client):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.sock.close()


class State:
    pass


def setup():
    u = urllib.parse.urlparse(database_url())
    st = State()
    st.proxy = CommitCutter(u.hostname, u.port)
    # Plain text on both legs, so the proxy can read the messages.
    url = u._replace(netloc="%s:%s@127.0.0.1:%d" % (u.username, u.password, st.proxy.port),
                     query="sslmode=disable&gssencmode=disable").geturl()
    admin_sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int PRIMARY KEY, n int); "
              "INSERT INTO {t} VALUES (1, 0); ALTER TABLE {t} OWNER TO qg".format(t=T))
    st.s = Server(DATABASE_URL=url, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_RETRIES=0)
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
        st.proxy.armed.set()
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
    st.proxy.armed.set()
    r = st.s.post("/update", {"sql": sql})
    check(st.proxy.cuts >= 1 and not st.proxy.armed.is_set(), "the proxy did not cut")
    check(r.status == 200 and r.json.get("affected_rows") == 1, "got %r" % r)


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)

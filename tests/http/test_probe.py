"""querygate --probe: exit 0 on a 200 from /health/ready, 1 otherwise (closed port, dead database, silence, TLS)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, binary, check, database_url, free_port, run_tests,  # noqa: E402
                       skip)


def probe(args, **env):
    """Runs querygate --probe with a clean environment plus env; returns (rc, stderr, seconds)."""
    e = {k: v for k, v in os.environ.items()
         if k not in ("HOST", "PORT", "TLS_CERT_FILE", "TLS_KEY_FILE")}
    e.update({k: str(v) for k, v in env.items()})
    t0 = time.time()
    r = subprocess.run([binary(), "--probe"] + args, env=e, capture_output=True, text=True,
                       timeout=20)
    return r.returncode, r.stderr, time.time() - t0


def setup():
    return Server()


def teardown(s):
    s.stop()


def test_running_service(s):
    rc, err, _ = probe(["--port", str(s.port)])
    check(rc == 0 and err == "", (rc, err))
    # The service's own environment, as in a container: HOST and PORT, no flags.
    rc, err, _ = probe([], HOST="127.0.0.1", PORT=s.port)
    check(rc == 0, (rc, err))
    # A wildcard listen address means this host.
    rc, err, _ = probe(["--host", "0.0.0.0", "--port", str(s.port)])
    check(rc == 0, (rc, err))
    rc, err, _ = probe(["--port=%d" % s.port, "--host=localhost"])
    check(rc == 0, (rc, err))


def test_closed_port(s):
    rc, err, _ = probe(["--port", str(free_port())])
    check(rc == 1, (rc, err))
    lines = err.strip().splitlines()
    check(len(lines) == 1 and "--probe" in lines[0] and "connect" in lines[0], err)


def test_bad_arguments_exit_1(s):
    # Docker reserves exit code 2: a probe reports every failure as 1.
    for args, env in ((["--port", "banana"], {}), (["--frobnicate"], {}),
                      ([], {"PORT": "0"}), ([], {"DB_POOL_SIZE": "many"})):
        rc, err, _ = probe(args, **env)
        check(rc == 1 and err.strip(), (args, env, rc, err))


def test_database_unreachable(s):
    dead = Server(DATABASE_URL="postgresql://qg:x@127.0.0.1:%d/qg?connect_timeout=2"
                  % free_port())
    try:
        check(dead.get("/health/ready").status == 503, "ready should be 503")
        rc, err, _ = probe(["--port", str(dead.port)])
        lines = err.strip().splitlines()
        check(rc == 1 and len(lines) == 1 and "503" in lines[0] and "unhealthy" in lines[0],
              (rc, err))
        check("qg:x@" not in err, err)
    finally:
        dead.stop()


def test_silent_peer_times_out(s):
    # Accepts the connection (backlog) but never answers: the probe gives up after 3 s.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    try:
        rc, err, secs = probe(["--port", str(ls.getsockname()[1])])
        check(rc == 1 and 2.5 <= secs < 6, (rc, err, secs))
    finally:
        ls.close()


def test_ipv6_wildcard(s):
    env = dict(os.environ, DATABASE_URL=database_url(), AUTH="none")
    p = subprocess.Popen([binary(), "--host", "::1", "--port", "0"], env=env,
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        port = None
        for _ in range(5):
            line = p.stderr.readline()
            if "listening on http://[::1]:" in line:
                port = int(line.rsplit(":", 1)[1].split()[0])
                break
        check(port, "no listening line")
        rc, err, _ = probe(["--host", "::", "--port", str(port)])
        check(rc == 0, (rc, err))
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)


def tls_server(tmp):
    """openssl s_server answering GET /health/ready with 200 over TLS; returns (proc, port)."""
    if not shutil.which("openssl"):
        skip("no openssl")
    cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=probe-test", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.makedirs(os.path.join(tmp, "www", "health"))
    # -HTTP serves the file as the complete answer, headers included.
    with open(os.path.join(tmp, "www", "health", "ready"), "w") as f:
        f.write('HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"status":"healthy"}')
    for _ in range(5):
        port = free_port()
        p = subprocess.Popen(["openssl", "s_server", "-HTTP", "-quiet", "-accept",
                              "127.0.0.1:%d" % port, "-cert", cert, "-key", key],
                             cwd=os.path.join(tmp, "www"), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return p, port, cert, key
            except OSError:
                if p.poll() is not None:
                    break
                time.sleep(0.05)
        p.kill()
        p.wait()
    raise RuntimeError("openssl s_server did not start")


def test_tls(s):
    tmp = tempfile.mkdtemp()
    p = None
    try:
        p, port, cert, key = tls_server(tmp)
        tls = {"TLS_CERT_FILE": cert, "TLS_KEY_FILE": key}
        # A self-signed certificate: the probe pins the one in TLS_CERT_FILE, no CA needed.
        rc, err, _ = probe(["--port", str(port)], **tls)
        check(rc == 0, (rc, err))
        # Another service on the port, with another certificate, is not ours.
        other = os.path.join(tmp, "other.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=probe-test", "-keyout", os.path.join(tmp, "ok.pem"),
                        "-out", other], check=True, capture_output=True)
        rc, err, _ = probe(["--port", str(port)], TLS_CERT_FILE=other, TLS_KEY_FILE=key)
        check(rc == 1 and "not the one in TLS_CERT_FILE" in err, (rc, err))
        # Plain HTTP to a TLS port, and TLS to a plain HTTP port, both fail.
        rc, err, _ = probe(["--port", str(port)])
        check(rc == 1, (rc, err))
        rc, err, _ = probe(["--port", str(s.port)], **tls)
        check(rc == 1 and "https://" in err and "TLS" in err, (rc, err))
    finally:
        if p:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    database_url()
    run_tests(dict(globals()), setup, teardown)

"""HTTPS (TLS_CERT_FILE, TLS_KEY_FILE): a self-signed certificate made here, curl and Python as clients."""
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, binary, check, check_ok, database_url, run_tests,  # noqa: E402
                       skip)

DIR = tempfile.mkdtemp(prefix="qg-tls-")


def make_cert(name, cn="127.0.0.1"):
    """A self-signed EC certificate for 127.0.0.1; returns (cert, key) paths."""
    cert, key = os.path.join(DIR, name + ".pem"), os.path.join(DIR, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def setup():
    if not shutil.which("openssl"):
        skip("openssl is not installed (scripts/deps test installs it)")
    cert, key = make_cert("server")
    ctx = ssl.create_default_context(cafile=cert)
    s = Server(ssl_context=ctx, TLS_CERT_FILE=cert, TLS_KEY_FILE=key)
    return {"s": s, "cert": cert, "key": key}


def teardown(st):
    st["s"].stop()
    shutil.rmtree(DIR, ignore_errors=True)


def test_log_and_probe_say_https(st):
    s = st["s"]
    check(s.scheme == "https", s.scheme)
    check(any("listening on https://127.0.0.1:%d" % s.port in line for line in s.lines),
          s.log_excerpt())
    # The container health check speaks HTTPS to it (same TLS_* variables)...
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(s.port), TLS_CERT_FILE=st["cert"],
               TLS_KEY_FILE=st["key"], DATABASE_URL=database_url())
    p = subprocess.run([binary(), "--probe"], env=env, capture_output=True, text=True,
                       timeout=30)
    check(p.returncode == 0, (p.returncode, p.stdout, p.stderr))
    # ...and, told plain HTTP, gets no answer from the HTTPS port.
    del env["TLS_CERT_FILE"], env["TLS_KEY_FILE"]
    p = subprocess.run([binary(), "--probe"], env=env, capture_output=True, text=True,
                       timeout=30)
    out = p.stdout + p.stderr
    check(p.returncode == 1 and "http://127.0.0.1:%d" % s.port in out, (p.returncode, out))


def test_curl_with_the_ca(st):
    if not shutil.which("curl"):
        skip("curl is not installed (scripts/deps test installs it)")
    url = "https://127.0.0.1:%d/health/live" % st["s"].port
    p = subprocess.run(["curl", "-sS", "--fail", "--cacert", st["cert"], url],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 0 and '"alive"' in p.stdout, (p.returncode, p.stdout, p.stderr))
    # Without the CA curl must refuse: the certificate is really checked.
    p = subprocess.run(["curl", "-sS", url], capture_output=True, text=True, timeout=30)
    check(p.returncode == 60, (p.returncode, p.stderr))


def test_python_client_queries(st):
    s = st["s"]
    r = s.post("/query", {"sql": "SELECT 'over tls' AS t"})
    check(check_ok(r)["rows"] == [{"t": "over tls"}], r)
    check(s.get("/metrics").status == 200, "metrics")
    # TLS 1.2 is accepted too; the version in use otherwise is 1.3.
    ctx = ssl.create_default_context(cafile=st["cert"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as t:
            check(t.version() == "TLSv1.2", t.version())
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
        with ssl.create_default_context(cafile=st["cert"]).wrap_socket(
                raw, server_hostname="127.0.0.1") as t:
            check(t.version() == "TLSv1.3", t.version())


def test_chunked_body_over_the_limit_over_tls(st):
    """The early 413 (written beside libmicrohttpd) goes through TLS as well."""
    s = st["s"]
    ctx = ssl.create_default_context(cafile=st["cert"])
    with socket.create_connection(("127.0.0.1", s.port), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as k:
            chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
            k.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 256 + b"0\r\n\r\n")  # 4 MiB
            got = b""
            try:
                while True:
                    data = k.recv(65536)
                    if not data:
                        break
                    got += data
            except (ssl.SSLEOFError, ConnectionResetError):
                pass
    head, _, body = got.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 413 ") and b"X-Request-Id: " in head, got[:300])
    check(json.loads(body)["error"]["code"] == "payload_too_large", got[:400])
    check_ok(s.get("/health/live"))


def test_plain_http_is_refused(st):
    """A plain-HTTP request gets no HTTP answer: the TLS handshake fails and the
    connection is closed (the client reads EOF, no byte at all)."""
    s = st["s"]
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as k:
        k.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        got = b""
        try:
            while True:
                chunk = k.recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
    check(got == b"", got[:200])
    check(check_ok(s.get("/health/live")) == {"status": "alive"}, "still serving")


def start_fails(**env):
    full = dict(os.environ, DATABASE_URL=database_url(), PORT="0", HOST="127.0.0.1",
                AUTH="none")
    full.update(env)
    p = subprocess.run([binary()], env=full, capture_output=True, text=True, timeout=30)
    check(p.returncode != 0, (env, p.returncode, p.stderr))
    return p.stderr


def test_startup_errors_name_the_file(st):
    missing = os.path.join(DIR, "missing.pem")
    err = start_fails(TLS_CERT_FILE=missing, TLS_KEY_FILE=st["key"])
    check("TLS_CERT_FILE=" + missing in err and "No such file" in err, err)
    err = start_fails(TLS_CERT_FILE=st["cert"], TLS_KEY_FILE=missing)
    check("TLS_KEY_FILE=" + missing in err and "No such file" in err, err)
    unreadable = os.path.join(DIR, "unreadable.key")
    shutil.copy(st["key"], unreadable)
    os.chmod(unreadable, 0)
    if os.geteuid() != 0:  # root reads it anyway
        err = start_fails(TLS_CERT_FILE=st["cert"], TLS_KEY_FILE=unreadable)
        check("TLS_KEY_FILE=" + unreadable in err and "Permission denied" in err, err)
    garbage = os.path.join(DIR, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("not a certificate\n")
    err = start_fails(TLS_CERT_FILE=garbage, TLS_KEY_FILE=st["key"])
    check("TLS_CERT_FILE=" + garbage in err and "not a PEM file" in err, err)
    err = start_fails(TLS_CERT_FILE=DIR, TLS_KEY_FILE=st["key"])
    check("TLS_CERT_FILE=" + DIR in err and "regular file" in err, err)
    # A key that is not the certificate's.
    _, other_key = make_cert("other")
    err = start_fails(TLS_CERT_FILE=st["cert"], TLS_KEY_FILE=other_key)
    check("cannot start HTTPS" in err and "TLS_KEY_FILE" in err, err)
    # One without the other: a configuration error.
    err = start_fails(TLS_CERT_FILE=st["cert"])
    check("TLS_KEY_FILE" in err, err)
    check(st["key"] not in err and "PRIVATE KEY" not in err, "the key leaked: " + err)


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

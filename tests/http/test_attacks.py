"""Each limit against the attack it stops: big bodies, big headers, connection floods, slowloris, huge results."""
import json
import os
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import Server, check, check_error, check_ok, run_tests  # noqa: E402

IDLE = 2  # HTTP_IDLE_TIMEOUT for the tests that need it


def raw(s, timeout=10):
    return socket.create_connection(("127.0.0.1", s.port), timeout=timeout)


def read_all(k, limit_s=10):
    """Everything until EOF (a reset counts as EOF); returns (bytes, seconds)."""
    t0 = time.time()
    got = b""
    k.settimeout(limit_s)
    try:
        while True:
            chunk = k.recv(65536)
            if not chunk:
                break
            got += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return got, time.time() - t0


def request_on(k, path="/health/live"):
    """One keep-alive GET on a raw socket; returns the status line."""
    k.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = k.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer; got %r" % got)
        got += chunk
    head, _, rest = got.partition(b"\r\n\r\n")
    length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0]
                 .split(b":")[1])
    while len(rest) < length:
        rest += k.recv(4096)
    return head.split(b"\r\n")[0].decode()


def parse(got):
    """A raw answer as (status, {lower-case header: value}, JSON body); the body must be JSON."""
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in
                   (ln.partition(":") for ln in lines[1:]))
    check(headers.get("content-type", "").startswith("application/json"), got[:400])
    check(headers.get("x-request-id"), "no X-Request-Id: %r" % got[:400])
    check(int(headers.get("content-length", -1)) == len(body), "length: %r" % got[:400])
    return int(lines[0].split()[1]), headers, json.loads(body.decode("utf-8"))


def refused(s, request, status, code):
    """Sends a raw request; the answer is the contract's JSON error and the connection closes."""
    with raw(s) as k:
        try:
            k.sendall(request)
        except (ConnectionResetError, BrokenPipeError):
            pass
        got, secs = read_all(k)
    st, headers, body = parse(got)
    check(st == status and body["error"]["code"] == code, "want %d %s: %r" % (status, code, got))
    check(headers.get("connection") == "close", got[:300])
    check(secs < 3, "closed after %.1fs" % secs)
    return body["error"]


def quiet(s):
    """Closes the harness's kept-alive connection, so that tests count theirs alone."""
    if s.conn:
        s.conn.close()
        s.conn = None
    time.sleep(0.3)


def test_huge_content_length_refused_before_the_body():
    s = Server(HTTP_MAX_BODY=1024)
    try:
        for n in (1025, 10 ** 12, 2 ** 63 - 1):
            with raw(s) as k:
                k.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % n)
                # No body byte is sent: the answer comes anyway, and the connection closes.
                got, secs = read_all(k)
            check(got.startswith(b"HTTP/1.1 413 "), got[:200])
            check(b"payload_too_large" in got and b"Connection: close" in got, got)
            check(secs < 3, "took %.1fs" % secs)
        # Past what a 64-bit length holds: libmicrohttpd itself answers 413 (HTML) and closes.
        with raw(s) as k:
            k.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 99999999999999999999999\r\n\r\n")
            got, secs = read_all(k)
        check(got.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in got, got[:200])
        check(secs < 3, "took %.1fs" % secs)
        # A body past the limit without a Content-Length (chunked): 413 as well.
        with raw(s) as k:
            k.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            for _ in range(3):
                k.sendall(b"400\r\n" + b" " * 1024 + b"\r\n")
            k.sendall(b"0\r\n\r\n")
            got, _ = read_all(k)
        check(got.startswith(b"HTTP/1.1 413 "), got[:200])
        check_ok(s.get("/health/live"))
    finally:
        s.stop()


def chunked_head(path=b"/query"):
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Request-Id: chunky\r\nTransfer-Encoding: chunked\r\n\r\n")


CHUNK = b"4000\r\n" + b" " * 0x4000 + b"\r\n"


def send_reading(k, total):
    """Sends a chunked body of total bytes while reading; returns (answer, bytes sent by then)."""
    k.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # "sent" is near "received"
    k.setblocking(False)
    pending, sent, got, answered_at = b"", 0, b"", None
    deadline = time.time() + 20
    while time.time() < deadline:
        if not pending and sent < total:
            pending = CHUNK if sent + len(CHUNK) < total else CHUNK + b"0\r\n\r\n"
        blocked = not pending
        if pending:
            try:
                n = k.send(pending)
                sent += n
                pending = pending[n:]
            except BlockingIOError:
                blocked = True
            except (BrokenPipeError, ConnectionResetError):
                pending, total, blocked = b"", sent, True
        try:
            chunk = k.recv(65536)
            if not chunk:
                break
            got += chunk
            if answered_at is None:
                answered_at = sent
        except BlockingIOError:
            if blocked:
                select.select([k], [k] if pending else [], [], 0.05)
        except ConnectionResetError:
            break
    return got, answered_at


def test_chunked_body_over_the_limit_is_answered():
    """413 JSON while the client still sends; the rest is read and dropped, within bounds."""
    s = Server(LOG_FORMAT="json")  # HTTP_MAX_BODY 1 MiB
    try:
        # A client that reads while it sends gets the answer long before its 10 MB are out.
        with raw(s) as k:
            k.sendall(chunked_head())
            got, at = send_reading(k, 10 * 1024 * 1024)
        st, headers, body = parse(got)
        check(st == 413 and body["error"]["code"] == "payload_too_large", got[:400])
        check(headers["connection"] == "close" and headers["x-request-id"] == "chunky", headers)
        check(at is not None and at < 5 * 1024 * 1024, "answered after %r bytes" % at)
        # One that sends everything first, then reads: the body is drained, the answer waits.
        with raw(s, timeout=20) as k:
            k.sendall(chunked_head() + CHUNK * 640 + b"0\r\n\r\n")  # 10 MiB
            got, _ = read_all(k)
        st, _, body = parse(got)
        check(st == 413 and body["error"]["code"] == "payload_too_large", got[:400])
        # Past LINGER_BYTES (16 MiB) the connection is cut, whatever the client still sends.
        with raw(s, timeout=20) as k:
            k.sendall(chunked_head())
            sent = 0
            try:
                for _ in range(64 * 64):  # 64 MiB
                    k.sendall(CHUNK)
                    sent += len(CHUNK)
            except (BrokenPipeError, ConnectionResetError):
                pass
        check(sent < 32 * 1024 * 1024, "still reading after %d bytes" % sent)
        # A client that stops sending after the answer is cut after LINGER_S (5 s).
        with raw(s) as k:
            k.sendall(chunked_head() + CHUNK * 80)
            got, secs = read_all(k, limit_s=15)
        check(parse(got)[0] == 413 and 4 < secs < 8, "cut after %.1fs: %r" % (secs, got[:100]))
        # An unknown path with a body past HTTP_MAX_BODY: its 404 goes out early the same way.
        with raw(s) as k:
            k.sendall(chunked_head(b"/nope"))
            got, at = send_reading(k, 4 * 1024 * 1024)
        check(parse(got)[0] == 404 and at < 4 * 1024 * 1024, got[:300])
        check_ok(s.get("/health/live"))
        time.sleep(0.2)
        answers = [ln for ln in s.lines if '"request_id":"chunky"' in ln]
        check(len(answers) == 5 and all('"status":413' in ln for ln in answers[:4]), answers)
        check(not any('"warn"' in ln and "internal error" in ln for ln in s.lines), s.lines)
    finally:
        s.stop()


def test_header_too_large_is_431():
    """A request head over 16 KiB: the contract's JSON 431, and the connection closes."""
    s = Server()
    try:
        r = s.get("/health/live", headers={"X-Fine": "a" * 8000})
        check_ok(r, "an 8 KB header")
        e = refused(s, b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 +
                    b"\r\n\r\n", 431, "header_too_large")
        check("16384" in e["message"], e)
        refused(s, b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 2\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n{}", 431,
                "header_too_large")
        # Many small headers add up the same way, and so does a long query string.
        refused(s, b"GET /health/live HTTP/1.1\r\nHost: x\r\n" +
                b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 90) for i in range(175)) + b"\r\n",
                431, "header_too_large")
        refused(s, b"GET /health/live?q=" + b"c" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                431, "header_too_large")
        # Past libmicrohttpd's own connection buffer (32 KiB) it answers by itself, HTML.
        with raw(s) as k:
            try:
                k.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 +
                          b"\r\n\r\n")
            except (ConnectionResetError, BrokenPipeError):
                pass  # closed while we were still sending: the answer was already queued
            got, _ = read_all(k)
        check(got.startswith(b"HTTP/1.1 431 ") and b"Connection: close" in got, got[:300])
        check_ok(s.get("/health/live"))
    finally:
        s.stop()


def test_request_smuggling_refused():
    """Both Content-Length and Transfer-Encoding, or %00 in the path: 400 JSON, then closed."""
    s = Server()
    try:
        for path in (b"/query", b"/health/live"):
            e = refused(s, b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 5\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_request")
            check("Transfer-Encoding" in e["message"], e)
        refused(s, b"GET /health/live HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Length: 0\r\n\r\n0\r\n\r\n", 400, "invalid_request")
        # Several of them (libmicrohttpd takes the first), or a coding it cannot frame.
        q = b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        for framing in (b"Content-Length: 25\r\nContent-Length: 5\r\n",
                        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
                        b"Transfer-Encoding: gzip\r\n", b"Transfer-Encoding: chunked, identity\r\n"):
            e = refused(s, q + framing + b"\r\n" + b'{"sql": "SELECT 1 AS one"}', 400,
                        "invalid_request")
            check("Transfer-Encoding" in e["message"], e)
        # Decoded, the NUL would end the path early: /health/live%00x would be /health/live.
        for path in (b"/health/live%00x", b"/health/live%00", b"/query%00/x?a=1"):
            e = refused(s, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400,
                        "invalid_request")
            check("%00" in e["message"], e)
        # Other escapes still decode.
        check_ok(s.get("/health/%6Cive"))
        with raw(s) as k:
            body = b'{"sql": "SELECT 1 AS one"}'
            k.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n"
                      b"0\r\n\r\n" % (len(body), body))
            st, _, res = parse(read_all(k)[0])
        check(st == 200 and res["rows"] == [{"one": 1}], res)
    finally:
        s.stop()


def test_connection_flood_past_the_limit():
    n = 6
    s = Server(HTTP_MAX_CONNECTIONS=n)
    quiet(s)
    first = [raw(s) for _ in range(n)]
    extra = []
    try:
        for k in first:
            check(request_on(k) == "HTTP/1.1 200 OK", "one of the first %d" % n)
        t0 = time.time()
        extra = [raw(s) for _ in range(10)]
        for k in extra:
            try:
                k.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            except (ConnectionResetError, BrokenPipeError):
                pass
            got, _ = read_all(k, limit_s=5)
            check(got == b"", "an extra connection was answered: %r" % got[:100])
        check(time.time() - t0 < 3, "the extra ones were not refused at once")
        # The first ones still work, on the same connections.
        for k in first:
            check(request_on(k, "/pool") == "HTTP/1.1 200 OK", "kept connection after the flood")
        check(any("HTTP_MAX_CONNECTIONS" in line for line in s.lines), s.log_excerpt())
    finally:
        for k in first + extra:
            k.close()
    time.sleep(0.3)
    try:
        # Slots are freed: the service serves normally again, up to the limit.
        again = [raw(s) for _ in range(n)]
        for k in again:
            check(request_on(k) == "HTTP/1.1 200 OK", "after the flood")
            k.close()
    finally:
        s.stop()


def cut_after(k, send_one_byte):
    """Sends a byte a second until the server closes; returns the seconds it took."""
    t0 = time.time()
    while time.time() - t0 < 10:
        try:
            send_one_byte()
        except (ConnectionResetError, BrokenPipeError):
            return time.time() - t0
        r, _, _ = select.select([k], [], [], 1.0)
        if r:
            try:
                if k.recv(4096) == b"":
                    return time.time() - t0
            except ConnectionResetError:
                return time.time() - t0
    raise AssertionError("not cut within 10 s")


def test_slowloris_is_cut():
    s = Server(HTTP_IDLE_TIMEOUT=IDLE)
    try:
        # Headers, a byte a second: each byte resets an inactivity timer, but not the deadline.
        with raw(s) as k:
            head = iter(b"GET /health/live HTTP/1.1\r\nHost: " + b"x" * 100)
            secs = cut_after(k, lambda: k.send(bytes([next(head)])))
        check(IDLE - 0.5 < secs < IDLE + 1.5, "cut after %.1fs" % secs)
        # A body, a byte a second (slow POST): the same deadline.
        with raw(s) as k:
            k.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n")
            secs = cut_after(k, lambda: k.send(b" "))
        check(IDLE - 0.5 < secs < IDLE + 1.5, "slow body cut after %.1fs" % secs)
        # A connection that sends nothing, and an idle kept-alive one.
        with raw(s) as k:
            _, secs = read_all(k)
            check(IDLE - 0.5 < secs < IDLE + 1.5, "silent connection cut after %.1fs" % secs)
        with raw(s) as k:
            check(request_on(k) == "HTTP/1.1 200 OK", "kept-alive")
            _, secs = read_all(k)
            check(IDLE - 0.5 < secs < IDLE + 1.5, "idle keep-alive cut after %.1fs" % secs)
        check_ok(s.get("/health/live"))
    finally:
        s.stop()


def test_slow_statement_is_not_cut():
    """The deadline covers the request's arrival, not the time the database takes."""
    s = Server(HTTP_IDLE_TIMEOUT=IDLE)
    try:
        t0 = time.time()
        r = s.request("POST", "/query", body={"sql": "SELECT pg_sleep(%g) AS s" % (IDLE + 1.5)},
                      conn=s.connection())
        check_ok(r, "a statement longer than HTTP_IDLE_TIMEOUT")
        check(time.time() - t0 > IDLE + 1, "too fast to tell")
        # Two clients at once, one of them slow: the fast one is not held up.
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("slow", s.request(
            "POST", "/query", body={"sql": "SELECT pg_sleep(%g)" % (IDLE + 0.5)},
            conn=s.connection())))
        t.start()
        check_ok(s.get("/health/live"))
        t.join()
        check_ok(out["slow"], "the slow one")
    finally:
        s.stop()


def test_result_caps_stop_a_huge_result():
    """Exists since the start (MAX_RESULT_ROWS / MAX_RESULT_BYTES, 422); kept as an attack too."""
    s = Server(MAX_RESULT_ROWS=1000, MAX_RESULT_BYTES=100000)
    try:
        check_error(s.post("/query", {"sql": "SELECT a, b FROM generate_series(1, 3000) a, "
                                             "generate_series(1, 3000) b"}),
                    422, "result_too_large")
        check_error(s.post("/query", {"sql": "SELECT repeat('x', 200000) AS big"}),
                    422, "result_too_large")
        check_ok(s.get("/health/live"))
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(dict(globals()))

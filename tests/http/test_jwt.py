"""Bearer tokens (JWT): signatures and the attacks on them, exp/nbf/aud, roles, scopes, claims
under a real row-level security policy, nothing of one request's claims in the next, JWKS by kid
and SIGHUP. Tokens are minted here: HS* with hmac, RS256/ES256 with the openssl command."""
import base64
import ctypes
import ctypes.util
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, binary, check, check_error, check_ok,  # noqa: E402
                       database_url, run_tests)

PID = os.getpid()
NOTES = "t_jwt_notes_%d" % PID
USER, ANON = "qgt_jwt_user_%d" % PID, "qgt_jwt_anon_%d" % PID
PW = "jwt-pw-%d" % PID
SECRET = "jwt-test-secret-%d-0123456789abcdefghij" % PID
AUD = "querygate-test"
KEY = "jwt-test-api-key-%d-0123456789" % PID  # read,write on the USER role


# ---- minting ----------------------------------------------------------------

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args, data=None):
    p = subprocess.run(["openssl"] + list(args), input=data, capture_output=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (args, p.stderr.decode()))
    return p.stdout


def der_to_raw(der, size=32):
    """An ECDSA signature from DER (what openssl writes) to JWS's r || s."""
    i = 3 if der[1] & 0x80 else 2
    out = b""
    for _ in range(2):
        n = der[i + 1]
        out += int.from_bytes(der[i + 2:i + 2 + n], "big").to_bytes(size, "big")
        i += 2 + n
    return out


def mint(claims, alg="HS256", key=SECRET, kid=None, header=None):
    """A token: key is the HMAC secret (str/bytes) for HS*, a private key file for RS256/ES256."""
    h = {"alg": alg, "typ": "JWT"}
    if kid:
        h["kid"] = kid
    h.update(header or {})
    signing_input = b64(json.dumps(h).encode()) + "." + b64(json.dumps(claims).encode())
    data = signing_input.encode()
    if alg == "none":
        return signing_input + "."
    if alg.startswith("HS"):
        k = key.encode() if isinstance(key, str) else key
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        return signing_input + "." + b64(hmac.new(k, data, digest).digest())
    sig = openssl("dgst", "-sha256", "-sign", key, data=data)
    return signing_input + "." + b64(der_to_raw(sig) if alg == "ES256" else sig)


def claims(sub="alice", role=None, **more):
    c = {"sub": sub, "aud": AUD, "exp": int(time.time()) + 300, "iat": int(time.time())}
    if role is not None:
        c["role"] = role
    c.update(more)
    return c


def bearer(token):
    return {"Authorization": "Bearer " + token}


def new_key(path, kind):
    if kind == "rsa":
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
    else:
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    openssl("pkey", "-in", path, "-pubout", "-out", path + ".pub")
    return path


def jwk(path, kid):
    """The public JWK of a private key file, from openssl's text dump."""
    text = openssl("pkey", "-in", path, "-noout", "-text").decode()
    if "ASN1 OID: prime256v1" in text:
        pub = bytes.fromhex("".join(text.split("pub:")[1].split("ASN1")[0].split()).replace(":", ""))
        return {"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": b64(pub[1:33]), "y": b64(pub[33:65])}
    mod = text.split("modulus:")[1].split("publicExponent")[0]
    n = bytes.fromhex("".join(mod.split()).replace(":", "")).lstrip(b"\0")
    e = int(text.split("publicExponent:")[1].split()[0])
    return {"kty": "RSA", "kid": kid, "use": "sig", "n": b64(n),
            "e": b64(e.to_bytes((e.bit_length() + 7) // 8, "big"))}


def write_jwks(path, *keys):
    doc = {"keys": [{"kty": "oct", "kid": "hmac-skipped", "k": b64(b"x" * 32)}] + list(keys)}
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.replace(path + ".tmp", path)


# ---- setup ------------------------------------------------------------------

class State:
    pass


def setup():
    database_url()
    st = State()
    st.dir = tempfile.mkdtemp(prefix="qgt-jwt-")
    d = st.dir
    st.rsa, st.ec, st.rsa3 = (new_key(os.path.join(d, n), k) for n, k in
                              (("rsa1", "rsa"), ("ec2", "ec"), ("rsa3", "rsa")))
    st.other_rsa = new_key(os.path.join(d, "other"), "rsa")
    st.pem_rsa = new_key(os.path.join(d, "pem"), "rsa")
    st.jwks = os.path.join(d, "jwks.json")
    write_jwks(st.jwks, jwk(st.rsa, "k1"), jwk(st.ec, "k2"))
    admin_sql(
        "".join("DO $$BEGIN CREATE ROLE {r} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; "
                "END$$; ALTER ROLE {r} PASSWORD '{pw}'; ".format(r=r, pw=PW) for r in (USER, ANON)) +
        "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (owner text, body text); "
        "ALTER TABLE {t} OWNER TO qg; ALTER TABLE {t} ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY own ON {t} USING (owner = current_setting('request.jwt.claims', true)::json->>'sub') "
        "WITH CHECK (owner = current_setting('request.jwt.claims', true)::json->>'sub'); "
        "GRANT SELECT, INSERT, UPDATE ON {t} TO {u}; GRANT SELECT ON {t} TO {a}; "
        "INSERT INTO {t} VALUES ('alice', 'a1'), ('alice', 'a2'), ('bob', 'b1')"
        .format(t=NOTES, u=USER, a=ANON))
    u = urllib.parse.urlparse(database_url())
    passfile = os.path.join(d, "pgpass")
    with open(passfile, "w") as f:
        for r in (USER, ANON):
            f.write("%s:%s:*:%s:%s\n" % (u.hostname, u.port, r, PW))
    os.chmod(passfile, 0o600)
    st.passfile = passfile
    queries = os.path.join(d, "queries")
    os.mkdir(queries)
    with open(os.path.join(queries, "my-notes.sql"), "w") as f:
        f.write("SELECT body FROM %s ORDER BY body\n" % NOTES)
    with open(os.path.join(queries, "add-note.sql"), "w") as f:
        f.write("-- querygate: write\nINSERT INTO %s (owner, body) VALUES "
                "(current_setting('request.jwt.claims', true)::json ->> 'sub', :body)\n" % NOTES)
    # One connection per pool: every request of a role lands on the connection the last one used.
    st.s = Server(AUTH="keys", API_KEYS="%s read,write %s" % (KEY, USER), JWT_SECRET=SECRET,
                  JWT_JWKS_FILE=st.jwks, JWT_AUDIENCE=AUD, PGPASSFILE=passfile,
                  DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, LOG_LEVEL="debug", QUERIES_DIR=queries)
    # A public key alone, a dotted role claim and a default role.
    st.s2 = Server(AUTH="keys", JWT_PUBLIC_KEY_FILE=st.pem_rsa + ".pub",
                   JWT_ROLE_CLAIM="app_metadata.role", JWT_DEFAULT_ROLE=ANON, PGPASSFILE=passfile)
    return st


def teardown(st):
    st.s.stop()
    st.s2.stop()
    admin_sql("DROP TABLE IF EXISTS {t}; DROP ROLE IF EXISTS {u}; DROP ROLE IF EXISTS {a}"
              .format(t=NOTES, u=USER, a=ANON))


def query(s, token, sql, path="/query"):
    return s.post(path, {"sql": sql}, headers=bearer(token))


def refused(s, token, reason, what):
    r = query(s, token, "SELECT 1")
    e = check_error(r, 401, "unauthorized", what)
    check(r.header("www-authenticate") == 'Bearer error="invalid_token"', (what, r.headers))
    check(reason in e["message"], "%s: want %r in %r" % (what, reason, e["message"]))
    sig = token.split(".")[2]
    check(token not in r.raw.decode() and (not sig or sig not in r.raw.decode()), (what, r))
    return e


# ---- tests ------------------------------------------------------------------

def test_rls_each_token_sees_its_own_notes(st):
    alice = mint(claims("alice", USER))
    rows = check_ok(query(st.s, alice, "SELECT owner, body FROM %s ORDER BY body" % NOTES))["rows"]
    check(rows == [{"owner": "alice", "body": "a1"}, {"owner": "alice", "body": "a2"}], rows)
    bob = mint(claims("bob", USER), "RS256", st.rsa, kid="k1")
    rows = check_ok(query(st.s, bob, "SELECT owner, body FROM %s" % NOTES))["rows"]
    check(rows == [{"owner": "bob", "body": "b1"}], rows)
    # The claims, as SQL sees them, and the role the pool logged in as.
    r = check_ok(query(st.s, alice, "SELECT current_user AS u, current_setting('request.jwt."
                                    "claims', true)::json->>'aud' AS aud"))
    check(r["rows"] == [{"u": USER, "aud": AUD}], r)


def test_bob_cannot_insert_a_note_for_alice(st):
    bob = mint(claims("bob", USER), "ES256", st.ec, kid="k2")
    r = st.s.post("/insert", {"sql": "INSERT INTO %s VALUES ('alice', 'forged')" % NOTES},
                  headers=bearer(bob))
    e = check_error(r, 403, "forbidden", "RLS WITH CHECK")
    check(e.get("sqlstate") == "42501" and "row-level security" in e["message"], e)
    check_ok(st.s.post("/insert", {"sql": "INSERT INTO %s VALUES ('bob', 'b2')" % NOTES},
                       headers=bearer(bob)))
    check(admin_sql("SELECT string_agg(owner || ':' || body, ',' ORDER BY body) FROM %s "
                    "WHERE body IN ('forged', 'b2')" % NOTES) == "bob:b2", "stored")


def test_refused_tokens(st):
    s = st.s
    now = int(time.time())
    refused(s, mint(claims("alice", USER), key="another-secret-of-40-bytes-0123456789ab"),
            "signature does not verify", "HS256 with another secret")
    refused(s, mint(claims("alice", USER), "RS256", st.other_rsa, kid="k1"),
            "signature does not verify", "RS256 with another key")
    refused(s, mint(claims("alice", USER, exp=now - 100)), "expired", "expired")
    check_ok(query(s, mint(claims("alice", USER, exp=now - 10)), "SELECT 1"))  # JWT_LEEWAY_S
    refused(s, mint(claims("alice", USER, nbf=now + 100)), "nbf", "not yet valid")
    refused(s, mint(claims("alice", USER, aud="someone-else")), "JWT_AUDIENCE", "wrong aud")
    check_ok(query(s, mint(claims("alice", USER, aud=["x", AUD])), "SELECT 1"))
    no_aud = claims("alice", USER)
    del no_aud["aud"]
    refused(s, mint(no_aud), "JWT_AUDIENCE", "no aud")
    refused(s, mint(claims("alice", USER), "none"), "unsigned", "alg none")
    refused(s, mint(claims("alice", USER), "HS256", header={"alg": "None"}), "unsigned", "alg None")
    # alg none with the signature of a real key left on: still unsigned.
    signed = mint(claims("alice", USER)).rsplit(".", 1)[1]
    refused(s, mint(claims("alice", USER), "none") + signed, "unsigned", "alg none, signature")
    refused(s, mint(claims("alice", USER), "HS256", header={"alg": "PS256"}), "not accepted",
            "unknown alg")
    refused(s, mint(claims("alice", USER), "RS256", st.rsa, kid="nope"), "kid", "unknown kid")
    # Algorithm confusion: HMAC keyed with the public key's PEM text, naming its kid.
    with open(st.rsa + ".pub", "rb") as f:
        pem = f.read()
    refused(s, mint(claims("alice", USER), "HS256", pem, kid="k1"), "signature does not verify",
            "HS256 keyed with the JWKS RSA key")


def test_algorithm_confusion_against_a_public_key(st):
    """JWT_PUBLIC_KEY_FILE alone: an HS256 token keyed with its PEM is refused, though
    libjwt itself, handed that key, would accept it."""
    with open(st.pem_rsa + ".pub", "rb") as f:
        pem = f.read()
    good = mint({"sub": "carol", "app_metadata": {"role": USER}}, "RS256", st.pem_rsa)
    check(check_ok(query(st.s2, good, "SELECT current_user AS u"))["rows"] == [{"u": USER}],
          "RS256 with the PEM key, role from app_metadata.role")
    forged = mint({"sub": "carol", "app_metadata": {"role": USER}}, "HS256", pem)
    refused(st.s2, forged, "JWT_SECRET", "HS256 keyed with the PEM public key")
    refused(st.s2, mint({"sub": "carol"}, "none"), "unsigned", "alg none")
    name = ctypes.util.find_library("jwt-gnutls")
    if not name:
        print("  (libjwt-gnutls not found by ctypes: its own behaviour not shown)")
        return
    lib = ctypes.CDLL(name)
    lib.jwt_decode.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_char_p,
                               ctypes.c_int]
    lib.jwt_free.argtypes = [ctypes.c_void_p]

    def decode(token, key):
        handle = ctypes.c_void_p()
        rc = lib.jwt_decode(ctypes.byref(handle), token.encode(), key, len(key) if key else 0)
        lib.jwt_free(handle)
        return rc

    check(decode(forged, pem) == 0, "libjwt refuses the confused token by itself now: the "
                                    "alg check in jwt_check.c may be simplified")
    # alg none: refused when a key is given (jwt_check.c always gives one), taken without.
    unsigned = mint({"sub": "carol"}, "none")
    check(decode(unsigned, pem) != 0 and decode(unsigned, None) == 0, "libjwt and alg none")


def test_default_role_and_missing_role(st):
    anon = mint({"sub": "dave"}, "RS256", st.pem_rsa)
    r = check_ok(query(st.s2, anon, "SELECT current_user AS u, count(*) AS n FROM %s" % NOTES))
    check(r["rows"] == [{"u": ANON, "n": 0}], r)  # the policy: dave owns nothing
    r = query(st.s, mint(claims("alice")), "SELECT 1")
    e = check_error(r, 403, "forbidden", "no role claim, no default")
    check("JWT_DEFAULT_ROLE" in e["message"], e)
    e = check_error(query(st.s, mint(claims("alice", [USER])), "SELECT 1"), 403, "forbidden",
                    "role claim is an array")
    check("not a string" in e["message"], e)
    e = check_error(query(st.s, mint(claims("alice", "x; DROP TABLE y")), "SELECT 1"), 403,
                    "forbidden", "role claim not a role name")


def test_scopes(st):
    s = st.s
    upd = {"sql": "UPDATE %s SET body = body WHERE false" % NOTES}
    reader = mint(claims("alice", USER, scope="openid read"))
    check_ok(query(s, reader, "SELECT 1"))
    r = s.post("/update", upd, headers=bearer(reader))
    check_error(r, 403, "forbidden", "scope read, /update")
    check(r.header("www-authenticate") == 'Bearer error="insufficient_scope", scope="write"', r.headers)
    check_ok(s.post("/update", upd, headers=bearer(mint(claims("alice", USER, scope="read write")))))
    default = mint(claims("alice", USER))  # JWT_DEFAULT_SCOPES: read,write, never admin
    check_ok(s.post("/update", upd, headers=bearer(default)))
    check_error(s.get("/pool", headers=bearer(default)), 403, "forbidden", "admin not implied")
    check_error(query(s, mint(claims("alice", USER, scope="openid profile")), "SELECT 1"), 403,
                "forbidden", "scope without read")
    refused(s, mint(claims("alice", USER, scope=["read"])), "scope", "scope as an array")


def test_named_queries_see_the_claims(st):
    """A token with the scope named: its named queries run under RLS with its claims; raw SQL not."""
    s = st.s
    carol = mint(claims("carol", USER, scope="named"))
    r = s.post("/queries/add-note", {"params": {"body": "c1"}}, headers=bearer(carol))
    check(check_ok(r)["affected_rows"] == 1, r)
    rows = check_ok(s.post("/queries/my-notes", {}, headers=bearer(carol)))["rows"]
    check(rows == [{"body": "c1"}], rows)
    alice = mint(claims("alice", USER, scope="named"))
    rows = check_ok(s.post("/queries/my-notes", {}, headers=bearer(alice)))["rows"]
    check([r["body"] for r in rows] == ["a1", "a2"], rows)
    check_error(query(s, carol, "SELECT 1"), 403, "forbidden", "scope named, raw SQL")


def test_nothing_of_one_requests_claims_in_the_next(st):
    """Alternating tokens and an API key of the same role on its one-connection pool."""
    s = st.s
    sql = "SELECT pg_backend_pid() AS pid, current_setting('request.jwt.claims', true) AS c"
    pids = set()
    for i in range(3):
        for who, path in (("alice", "/query"), (None, "/query"), ("bob", "/transaction"),
                          (None, "/transaction")):
            token = mint(claims(who, USER, n=i)) if who else KEY
            if path == "/query":
                r = check_ok(query(s, token, sql))["rows"][0]
            else:
                r = check_ok(s.post("/transaction", {"statements": [{"sql": sql}]},
                                    headers=bearer(token)))["results"][0]["rows"][0]
            pids.add(r["pid"])
            if who:
                check(json.loads(r["c"])["sub"] == who and json.loads(r["c"])["n"] == i, r)
            else:
                check(r["c"] in (None, ""), "an API key sees claims: %r" % r)
    check(len(pids) == 1, "not one connection: %s" % pids)
    # A session-level set_config by a caller does not survive either.
    check_ok(query(s, KEY, "SELECT set_config('request.jwt.claims', '{\"sub\":\"alice\"}', false)"))
    check(check_ok(query(s, KEY, sql))["rows"][0]["c"] in (None, ""), "session setting kept")


def test_jwks_kid_and_sighup(st):
    s = st.s
    check_ok(query(s, mint(claims("alice", USER), "ES256", st.ec, kid="k2"), "SELECT 1"))
    new = mint(claims("alice", USER), "RS256", st.rsa3, kid="k3")
    refused(s, new, "kid", "k3 before SIGHUP")
    write_jwks(st.jwks, jwk(st.rsa, "k1"), jwk(st.ec, "k2"), jwk(st.rsa3, "k3"))
    n = len(s.lines)
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while not any("JWT_JWKS_FILE reloaded" in ln for ln in s.lines[n:]) and time.time() < deadline:
        time.sleep(0.05)
    check(any("JWT_JWKS_FILE reloaded; 3 keys" in ln for ln in s.lines[n:]), s.lines[n:])
    check_ok(query(s, new, "SELECT 1"))
    # A bad file: the old keys stay.
    with open(st.jwks, "w") as f:
        f.write('{"keys": [{"kty": "RSA", "kid": "k9", "n": "!!", "e": "AQAB"}]}')
    n = len(s.lines)
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while not any("not reloaded" in ln for ln in s.lines[n:]) and time.time() < deadline:
        time.sleep(0.05)
    check(any("JWT_JWKS_FILE not reloaded" in ln and "k9" in ln for ln in s.lines[n:]), s.lines[n:])
    check_ok(query(s, new, "SELECT 1"))


def test_api_keys_still_work_and_tokens_never_logged(st):
    s = st.s
    check_ok(query(s, KEY, "SELECT 1"))
    check_error(query(s, KEY + "x", "SELECT 1"), 401, "unauthorized", "wrong key")
    log = "".join(s.lines)
    check(SECRET not in log, "JWT_SECRET in the log")
    check("JWT_SECRET=***" in log, "describe shows JWT_SECRET")
    check("token accepted: sub \"alice\", kid \"k2\"" in log, "debug line about sub and kid")
    # No token (nor its signature) in the log: the signatures are unique per token.
    for ln in s.lines:
        for part in ln.split():
            check(part.count(".") < 2 or not part.startswith("eyJ"), ln)
    with open("/proc/%d/environ" % s.proc.pid, "rb") as f:
        check(SECRET.encode() not in f.read(), "JWT_SECRET in /proc/PID/environ")


def run_binary(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "API_KEYS", "AUTH"))}
    env.update({"DATABASE_URL": database_url(), "PORT": "0", "HOST": "0.0.0.0"})
    env.update(env_extra)
    return subprocess.run([binary()], env=env, capture_output=True, text=True, timeout=10)


def test_startup_errors(st):
    short = "short-secret-%d" % PID
    r = run_binary({"JWT_SECRET": short})
    check(r.returncode == 2 and "JWT_SECRET" in r.stderr and "32 bytes" in r.stderr and
          short not in r.stderr, (r.returncode, r.stderr))
    bad = os.path.join(st.dir, "bad.pem")
    with open(bad, "w") as f:
        f.write("not a key\n")
    r = run_binary({"JWT_PUBLIC_KEY_FILE": bad})
    check(r.returncode == 2 and bad in r.stderr and "PEM" in r.stderr, r.stderr)
    empty = os.path.join(st.dir, "empty.json")
    with open(empty, "w") as f:
        f.write('{"keys": [{"kty": "oct", "k": "AAAA"}]}')
    r = run_binary({"JWT_JWKS_FILE": empty})
    check(r.returncode == 2 and "no RS256" in r.stderr, r.stderr)
    r = run_binary({"JWT_SECRET": SECRET, "JWT_DEFAULT_SCOPES": "read,sudo"})
    check(r.returncode == 2 and "JWT_DEFAULT_SCOPES" in r.stderr, r.stderr)
    # A token key alone is authentication enough for a HOST that is not loopback.
    s = Server(HOST="0.0.0.0", AUTH="keys", JWT_SECRET=SECRET, JWT_DEFAULT_ROLE=USER,
               PGPASSFILE=st.passfile)
    try:
        check_error(s.post("/query", {"sql": "SELECT 1"}), 401, "unauthorized", "no token")
        check_ok(s.post("/query", {"sql": "SELECT 1"}, headers=bearer(mint({"sub": "x"}))))
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

"""openapi/openapi.yaml: lint it (redocly, when npx is there) and check real answers against it."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, check, database_url, node_major, run_tests, skip,  # noqa: E402
                       source_dir)

try:
    import yaml
except ImportError:
    skip("python3-yaml is not installed (scripts/deps test installs it)")

SPEC_PATH = os.path.join(source_dir(), "openapi", "openapi.yaml")
REDOCLY = "@redocly/cli@2.77.0"  # the last line that still runs on Node.js 20
T = "t_openapi_%d" % os.getpid()


class Invalid(Exception):
    pass


def resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        check(ref.startswith("#/"), "only local refs: %s" % ref)
        node = spec
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def type_ok(t, v):
    return {
        "null": v is None,
        "boolean": isinstance(v, bool),
        "integer": isinstance(v, int) and not isinstance(v, bool),
        "number": isinstance(v, (int, float)) and not isinstance(v, bool),
        "string": isinstance(v, str),
        "array": isinstance(v, list),
        "object": isinstance(v, dict),
    }[t]


def validate(spec, schema, v, path="$"):
    """A small JSON Schema (2020-12 subset) validator: raises Invalid naming the place."""
    schema = resolve(spec, schema)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(type_ok(t, v) for t in types):
            raise Invalid("%s: %r is not of type %s" % (path, v, types))
    if "const" in schema and v != schema["const"]:
        raise Invalid("%s: %r != %r" % (path, v, schema["const"]))
    if "enum" in schema and v not in schema["enum"]:
        raise Invalid("%s: %r not in %r" % (path, v, schema["enum"]))
    for key in ("oneOf", "anyOf"):
        if key in schema:
            ok = 0
            for sub in schema[key]:
                try:
                    validate(spec, sub, v, path)
                    ok += 1
                except Invalid:
                    pass
            if ok == 0 or (key == "oneOf" and ok > 1):
                raise Invalid("%s: %d of %s match" % (path, ok, key))
    if isinstance(v, str):
        if len(v) < schema.get("minLength", 0) or len(v) > schema.get("maxLength", 1 << 60):
            raise Invalid("%s: length of %r" % (path, v))
        if "pattern" in schema and not re.search(schema["pattern"], v):
            raise Invalid("%s: %r does not match %s" % (path, v, schema["pattern"]))
    if type_ok("number", v) and "minimum" in schema and v < schema["minimum"]:
        raise Invalid("%s: %r < %r" % (path, v, schema["minimum"]))
    if isinstance(v, list):
        if len(v) < schema.get("minItems", 0):
            raise Invalid("%s: fewer than %d items" % (path, schema["minItems"]))
        if "items" in schema:
            for i, item in enumerate(v):
                validate(spec, schema["items"], item, "%s[%d]" % (path, i))
    if isinstance(v, dict):
        for k in schema.get("required", []):
            if k not in v:
                raise Invalid("%s: required %r missing" % (path, k))
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k, val in v.items():
            if "propertyNames" in schema:
                validate(spec, schema["propertyNames"], k, "%s.<key %s>" % (path, k))
            if k in props:
                validate(spec, props[k], val, "%s.%s" % (path, k))
            elif extra is False:
                raise Invalid("%s: property %r is not in the schema" % (path, k))
            elif isinstance(extra, dict):
                validate(spec, extra, val, "%s.%s" % (path, k))


def setup():
    database_url()
    with open(SPEC_PATH) as f:
        spec = yaml.safe_load(f)
    admin_sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id serial PRIMARY KEY, name text "
              "UNIQUE); GRANT ALL ON {t} TO qg; GRANT ALL ON SEQUENCE {t}_id_seq TO qg"
              .format(t=T))
    queries = tempfile.mkdtemp(prefix="qgt-openapi-")
    for name, text in (("t_read", "SELECT id, name FROM %s WHERE id <= :n" % T),
                       ("t_write", "-- querygate: write\nINSERT INTO %s (name) VALUES (:n) "
                                   "RETURNING id" % T),
                       ("t_update", "-- querygate: write\nUPDATE %s SET name = name" % T)):
        with open(os.path.join(queries, name + ".sql"), "w") as f:
            f.write(text)
    server = Server(MAX_RESULT_ROWS=5, PG_STATEMENT_TIMEOUT=300, HTTP_MAX_BODY=2048,
                    QUERIES_DIR=queries)
    server.queries_dir = queries
    return spec, server


def teardown(state):
    state[1].stop()
    shutil.rmtree(state[1].queries_dir, ignore_errors=True)
    admin_sql("DROP TABLE IF EXISTS %s" % T)


def test_redocly_lint(state):
    npx = shutil.which("npx")
    if not npx:
        print("  (skipped: npx is not installed; the lint needs Node.js)")
        return
    if node_major() < 20:
        print("  (skipped: %s needs Node.js 20 or later; this one is %d, e.g. Debian 12's 18)"
              % (REDOCLY, node_major()))
        return
    try:
        out = subprocess.run([npx, "--yes", REDOCLY, "lint", SPEC_PATH], capture_output=True,
                             text=True, timeout=180)
    except subprocess.TimeoutExpired:
        print("  (skipped: npx %s took too long; no registry?)" % REDOCLY)
        return
    text = out.stdout + out.stderr
    if out.returncode != 0 and re.search(r"npm (ERR|error)|ENOTFOUND|EAI_AGAIN|ETIMEDOUT", text):
        print("  (skipped: cannot fetch %s: %s)" % (REDOCLY, text.strip()[-200:]))
        return
    check(out.returncode == 0 and "warning" not in text.lower().replace("deprecation warning",
                                                                         ""), text)


def test_request_examples_match_schemas(state):
    spec, _ = state
    bodies = spec["components"]["requestBodies"]
    n = 0
    for body in bodies.values():
        media = body["content"]["application/json"]
        for ex in media.get("examples", {}).values():
            validate(spec, media["schema"], ex["value"])
            n += 1
    check(n >= 3, "examples checked: %d" % n)


def cases():
    """(method, path, body, extra headers) for answers of every documented status."""
    ins = "INSERT INTO %s (name) VALUES (:n) RETURNING id, name" % T
    return [
        ("POST", "/query", {"sql": "SELECT 1 AS a, 'x' AS b"}, {}),
        ("POST", "/query", {"sql": "SELECT nope"}, {}),
        ("POST", "/query", "{", {}),
        ("POST", "/query", {"sql": "DELETE FROM %s" % T}, {}),
        ("POST", "/query", {"sql": "SELECT g FROM generate_series(1, 6) g"}, {}),
        ("POST", "/query", {"sql": "SELECT pg_sleep(1)"}, {}),
        ("POST", "/query", b"x" * 4096, {}),
        ("POST", "/query", b"{}", {"Content-Type": "text/plain"}),
        ("GET", "/query", None, {}),
        ("POST", "/update", {"sql": "UPDATE %s SET name = name" % T}, {}),
        ("POST", "/insert", {"sql": ins, "params": [{"n": "a"}, {"n": "b"}]}, {}),
        ("POST", "/insert", {"sql": ins, "params": {"n": "a"}}, {}),
        ("POST", "/transaction", {"statements": [{"sql": "SELECT 1 AS x"},
                                                 {"sql": "UPDATE %s SET name = name" % T}]}, {}),
        ("POST", "/transaction", {"statements": [{"sql": "SELECT 1"}, {"sql": "SELEC"}]}, {}),
        ("GET", "/health", None, {}),
        ("GET", "/health/ready", None, {}),
        ("GET", "/health/live", None, {}),
        ("GET", "/pool", None, {}),
        ("GET", "/metrics", None, {}),
        ("POST", "/pool", None, {}),
        ("GET", "/openapi.json", None, {}),
        ("GET", "/queries", None, {}),
        ("POST", "/queries/t_read", {"params": {"n": 2}}, {}),
        ("POST", "/queries/t_read", {"params": {}}, {}),
        ("POST", "/queries/t_write", {"params": [{"n": "named-1"}, {"n": "named-2"}]}, {}),
        ("POST", "/queries/t_update", {}, {}),
        ("POST", "/queries/nope", {}, {}),
        ("GET", "/queries/t_read", None, {}),
    ]


def test_answers_match_spec(state):
    spec, s = state
    seen = set()
    for method, path, body, headers in cases():
        r = s.post(path, body, headers=headers) if method == "POST" and body is not None \
            else s.request(method, path, headers=headers)
        item = spec["paths"]["/queries/{name}" if path.startswith("/queries/") else path]
        op = item.get(method.lower())
        if op is None:
            check(r.status == 405, (path, method, r))
            op = next(iter(item.values()))
        resp = op["responses"].get(str(r.status))
        check(resp is not None, "%s %s: status %d is not documented" % (method, path, r.status))
        resp = resolve(spec, resp)
        ctype = r.header("content-type")
        media = resp["content"].get(ctype)
        check(media is not None, "%s %s: %d %s not documented" % (method, path, r.status, ctype))
        if ctype == "application/json":
            try:
                validate(spec, media["schema"], r.json)
            except Invalid as e:
                raise AssertionError("%s %s -> %d: %s\n%r" % (method, path, r.status, e, r))
        for name, h in resp.get("headers", {}).items():
            if resolve(spec, h).get("required"):
                check(r.header(name), "%s %s -> %d: no %s" % (method, path, r.status, name))
        seen.add(r.status)
    want = {200, 400, 403, 404, 405, 413, 415, 422, 504}
    check(want <= seen, "statuses not exercised: %s" % (want - seen))


def test_unknown_path_is_error_schema(state):
    spec, s = state
    r = s.get("/nope")
    check(r.status == 404, r)
    validate(spec, spec["components"]["schemas"]["Error"], r.json)


def test_error_codes_documented(state):
    spec, _ = state
    enum = set(spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
               ["code"]["enum"])
    # The codes with an HTTP status: the core's table (error.c) and the HTTP-only ones (reply.c).
    tables = "".join(open(os.path.join(source_dir(), "src", *p)).read()
                     for p in (("core", "error.c"), ("http", "reply.c")))
    codes = set(re.findall(r'\{"([a-z_]+)", [1-9]\d\d, \d\}', tables))
    check(codes and codes == enum, "error.c and reply.c %s vs spec %s" % (codes ^ enum, enum))


def test_openapi_json_is_the_yaml(state):
    """openapi/openapi.json (compiled in) is current, and GET /openapi.json serves it as is."""
    spec, s = state
    out = subprocess.run([sys.executable, os.path.join(source_dir(), "scripts", "openapi-json"),
                          "--check"], capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, out.stderr)
    with open(os.path.join(source_dir(), "openapi", "openapi.json"), "rb") as f:
        committed = f.read()
    r = s.get("/openapi.json")
    check(r.status == 200 and r.header("content-type") == "application/json", r)
    check(r.raw == committed, "the served document is not openapi/openapi.json")
    check(json.loads(r.raw) == spec, "the served document is not openapi/openapi.yaml")
    check("max-age=" in (r.header("cache-control") or ""), r.headers)
    head = s.request("HEAD", "/openapi.json")
    check(head.status == 200 and head.raw == b"" and head.header("etag") == r.header("etag"),
          head)


def test_openapi_json_revalidates(state):
    _, s = state
    etag = s.get("/openapi.json").header("etag")
    check(re.fullmatch(r'"[0-9a-f]{32}"', etag or ""), "ETag: %r" % etag)
    for inm in (etag, "W/" + etag, '"nope", ' + etag, "*"):
        r = s.get("/openapi.json", headers={"If-None-Match": inm})
        check(r.status == 304 and r.raw == b"" and r.header("etag") == etag, (inm, r))
        check(r.header("cache-control") and r.header("x-request-id"), (inm, r.headers))
    for inm in ('"nope"', etag[:-2] + '"', "W/"):
        check(s.get("/openapi.json", headers={"If-None-Match": inm}).status == 200, inm)
    check(s.get("/health/live", headers={"If-None-Match": "*"}).status == 200, "live: no ETag")


def test_openapi_json_needs_no_key(state):
    spec, _ = state
    key = "k" * 24
    s = Server(AUTH="keys", API_KEYS="%s read" % key)
    try:
        check(s.post("/query", {"sql": "SELECT 1"}).status == 401, "keys are in force")
        for hdrs in ({}, {"Authorization": "Bearer " + "x" * 24}, {"Authorization": "Bearer " + key}):
            r = s.get("/openapi.json", headers=hdrs)
            check(r.status == 200 and r.json == spec, (hdrs, r))
        check(spec["paths"]["/openapi.json"]["get"]["security"] == [], "the spec says it is open")
    finally:
        s.stop()


def test_license_stated(state):
    spec, _ = state
    lic = spec["info"]["license"]
    check(lic.get("identifier") == "Apache-2.0", "info.license: %r" % lic)
    with open(os.path.join(source_dir(), "LICENSE")) as f:
        head = f.read(400)
    check("Apache License" in head and "Version 2.0" in head, "LICENSE: %r" % head[:100])
    with open(os.path.join(source_dir(), "README.md")) as f:
        check("Apache-2.0" in f.read(), "README.md does not name the license")


def test_links_exist(state):
    """Every repository file the spec's text, the README or docs/*.md link to is there."""
    spec, _ = state
    top = source_dir()
    named = set(re.findall(r"[\w./-]+\.(?:md|ya?ml|png)\b", spec["info"]["description"]))
    pages = ["README.md"] + ["docs/" + n for n in os.listdir(os.path.join(top, "docs"))
                             if n.endswith(".md")]
    check(len(pages) >= 4, "README and docs/design, library, performance: %s" % pages)
    for page in pages:
        with open(os.path.join(top, page)) as f:
            links = re.findall(r"\]\(([^)#\s]+)", f.read())
        named |= {os.path.normpath(os.path.join(os.path.dirname(page), m))
                  for m in links if "://" not in m}
    missing = sorted(p for p in named if not os.path.exists(os.path.join(top, p)))
    check(not missing, "linked but not in the repository: %s" % missing)


def test_readme_starts_with_the_two_commands(state):
    with open(os.path.join(source_dir(), "README.md")) as f:
        lines = [line for line in f.read().splitlines() if line.strip()][:4]
    check(lines[1] == "```sh" and lines[2].startswith("bash scripts/run ")
          and lines[3].startswith("bash scripts/test "), lines)


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

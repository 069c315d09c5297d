"""/query, /update, /insert, /transaction: values of every type, batches, transactions, safety."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
from qgharness import (Server, admin_sql, check, check_error, check_ok, database_url,  # noqa: E402
                       run_tests)

T = "t_stmts_%d" % os.getpid()


def setup():
    database_url()
    admin_sql("""
        DROP TABLE IF EXISTS {t}, {t}_num; DROP TYPE IF EXISTS {t}_mood;
        CREATE TYPE {t}_mood AS ENUM ('sad', 'happy');
        CREATE TABLE {t} (id serial PRIMARY KEY, name text, note text);
        CREATE TABLE {t}_num (id serial PRIMARY KEY, n numeric, mood {t}_mood);
        GRANT ALL ON {t}, {t}_num TO qg; GRANT USAGE ON TYPE {t}_mood TO qg;
        GRANT ALL ON SEQUENCE {t}_id_seq, {t}_num_id_seq TO qg;
        INSERT INTO {t} (name) SELECT 'row' || g FROM generate_series(1, 5) g;
    """.format(t=T))
    return Server()


def teardown(s):
    s.stop()
    admin_sql("DROP TABLE IF EXISTS {t}, {t}_num; DROP TYPE IF EXISTS {t}_mood".format(t=T))


def query(s, sql, params=None, **extra):
    body = {"sql": sql}
    if params is not None:
        body["params"] = params
    body.update(extra)
    return check_ok(s.post("/query", body), sql)


def one(s, sql, params=None, **extra):
    """The raw JSON text of the first row, to check exact digits."""
    body = {"sql": sql}
    if params is not None:
        body["params"] = params
    body.update(extra)
    r = s.post("/query", body)
    check(r.status == 200, (sql, r))
    return r.raw.decode()


def test_query_shape(s):
    j = query(s, "SELECT id, name FROM %s WHERE id <= :n ORDER BY id" % T, {"n": 2})
    check(j["row_count"] == 2 and j["rows"] == [{"id": 1, "name": "row1"},
                                                {"id": 2, "name": "row2"}], j)
    check(j["columns"] == [{"name": "id", "type": "int4"}, {"name": "name", "type": "text"}], j)
    j = query(s, "SELECT 1 AS a WHERE false")
    check(j == {"rows": [], "row_count": 0, "columns": [{"name": "a", "type": "int4"}]}, j)


def test_numbers_exact(s):
    raw = one(s, "SELECT 1::int2 a, 2147483647::int4 b, 9223372036854775807::int8 c, "
                 "12345678901234567890.123456789::numeric d, 1.5::float4 e, "
                 "0.1::float8 f, 4294967295::oid g")
    check('"a":1,"b":2147483647,"c":9223372036854775807,"d":12345678901234567890.123456789,'
          '"e":1.5,"f":0.1,"g":4294967295' in raw, raw)
    j = query(s, "SELECT 'NaN'::float8 a, 'Infinity'::float8 b, '-Infinity'::numeric c, "
                 "'NaN'::numeric d")
    check(j["rows"] == [{"a": "NaN", "b": "Infinity", "c": "-Infinity", "d": "NaN"}], j)


def test_numeric_param_round_trip(s):
    body = '{"sql":"INSERT INTO %s_num (n) VALUES (:n) RETURNING n",' \
           '"params":{"n":12345678901234567890.123456789}}' % T
    r = s.post("/insert", body)
    check(r.status == 200 and '"id":12345678901234567890.123456789' in r.raw.decode(), r)
    raw = one(s, "SELECT n FROM %s_num WHERE n > 1e19" % T)
    check('"n":12345678901234567890.123456789' in raw, raw)
    stored = admin_sql("SELECT n::text FROM %s_num WHERE n > 1e19" % T)
    check(stored == "12345678901234567890.123456789", stored)


def test_numbers_as_strings(s):
    sql = "SELECT 9223372036854775807::int8 a, 1.50::numeric b, 7::int4 c"
    j = query(s, sql, numbers_as_strings=True)
    check(j["rows"] == [{"a": "9223372036854775807", "b": "1.50", "c": 7}], j)
    raw = one(s, sql, numbers_as_strings=False)
    check('"a":9223372036854775807,"b":1.50' in raw, raw)


def test_bool_json_arrays(s):
    j = query(s, "SELECT true a, false b, NULL::int c, '{\"k\":[1,2]}'::jsonb d, "
                 "'[1,\"x\",null]'::json e, ARRAY[1,NULL,3] f, ARRAY[[1,2],[3,4]] g, "
                 "ARRAY['a',NULL,'c\"d'] h, '{}'::int[] i, ARRAY[true,false] k")
    check(j["rows"] == [{"a": True, "b": False, "c": None, "d": {"k": [1, 2]},
                         "e": [1, "x", None], "f": [1, None, 3], "g": [[1, 2], [3, 4]],
                         "h": ["a", None, 'c"d'], "i": [], "k": [True, False]}], j)


def test_text_forms(s):
    j = query(s, "SELECT '\\x00ff'::bytea a, '2024-02-29'::date b, "
                 "'2024-02-29 13:14:15.5'::timestamp c, '2024-02-29 13:14:15+02'::timestamptz d, "
                 "'1 day 2 hours'::interval e, '12:34:56'::time f, "
                 "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid g, '10.0.0.1/8'::inet h, "
                 "'happy'::%s_mood i, 'héllo ☃'::text k, '13:14:15+02'::timetz l" % T)
    check(j["rows"] == [{"a": "\\x00ff", "b": "2024-02-29", "c": "2024-02-29T13:14:15.5",
                         "d": "2024-02-29T11:14:15Z", "e": "P1DT2H", "f": "12:34:56",
                         "g": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "h": "10.0.0.1/8",
                         "i": "happy", "k": "héllo ☃", "l": "13:14:15+02:00"}], j)


# RFC 3339 section 5.6, rule by rule: the forms strict parsers (Java, Go) accept.
_PARTIAL_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_FULL_DATE = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
RFC3339_UTC = re.compile(_FULL_DATE + "T" + _PARTIAL_TIME + "Z")
RFC3339_LOCAL = re.compile(_FULL_DATE + "T" + _PARTIAL_TIME)
RFC3339_FULL_TIME = re.compile(_PARTIAL_TIME + r"[+-]([01][0-9]|2[0-3]):[0-5][0-9]")


def test_times_rfc3339(s):
    sql = ("SELECT now() a, localtimestamp b, current_time c, ARRAY[now(), NULL] d, "
           "'infinity'::timestamptz e, '0044-03-15 10:00Z BC'::timestamptz f, "
           "'-infinity'::timestamp g")
    for as_strings in (False, True):
        row = query(s, sql, numbers_as_strings=as_strings)["rows"][0]
        check(RFC3339_UTC.fullmatch(row["a"]) and RFC3339_LOCAL.fullmatch(row["b"]) and
              RFC3339_FULL_TIME.fullmatch(row["c"]) and row["d"] == [row["a"], None], row)
        check(row["e"] == "infinity" and row["f"] == "0044-03-15 10:00:00+00 BC" and
              row["g"] == "-infinity", row)
    # A statement may move the session's TimeZone: still UTC, the same instant.
    j = check_ok(s.post("/transaction", {"statements": [
        {"sql": "SET LOCAL TimeZone = 'America/St_Johns'"},
        {"sql": "SELECT '2024-07-01 00:00:00.5Z'::timestamptz t, current_setting('TimeZone') z"},
    ]}))
    check(j["results"][1]["rows"] == [{"t": "2024-07-01T00:00:00.5Z", "z": "America/St_Johns"}],
          j)


def test_duplicate_columns(s):
    r = s.post("/query", {"sql": "SELECT 1 AS a, 2 AS a, 3 AS a"})
    check(r.raw.decode().startswith('{"rows":[{"a":1,"a_2":2,"a_3":3}]'), r)
    check([c["name"] for c in r.json["columns"]] == ["a", "a_2", "a_3"], r.json)


def test_param_kinds(s):
    j = query(s, "SELECT :s::text s, :n::int n, :b::bool b, :z::text z, :o::jsonb o, "
                 ":a::jsonb a", {"s": "x", "n": 42, "b": True, "z": None,
                                 "o": {"k": 1}, "a": [1, 2]})
    check(j["rows"] == [{"s": "x", "n": 42, "b": True, "z": None, "o": {"k": 1},
                         "a": [1, 2]}], j)
    j = query(s, "SELECT count(*) c FROM %s WHERE id = ANY(:ids)" % T, {"ids": [1, 2, 3]})
    check(j["rows"] == [{"c": 3}], j)
    j = query(s, "SELECT :x::int AS x, :x::int + 1 AS y", {"x": 5})
    check(j["rows"] == [{"x": 5, "y": 6}], j)


def test_update_and_batch(s):
    j = check_ok(s.post("/update", {"sql": "UPDATE %s SET note = :v WHERE id <= 3" % T,
                                    "params": {"v": "a"}}))
    check(j == {"affected_rows": 3}, j)
    j = check_ok(s.post("/update", {"sql": "UPDATE %s SET note = :v WHERE id = :id" % T,
                                    "params": [{"v": "b", "id": 1}, {"v": "b", "id": 2},
                                               {"v": "b", "id": 999}]}))
    check(j == {"affected_rows": 2}, j)


def test_batch_error_rolls_back_all(s):
    e = check_error(s.post("/update", {"sql": "UPDATE %s SET note = :v WHERE id = :id" % T,
                                       "params": [{"v": "c", "id": 4}, {"v": "c"}]}),
                    400, "missing_parameter")
    check(e["statement_index"] == 1, e)
    check(admin_sql("SELECT count(*) FROM %s WHERE note = 'c'" % T) == "0", "batch applied")


def test_data_changing_cte_counts_the_outer_statement(s):
    """affected_rows is PostgreSQL's command tag: the outer statement's rows, as documented."""
    cte = "WITH x AS (INSERT INTO %s (name) SELECT 'cte' FROM generate_series(1, 3) " \
          "RETURNING id) SELECT count(*) AS n FROM x" % T
    check(check_ok(s.post("/update", {"sql": cte})) == {"affected_rows": 1}, "one SELECT row")
    r = check_ok(s.post("/insert", {"sql": cte}))
    check(r["affected_rows"] == 1 and r["rows"] == [{"n": 3}], r)
    check(check_ok(s.post("/update", {"sql": "WITH x AS (DELETE FROM %s WHERE name = 'cte' "
                                             "RETURNING id) SELECT id FROM x LIMIT 0" % T}))
          == {"affected_rows": 0}, "a SELECT of no rows")
    check(query(s, "SELECT count(*) AS n FROM %s WHERE name = 'cte'" % T)["rows"] == [{"n": 0}],
          "deleted")


def test_insert(s):
    j = check_ok(s.post("/insert", {"sql": "INSERT INTO %s (name) VALUES (:n) RETURNING id, name"
                                    % T, "params": {"n": "ins1"}}))
    check(j["affected_rows"] == 1 and isinstance(j["id"], int), j)
    check(j["rows"] == [{"id": j["id"], "name": "ins1"}], j)
    j = check_ok(s.post("/insert", {"sql": "INSERT INTO %s (name) VALUES (:n) RETURNING id" % T,
                                    "params": [{"n": "b1"}, {"n": "b2"}, {"n": "b3"}]}))
    check(j["affected_rows"] == 3 and len(j["rows"]) == 3 and j["id"] == j["rows"][0]["id"], j)
    j = check_ok(s.post("/insert", {"sql": "INSERT INTO %s (name) VALUES ('noret')" % T}))
    check(j == {"affected_rows": 1, "id": None, "rows": []}, j)


def test_injection_strings_inert(s):
    evil = ["'; DROP TABLE %s; --" % T, "Robert'); --", "\\'; SELECT 1; --", ":name"]
    for v in evil:
        j = check_ok(s.post("/insert", {"sql": "INSERT INTO %s (name) VALUES (:v) RETURNING name"
                                        % T, "params": {"v": v}}))
        check(j["rows"] == [{"name": v}], j)
        j = query(s, "SELECT count(*) c FROM %s WHERE name = :v" % T, {"v": v})
        check(j["rows"] == [{"c": 1}], (v, j))
    check(admin_sql("SELECT count(*) FROM %s WHERE name LIKE 'row%%'" % T) == "5", "table intact")


def test_transaction_commit(s):
    j = check_ok(s.post("/transaction", {"statements": [
        {"sql": "INSERT INTO %s (name) VALUES (:n) RETURNING id" % T, "params": {"n": "tx1"}},
        {"sql": "UPDATE %s SET note = 'tx' WHERE name = :n" % T, "params": {"n": "tx1"}},
        {"sql": "SELECT name, note FROM %s WHERE name = 'tx1'" % T},
    ], "isolation": "serializable"}))
    res = j["results"]
    check([r["command"] for r in res] == ["INSERT", "UPDATE", "SELECT"], j)
    check(res[1]["affected_rows"] == 1 and res[1]["rows"] == [] and res[1]["row_count"] == 0, j)
    check(res[2]["rows"] == [{"name": "tx1", "note": "tx"}] and res[2]["row_count"] == 1, j)


def test_transaction_rollback(s):
    e = check_error(s.post("/transaction", {"statements": [
        {"sql": "INSERT INTO %s (name) VALUES ('tx-rolled-back')" % T},
        {"sql": "SELECT 1/0"},
    ]}), 400, "sql_error")
    check(e["statement_index"] == 1 and e["sqlstate"] == "22012", e)
    check(admin_sql("SELECT count(*) FROM %s WHERE name = 'tx-rolled-back'" % T) == "0",
          "the first statement was committed")


def test_transaction_read_only(s):
    e = check_error(s.post("/transaction", {"statements": [
        {"sql": "SELECT 1"}, {"sql": "DELETE FROM %s" % T}], "read_only": True}),
        403, "read_only")
    check(e["statement_index"] == 1, e)
    j = check_ok(s.post("/transaction", {"statements": [{"sql": "SELECT 1 AS x"}],
                                         "read_only": True, "isolation": "repeatable read"}))
    check(j["results"][0]["rows"] == [{"x": 1}], j)


def test_transaction_bad_statement_index(s):
    e = check_error(s.post("/transaction", {"statements": [{"sql": "SELECT 1"},
                                                           {"sql": "SELECT 1", "x": 1}]}),
                    400, "invalid_request")
    check(e["statement_index"] == 1, e)


def test_query_is_read_only(s):
    check_error(s.post("/query", {"sql": "DELETE FROM %s" % T}), 403, "read_only")
    check(admin_sql("SELECT count(*) FROM %s WHERE name LIKE 'row%%'" % T) == "5", "deleted")


def test_colon_rules(s):
    j = query(s, "SELECT ':x' a, \"col:x\".v b, $$:y$$ c, :z::int d -- :w\n"
                 "FROM (SELECT 1 v) \"col:x\"", {"z": 1})
    check(j["rows"] == [{"a": ":x", "b": 1, "c": ":y", "d": 1}], j)


def test_big_result_is_exact(s):
    j = query(s, "SELECT g, md5(g::text) h FROM generate_series(1, 20000) g")
    check(j["row_count"] == 20000 and j["rows"][-1]["g"] == 20000, j["row_count"])
    json.dumps(j)


if __name__ == "__main__":
    run_tests(dict(globals()), setup, teardown)

/* API keys: SHA-256 vectors, key entries and files, messages without keys, the Bearer check, reload, secure default; which bearers are JWTs. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "jwt_check.h"
#include "jwt_keys.h"
#include "sha256.h"
#include "qgtest.h"

static void hex(const unsigned char *d, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void sha_is(const void *data, size_t len, const char *want)
{
    unsigned char d[QGH_SHA256_LEN];
    char h[65];
    qgh_sha256(data, len, d);
    hex(d, h);
    CHECK_STR(h, want);
}

/* FIPS 180-4 / NIST CAVP examples, then every padding boundary (55, 56, 63, 64 ... bytes). */
static void sha256_vectors(void)
{
    sha_is("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_is("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_is(m448, strlen(m448), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    sha_is(m896, strlen(m896), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    static char million[1000000];
    memset(million, 'a', sizeof million);
    sha_is(million, sizeof million,
           "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    static const struct {
        size_t n;
        const char *hash;
    } as[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
        {128, "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e"},
    };
    for (size_t i = 0; i < sizeof as / sizeof as[0]; i++)
        sha_is(million, as[i].n, as[i].hash);
}

static void scopes(void)
{
    CHECK_INT(qgh_scopes_parse("read"), QGH_SCOPE_READ);
    CHECK_INT(qgh_scopes_parse("write"), QGH_SCOPE_WRITE);
    CHECK_INT(qgh_scopes_parse("admin,read"), QGH_SCOPE_ADMIN | QGH_SCOPE_READ);
    CHECK_INT(qgh_scopes_parse("read,write,admin"), QGH_SCOPE_ALL);
    CHECK_INT(qgh_scopes_parse("named"), QGH_SCOPE_NAMED);
    CHECK_INT(qgh_scopes_parse("named,read"), QGH_SCOPE_NAMED | QGH_SCOPE_READ);
    CHECK_INT(qgh_scopes_parse("name"), 0);
    CHECK_INT(qgh_scopes_parse(""), 0);
    CHECK_INT(qgh_scopes_parse("read,"), 0);
    CHECK_INT(qgh_scopes_parse(",read"), 0);
    CHECK_INT(qgh_scopes_parse("Read"), 0);
    CHECK_INT(qgh_scopes_parse("reader"), 0);
    CHECK_INT(qgh_scopes_parse("rea"), 0);
}

static void loopback(void)
{
    const char *yes[] = {"127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LocalHost",
                         "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"};
    const char *no[] = {"0.0.0.0", "", "10.0.0.1", "::", "[::]", "example.com", "128.0.0.1",
                        "::2", "::ffff:10.0.0.1", "localhost.example.com", "[::1"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!qgh_host_is_loopback(yes[i]))
            fprintf(stderr, "   %s should be loopback\n", yes[i]);
        CHECK(qgh_host_is_loopback(yes[i]));
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (qgh_host_is_loopback(no[i]))
            fprintf(stderr, "   %s should not be loopback\n", no[i]);
        CHECK(!qgh_host_is_loopback(no[i]));
    }
    CHECK(!qgh_host_is_loopback(NULL));
}

static char keyfile[] = "/tmp/qgt-keys.XXXXXX";

static void write_file(const char *text)
{
    FILE *f = fopen(keyfile, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    chmod(keyfile, 0600);
}

/* An auth for AUTH, HOST, API_KEYS (NULL: unset) and the key file (when file is true). */
static qg_status make(const char *auth, const char *host, const char *keys, bool file,
                      qgh_auth **out, qg_error *err)
{
    char e_auth[64], e_host[64], e_keys[1024], e_file[128];
    char *env[5];
    int n = 0;
    snprintf(e_auth, sizeof e_auth, "AUTH=%s", auth);
    env[n++] = e_auth;
    snprintf(e_host, sizeof e_host, "HOST=%s", host);
    env[n++] = e_host;
    if (keys) {
        snprintf(e_keys, sizeof e_keys, "API_KEYS=%s", keys);
        env[n++] = e_keys;
    }
    if (file) {
        snprintf(e_file, sizeof e_file, "API_KEYS_FILE=%s", keyfile);
        env[n++] = e_file;
    }
    env[n] = NULL;
    struct qg_config cfg;
    qg_error_clear(err);
    qg_status s = qg_config_load(&cfg, env, err);
    CHECK_INT(s, QG_OK);
    if (s != QG_OK)
        return s;
    s = qgh_auth_new(&cfg, out, err);
    qg_config_free(&cfg);
    return s;
}

#define K1 "k1-0123456789abcdef"
#define K2 "K2_ABCDEFGHIJKLMNOP"
#define K3 "k3~+/xxxxxxxxxxxxxx=="

static enum qgh_auth_result check(qgh_auth *a, const char *header, unsigned *scopes, char *role)
{
    struct qgh_principal who;
    enum qgh_auth_result r = qgh_auth_check(a, header, &who);
    if (scopes)
        *scopes = who.scopes;
    if (role)
        strcpy(role, who.role);
    return r;
}

static void bearer_check(void)
{
    write_file("# keys for tests\n\n   \n" K1 " read   # the reader\n\t" K2 "\twrite,read\tqgt_role\r\n");
    qgh_auth *a = NULL;
    qg_error err;
    CHECK_INT(make("keys", "0.0.0.0", K3 " admin", true, &a, &err), QG_OK);
    if (!a)
        return;
    unsigned sc;
    char role[QGH_ROLE_MAX + 1];
    CHECK_INT(check(a, "Bearer " K1, &sc, role), QGH_AUTH_OK);
    CHECK_INT(sc, QGH_SCOPE_READ);
    CHECK_STR(role, "");
    CHECK_INT(check(a, "bearer   " K2 "  ", &sc, role), QGH_AUTH_OK);
    CHECK_INT(sc, QGH_SCOPE_READ | QGH_SCOPE_WRITE);
    CHECK_STR(role, "qgt_role");
    CHECK_INT(check(a, "BEARER " K3, &sc, NULL), QGH_AUTH_OK);
    CHECK_INT(sc, QGH_SCOPE_ADMIN);
    /* A wrong key that starts with a real one, and other near misses. */
    CHECK_INT(check(a, "Bearer " K1 "x", &sc, role), QGH_AUTH_INVALID);
    CHECK_INT(sc, 0);
    CHECK_STR(role, "");
    CHECK_INT(check(a, "Bearer k1-0123456789abcdeF", NULL, NULL), QGH_AUTH_INVALID);
    CHECK_INT(check(a, "Bearer k1-0123456789abcde", NULL, NULL), QGH_AUTH_INVALID);
    CHECK_INT(check(a, NULL, &sc, NULL), QGH_AUTH_MISSING);
    CHECK_INT(sc, 0);
    CHECK_INT(check(a, "Basic " K1, NULL, NULL), QGH_AUTH_MISSING);
    CHECK_INT(check(a, "Bearer" K1, NULL, NULL), QGH_AUTH_MISSING);
    CHECK_INT(check(a, "", NULL, NULL), QGH_AUTH_MISSING);
    CHECK_INT(check(a, "Bearer", NULL, NULL), QGH_AUTH_MALFORMED);
    CHECK_INT(check(a, "Bearer   ", NULL, NULL), QGH_AUTH_MALFORMED);
    CHECK_INT(check(a, "Bearer " K1 " " K1, NULL, NULL), QGH_AUTH_MALFORMED);
    CHECK_INT(check(a, "Bearer =abc", NULL, NULL), QGH_AUTH_MALFORMED);
    CHECK_INT(check(a, "Bearer " K1 "\"", NULL, NULL), QGH_AUTH_MALFORMED);
    char msg[512];
    CHECK_INT(qgh_auth_describe(a, msg, sizeof msg), QG_LOG_INFO);
    CHECK(strstr(msg, "3 loaded") != NULL);
    CHECK(strstr(msg, K1) == NULL && strstr(msg, K3) == NULL);
    qgh_auth_free(a);
}

/* A bad entry names its place and never the key; each case is one bad line in a good file. */
static void bad_entries(void)
{
    static const struct {
        const char *line;
        const char *why;
    } bad[] = {
        {K2, "found 1 field"},
        {K2 " read role extra", "found 4 fields"},
        {K2 " reed", "read, write, admin"},
        {K2 " read,,write", "read, write, admin"},
        {K2 " ,", "read, write, admin"},
        {"short-key1 read", "at least 16"},
        {"k2\"0123456789abcdef read", "at least 16"},
        {K2 " read bad'role", "role"},
        {K2 " read " "r234567890123456789012345678901234567890123456789012345678901234",
         "role"},
        {K1 " admin", "the same key as line 2"},
        /* A missing newline puts another key in the scopes or the role. */
        {K2 " read," K3 " admin", "read, write, admin"},
        {K2 " " K3 ",read", "read, write, admin"},
        {K2 " read " K1, "the key of line 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, "# header\n" K1 " read\n%s\n" K3 " admin\n", bad[i].line);
        write_file(text);
        qgh_auth *a = NULL;
        qg_error err;
        CHECK_INT(make("keys", "127.0.0.1", NULL, true, &a, &err), QG_ERR_CONFIG);
        CHECK(a == NULL);
        qgh_auth_free(a);
        bool ok = strstr(err.message, keyfile) && strstr(err.message, "line 3") &&
                  strstr(err.message, bad[i].why) && !strstr(err.message, K1) &&
                  !strstr(err.message, K2) && !strstr(err.message, K3) &&
                  !strstr(err.message, "k2\"0123");
        if (!ok)
            fprintf(stderr, "   line %s gave: %s\n", bad[i].line, err.message);
        CHECK(ok);
    }
    /* API_KEYS entries are numbered; the same key in API_KEYS and the file is refused. */
    qgh_auth *a = NULL;
    qg_error err;
    CHECK_INT(make("keys", "127.0.0.1", K1 " read;;" K2 " rid", false, &a, &err), QG_ERR_CONFIG);
    CHECK(strstr(err.message, "API_KEYS entry 3") && !strstr(err.message, K2));
    /* A ';' left out: the next key lands in the scopes or the role, never in the message. */
    const char *joined[] = {K1 " read," K2 " admin", K1 " read," K2 " admin;" K3 " read",
                            K3 " write;" K1 " read " K2 ";" K2 " admin"};
    for (size_t i = 0; i < sizeof joined / sizeof joined[0]; i++) {
        CHECK_INT(make("keys", "127.0.0.1", joined[i], false, &a, &err), QG_ERR_CONFIG);
        bool ok = strstr(err.message, "API_KEYS entry") && !strstr(err.message, K1) &&
                  !strstr(err.message, K2) && !strstr(err.message, K3);
        if (!ok)
            fprintf(stderr, "   API_KEYS %zu gave: %s\n", i, err.message);
        CHECK(ok);
    }
    write_file(K3 " read\n" K1 " write\n");
    CHECK_INT(make("keys", "127.0.0.1", K1 " read", true, &a, &err), QG_ERR_CONFIG);
    CHECK(strstr(err.message, "line 2") && strstr(err.message, "API_KEYS entry 1") &&
          !strstr(err.message, K1));
    unlink(keyfile);
    CHECK_INT(make("keys", "127.0.0.1", NULL, true, &a, &err), QG_ERR_CONFIG);
    CHECK(strstr(err.message, keyfile) && strstr(err.message, "cannot open"));
}

static void secure_default(void)
{
    qgh_auth *a = NULL;
    qg_error err;
    /* No keys anywhere but loopback: open, for local development. */
    CHECK_INT(make("keys", "127.0.0.1", NULL, false, &a, &err), QG_OK);
    unsigned sc;
    CHECK_INT(check(a, NULL, &sc, NULL), QGH_AUTH_OK);
    CHECK_INT(sc, QGH_SCOPE_ALL);
    char msg[512];
    CHECK_INT(qgh_auth_describe(a, msg, sizeof msg), QG_LOG_INFO);
    CHECK(strstr(msg, "without a key") != NULL);
    qgh_auth_free(a);
    /* Not loopback: refused, saying what to do. */
    const char *hosts[] = {"0.0.0.0", "::", "192.0.2.1", "[::]"};
    for (size_t i = 0; i < 4; i++) {
        a = NULL;
        CHECK_INT(make("keys", hosts[i], NULL, false, &a, &err), QG_ERR_CONFIG);
        CHECK(a == NULL);
        CHECK(strstr(err.message, "API_KEYS") && strstr(err.message, "API_KEYS_FILE") &&
              strstr(err.message, "AUTH=none"));
    }
    /* An empty key file is no keys. */
    write_file("# nobody yet\n\n");
    CHECK_INT(make("keys", "::", NULL, true, &a, &err), QG_ERR_CONFIG);
    /* AUTH=none: everything allowed, said loudly. */
    CHECK_INT(make("none", "0.0.0.0", NULL, false, &a, &err), QG_OK);
    CHECK_INT(check(a, "Bearer whatever-it-is-here", &sc, NULL), QGH_AUTH_OK);
    CHECK_INT(sc, QGH_SCOPE_ALL);
    CHECK_INT(qgh_auth_describe(a, msg, sizeof msg), QG_LOG_WARN);
    CHECK(strstr(msg, "WARNING") && strstr(msg, "AUTH=none"));
    qgh_auth_free(a);
    /* NULL auth (tests driving handlers) allows everything. */
    CHECK_INT(qgh_auth_check(NULL, NULL, &(struct qgh_principal){0}), QGH_AUTH_OK);
}

static void reload(void)
{
    write_file(K1 " read\n");
    qgh_auth *a = NULL;
    qg_error err;
    CHECK_INT(make("keys", "0.0.0.0", K3 " admin", true, &a, &err), QG_OK);
    if (!a)
        return;
    CHECK_INT(check(a, "Bearer " K1, NULL, NULL), QGH_AUTH_OK);
    CHECK_INT(check(a, "Bearer " K2, NULL, NULL), QGH_AUTH_INVALID);
    /* K1 removed, K2 added; API_KEYS stays. */
    write_file(K2 " write\n");
    size_t n = 0;
    CHECK_INT(qgh_auth_reload(a, &n, &err), QG_OK);
    CHECK_INT(n, 2);
    CHECK_INT(check(a, "Bearer " K1, NULL, NULL), QGH_AUTH_INVALID);
    CHECK_INT(check(a, "Bearer " K2, NULL, NULL), QGH_AUTH_OK);
    CHECK_INT(check(a, "Bearer " K3, NULL, NULL), QGH_AUTH_OK);
    /* A bad file keeps the old keys. */
    write_file(K1 " read\nnot a valid line at all\n");
    qg_error_clear(&err);
    CHECK_INT(qgh_auth_reload(a, &n, &err), QG_ERR_CONFIG);
    CHECK(strstr(err.message, "line 2") != NULL);
    CHECK_INT(check(a, "Bearer " K1, NULL, NULL), QGH_AUTH_INVALID);
    CHECK_INT(check(a, "Bearer " K2, NULL, NULL), QGH_AUTH_OK);
    qgh_auth_free(a);

    /* Keys removed from a loopback service revoke; they never open it. */
    write_file(K1 " read\n");
    CHECK_INT(make("keys", "127.0.0.1", NULL, true, &a, &err), QG_OK);
    write_file("\n");
    CHECK_INT(qgh_auth_reload(a, &n, &err), QG_OK);
    CHECK_INT(n, 0);
    CHECK_INT(check(a, NULL, NULL, NULL), QGH_AUTH_MISSING);
    CHECK_INT(check(a, "Bearer " K1, NULL, NULL), QGH_AUTH_INVALID);
    qgh_auth_free(a);
    /* An open (keyless loopback) service that gets keys requires them from then on. */
    write_file("");
    CHECK_INT(make("keys", "127.0.0.1", NULL, true, &a, &err), QG_OK);
    CHECK_INT(check(a, NULL, NULL, NULL), QGH_AUTH_OK);
    write_file(K1 " read\n");
    CHECK_INT(qgh_auth_reload(a, &n, &err), QG_OK);
    CHECK_INT(check(a, NULL, NULL, NULL), QGH_AUTH_MISSING);
    CHECK_INT(check(a, "Bearer " K1, NULL, NULL), QGH_AUTH_OK);
    qgh_auth_free(a);
}

/* RFC 4648 section 10 vectors in base64url, and what it refuses. */
static void base64url(void)
{
    static const char *const enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    static const char *const dec[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    for (size_t i = 0; i < 7; i++) {
        unsigned char *out = NULL;
        size_t n = 99;
        CHECK(qgh_base64url_decode(enc[i], strlen(enc[i]), &out, &n));
        CHECK_INT(n, strlen(dec[i]));
        CHECK_STR((char *)out, dec[i]);
        free(out);
    }
    unsigned char *out = NULL;
    size_t n;
    CHECK(qgh_base64url_decode("-_8", 3, &out, &n) && n == 2 && out[0] == 0xfb && out[1] == 0xff);
    free(out);
    for (const char *const *bad = (const char *const[]){"Zg==", "Z", "Zm9v+", "Zm/v", "Zm 9", NULL};
         *bad; bad++)
        CHECK(!qgh_base64url_decode(*bad, strlen(*bad), &out, &n) && out == NULL);
}

/* A bearer is a token when it is three base64url parts and the first a JSON object. */
static void jwt_shape(void)
{
    /* {"alg":"HS256"} . {"sub":"a"} . signature */
    const char *tok = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
    CHECK(qgh_jwt_shaped(tok, strlen(tok)));
    CHECK(qgh_jwt_shaped(tok, strlen(tok) - 4)); /* no signature: still a token, refused later */
    const char *unsigned_tok = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.";
    CHECK(qgh_jwt_shaped(unsigned_tok, strlen(unsigned_tok))); /* alg none: checked, refused */
    static const char *const keys[] = {
        "read-key-0123456789abcdef",          /* an API key */
        "abc.def.ghi",                        /* three parts, the first no JSON */
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0", /* two parts */
        "eyJhbGciOiJIUzI1NiJ9..c2ln",         /* an empty payload */
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln.x", /* four parts */
        "WyJhIl0.eyJzdWIiOiJhIn0.c2ln",       /* ["a"]: JSON, but no object */
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2l+", /* '+' is base64, not base64url */
    };
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        if (qgh_jwt_shaped(keys[i], strlen(keys[i])))
            fprintf(stderr, "   shaped as a JWT: %s\n", keys[i]);
        CHECK(!qgh_jwt_shaped(keys[i], strlen(keys[i])));
    }
}

int main(void)
{
    int fd = mkstemp(keyfile);
    CHECK(fd >= 0);
    close(fd);
    RUN(sha256_vectors);
    RUN(scopes);
    RUN(loopback);
    RUN(bearer_check);
    RUN(bad_entries);
    RUN(secure_default);
    RUN(reload);
    RUN(base64url);
    RUN(jwt_shape);
    unlink(keyfile);
    return qgt_done();
}

/* Log lines on stderr, text or JSON (LOG_FORMAT), filtered by LOG_LEVEL. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

static enum qg_log_format log_format = QG_LOG_TEXT;
static enum qg_log_level log_level = QG_LOG_INFO;
/* The request a worker thread is running, so the core's lines (DB_ECHO, retries) name it. */
static _Thread_local const char *thread_request_id;

void qgh_log_setup(enum qg_log_format format, enum qg_log_level level)
{
    log_format = format;
    log_level = level;
}

void qgh_log_request(const char *request_id)
{
    thread_request_id = request_id;
}

bool qgh_log_enabled(enum qg_log_level level)
{
    return level >= log_level;
}

static const char *level_name(enum qg_log_level level)
{
    switch (level) {
    case QG_LOG_DEBUG: return "debug";
    case QG_LOG_INFO: return "info";
    case QG_LOG_WARN: return "warn";
    case QG_LOG_ERROR: return "error";
    }
    return "info";
}

static void put_time(qg_buf *b)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char t[32];
    strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    qg_buf_printf(b, "%s.%03ldZ", t, ts.tv_nsec / 1000000);
}

/* Paths come from the network: in text lines, anything unprintable or not UTF-8 becomes '?'. */
static void put_text(qg_buf *b, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = qg_utf8_char_len(s + i, n - i);
        if (!len || c < 0x20 || c == 0x7f) {
            qg_buf_putc(b, '?');
            i += len ? len : 1;
        } else {
            qg_buf_append(b, s + i, len);
            i += len;
        }
    }
}

/* One write per line so that lines from different threads never interleave. */
static void emit(qg_buf *b)
{
    qg_buf_append(b, "\n", 1);
    if (!b->oom)
        fwrite(b->data, 1, b->len, stderr);
    qg_buf_free(b);
}

static void start_line(qg_buf *b, enum qg_log_level level)
{
    qg_buf_init(b);
    if (log_format == QG_LOG_JSON) {
        qg_buf_puts(b, "{\"time\":\"");
        put_time(b);
        qg_buf_printf(b, "\",\"level\":\"%s\"", level_name(level));
    } else {
        put_time(b);
        qg_buf_printf(b, " %-5s ", level_name(level));
    }
}

static void log_message(enum qg_log_level level, const char *msg)
{
    if (level < log_level)
        return;
    qg_buf b;
    start_line(&b, level);
    const char *id = thread_request_id;
    if (log_format == QG_LOG_JSON) {
        qg_buf_puts(&b, ",\"msg\":");
        qg_buf_json_string(&b, msg, strlen(msg));
        if (id) {
            qg_buf_puts(&b, ",\"request_id\":");
            qg_buf_json_string(&b, id, strlen(id));
        }
        qg_buf_puts(&b, "}");
    } else {
        put_text(&b, msg);
        if (id) {
            qg_buf_puts(&b, " id=");
            put_text(&b, id);
        }
    }
    emit(&b);
}

void qgh_log(enum qg_log_level level, const char *fmt, ...)
{
    if (level < log_level)
        return;
    char msg[4096]; /* the configuration line is long */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_message(level, msg);
}

/* NOTE: at info, so LOG_LEVEL=warn keeps only problems (a 500 also has its own error line). */
void qgh_log_access(const char *method, const char *path, int status, double ms,
                    double wait_ms, const char *request_id, const char *trace_id)
{
    if (QG_LOG_INFO < log_level)
        return;
    qg_buf b;
    start_line(&b, QG_LOG_INFO);
    if (log_format == QG_LOG_JSON) {
        qg_buf_puts(&b, ",\"msg\":\"request\",\"method\":");
        qg_buf_json_string(&b, method, strlen(method));
        qg_buf_puts(&b, ",\"path\":");
        qg_buf_json_string(&b, path, strlen(path));
        qg_buf_printf(&b, ",\"status\":%d,\"duration_ms\":%.3f,\"pool_wait_ms\":%.3f,"
                           "\"request_id\":",
                       status, ms, wait_ms);
        qg_buf_json_string(&b, request_id, strlen(request_id));
        if (trace_id[0]) {
            qg_buf_puts(&b, ",\"trace_id\":");
            qg_buf_json_string(&b, trace_id, strlen(trace_id));
        }
        qg_buf_puts(&b, "}");
    } else {
        put_text(&b, method);
        qg_buf_puts(&b, " ");
        put_text(&b, path);
        qg_buf_printf(&b, " %d %.3fms wait=%.3fms id=", status, ms, wait_ms);
        put_text(&b, request_id);
        if (trace_id[0]) {
            qg_buf_puts(&b, " trace=");
            put_text(&b, trace_id);
        }
    }
    emit(&b);
}

void qgh_log_core(void *arg, enum qg_log_level level, const char *msg)
{
    (void)arg;
    /* A loop runs many requests: the core names the one its line is about. */
    const char *tag = qg_log_tag(), *was = thread_request_id;
    if (tag)
        thread_request_id = tag;
    log_message(level, msg);
    thread_request_id = was;
}

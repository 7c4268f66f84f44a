
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: what the admin commands print: JSON strings, times in ISO 8601,
 * the TIME of --since, and progress on a terminal.
 */


#include "pop3ext.h"


static size_t pop3ext_utf8_len(const u_char *p, size_t len);
static int pop3ext_number(const char **pp, unsigned long long max,
    unsigned long long *v);


static int                 pop3ext_progress_tty = -1;
static int                 pop3ext_progress_shown;
static unsigned long long  pop3ext_progress_last;


/*
 * A JSON string.  Names and UIDs are octets, meant as UTF-8 but never
 * checked: an octet that does not start a valid UTF-8 sequence is written
 * as \u00XX (the code point of its value), so that the document stays
 * valid JSON whatever Redis holds.
 */

void
pop3ext_json_string(FILE *f, const char *s, size_t len)
{
    size_t         i, n;
    const u_char  *p;

    p = (const u_char *) s;

    putc('"', f);

    for (i = 0; i < len; i++) {

        if (p[i] == '"' || p[i] == '\\') {
            putc('\\', f);
            putc(p[i], f);

        } else if (p[i] < 0x20 || p[i] == 0x7f) {
            fprintf(f, "\\u%04x", p[i]);

        } else if (p[i] < 0x80) {
            putc(p[i], f);

        } else {
            n = pop3ext_utf8_len(p + i, len - i);

            if (n == 0) {
                fprintf(f, "\\u%04x", p[i]);

            } else {
                fwrite(p + i, 1, n, f);
                i += n - 1;
            }
        }
    }

    putc('"', f);
}


/*
 * The start of a JSON object about a user's mailbox on stdout,
 * {"user":USER,"mailbox":MBOX, for the caller to go on with its fields.
 */

void
pop3ext_json_user(const char *user, const char *mbox)
{
    fputs("{\"user\":", stdout);
    pop3ext_json_string(stdout, user, strlen(user));
    fputs(",\"mailbox\":", stdout);
    pop3ext_json_string(stdout, mbox, strlen(mbox));
}


/* the length of the UTF-8 sequence at p (RFC 3629), 0 if it is not one */

static size_t
pop3ext_utf8_len(const u_char *p, size_t len)
{
    size_t  n, i;
    u_char  lo, hi;

    lo = 0x80;
    hi = 0xbf;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;

    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;

        /* no overlong forms, no surrogates */
        lo = (p[0] == 0xe0) ? 0xa0 : 0x80;
        hi = (p[0] == 0xed) ? 0x9f : 0xbf;

    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        lo = (p[0] == 0xf0) ? 0x90 : 0x80;
        hi = (p[0] == 0xf4) ? 0x8f : 0xbf;

    } else {
        return 0;
    }

    if (len < n || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return n;
}


/*
 * ms since the epoch as ISO 8601 in local time, with the offset, as in
 * "2026-11-28T21:53:01+01:00": a person reads local time, and the offset
 * keeps it unambiguous.  buf has POP3EXT_TIME_LEN octets.
 */

void
pop3ext_time_text(char *buf, unsigned long long ms)
{
    long       off;
    time_t     t;
    struct tm  tm;

    t = (time_t) (ms / 1000);

    if (localtime_r(&t, &tm) == NULL) {
        snprintf(buf, POP3EXT_TIME_LEN, "%llu", ms);
        return;
    }

    off = tm.tm_gmtoff / 60;

    snprintf(buf, POP3EXT_TIME_LEN,
             "%04d-%02d-%02dT%02d:%02d:%02d%c%02ld:%02ld",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+',
             (off < 0 ? -off : off) / 60, (off < 0 ? -off : off) % 60);
}


/* decimal digits at *pp, at most max; *pp moves past them */

static int
pop3ext_number(const char **pp, unsigned long long max, unsigned long long *v)
{
    const char  *p;

    p = *pp;
    *v = 0;

    if (*p < '0' || *p > '9') {
        return -1;
    }

    while (*p >= '0' && *p <= '9') {
        *v = *v * 10 + (*p++ - '0');

        if (*v > max) {
            return -1;
        }
    }

    *pp = p;

    return 0;
}


/*
 * The TIME of --since, as ms since the epoch: an age ("90m", "1h30m",
 * "2d", "1w"; units s, m, h, d, w; a bare number is seconds) counted back
 * from now, or an ISO 8601 date, "2026-11-28", "2026-11-28T10:00",
 * "2026-11-28 10:00:30", in local time unless it ends in "Z" or an offset
 * ("+01:00", "-0500").  Returns -1 if s is neither.
 */

int
pop3ext_parse_since(const char *s, unsigned long long now,
    unsigned long long *ms)
{
    int                  sign;
    time_t               t;
    struct tm            tm;
    const char          *p, *q;
    unsigned long long   v, total, scale, y, mo, d, h, mi, sec, oh, om;

    /* an age: nothing in it but digits and units */

    if (s[0] >= '0' && s[0] <= '9' && strspn(s, "0123456789smhdw")
                                      == strlen(s))
    {
        total = 0;
        p = s;

        while (*p != '\0') {
            if (pop3ext_number(&p, 1000000000ULL, &v) != 0) {
                return -1;
            }

            switch (*p) {
            case 'w':
                scale = 7 * 86400000ULL;
                break;
            case 'd':
                scale = 86400000ULL;
                break;
            case 'h':
                scale = 3600000ULL;
                break;
            case 'm':
                scale = 60000ULL;
                break;
            case 's':
            case '\0':
                scale = 1000ULL;
                break;
            default:
                return -1;
            }

            if (*p != '\0') {
                p++;
            }

            total += v * scale;

            /* more than a thousand years back is a typing error */

            if (total > 1000ULL * 366 * 86400000ULL) {
                return -1;
            }
        }

        *ms = (total < now) ? now - total : 0;

        return 0;
    }

    /* a date: YYYY-MM-DD[(T| )HH:MM[:SS]][Z|(+|-)HH[[:]MM]] */

    p = s;
    h = 0;
    mi = 0;
    sec = 0;

    if (pop3ext_number(&p, 9999, &y) != 0 || p - s != 4 || *p++ != '-'
        || pop3ext_number(&p, 12, &mo) != 0 || *p++ != '-'
        || pop3ext_number(&p, 31, &d) != 0 || y < 1970 || mo == 0 || d == 0)
    {
        return -1;
    }

    if (*p == 'T' || *p == ' ') {
        p++;

        if (pop3ext_number(&p, 23, &h) != 0 || *p++ != ':'
            || pop3ext_number(&p, 59, &mi) != 0)
        {
            return -1;
        }

        if (*p == ':') {
            p++;

            if (pop3ext_number(&p, 60, &sec) != 0) {
                return -1;
            }
        }
    }

    memset(&tm, 0, sizeof(struct tm));

    tm.tm_year = (int) y - 1900;
    tm.tm_mon = (int) mo - 1;
    tm.tm_mday = (int) d;
    tm.tm_hour = (int) h;
    tm.tm_min = (int) mi;
    tm.tm_sec = (int) sec;

    if (*p == '\0') {
        tm.tm_isdst = -1;
        t = mktime(&tm);

        if (t == (time_t) -1) {
            return -1;
        }

        *ms = (unsigned long long) t * 1000;

        return 0;
    }

    sign = 0;
    oh = 0;
    om = 0;

    if (p[0] == 'Z' && p[1] == '\0') {
        p++;

    } else if (*p == '+' || *p == '-') {
        sign = (*p++ == '-') ? -1 : 1;
        q = p;

        if (pop3ext_number(&p, 2359, &oh) != 0
            || (p - q != 2 && p - q != 4))
        {
            return -1;
        }

        if (p - q == 4) {
            /* "+0100" */
            om = oh % 100;
            oh /= 100;

        } else if (*p == ':') {
            p++;

            if (pop3ext_number(&p, 59, &om) != 0) {
                return -1;
            }
        }

        if (oh > 23 || om > 59) {
            return -1;
        }
    }

    if (*p != '\0') {
        return -1;
    }

    t = timegm(&tm);

    if (t == (time_t) -1) {
        return -1;
    }

    v = (unsigned long long) t * 1000;
    total = (oh * 60 + om) * 60000;

    if (sign > 0) {
        v = (total < v) ? v - total : 0;

    } else {
        v += total;
    }

    *ms = v;

    return 0;
}


/*
 * One line of progress on stderr, redrawn in place, at most five times a
 * second, and only on a terminal: a pipe or a log file gets nothing.
 */

void
pop3ext_progress(const char *fmt, ...)
{
    va_list             args;
    unsigned long long  now;

    if (pop3ext_progress_tty == -1) {
        pop3ext_progress_tty = isatty(STDERR_FILENO);
    }

    if (!pop3ext_progress_tty) {
        return;
    }

    now = pop3ext_now();

    if (pop3ext_progress_shown && now - pop3ext_progress_last < 200) {
        return;
    }

    pop3ext_progress_last = now;
    pop3ext_progress_shown = 1;

    fputs("\rpop3ext: ", stderr);

    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);

    /* what a longer line left */
    fputs("\033[K", stderr);
}


/* the progress line goes, before anything else is printed on stderr */

void
pop3ext_progress_end(void)
{
    if (pop3ext_progress_shown) {
        fputs("\r\033[K", stderr);
        pop3ext_progress_shown = 0;
    }
}


int
pop3ext_flush(FILE *f)
{
    if (fflush(f) == EOF || ferror(f)) {
        pop3ext_error("cannot write the output: %s", strerror(errno));
        return EX_IOERR;
    }

    return EX_OK;
}

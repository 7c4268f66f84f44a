
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext import: the POP3 client that reads a mailbox from another
 * server (pop3:// with STLS where offered, pop3s://).  It reads the UIDL
 * list and the messages and deletes nothing: it never sends DELE, and its
 * QUIT therefore removes nothing on the server.
 *
 * The socket is the Redis layer's kind (pop3ext_socket.c), with a
 * deadline on every wait; TLS is OpenSSL's, the certificate verified
 * against --tls-ca or the system's CAs and the host name of the URL
 * unless --insecure.
 */


#include "pop3ext_import.h"


static const pop3ext_peer_t  pop3ext_pop3_peer = {
    "pop3 server", "pop3 server", "; see --tls-ca, --insecure"
};


static int pop3ext_pop3_connect(pop3ext_pop3_t *p);
static int pop3ext_pop3_tls(pop3ext_pop3_t *p);
static int pop3ext_pop3_send(pop3ext_pop3_t *p, const char *buf,
    size_t len);
static int pop3ext_pop3_fill(pop3ext_pop3_t *p);
static int pop3ext_pop3_chunk(pop3ext_pop3_t *p, const u_char **data,
    size_t *len, int *whole);
static int pop3ext_pop3_line(pop3ext_pop3_t *p, const char *what,
    char *line, size_t size, size_t *len);
static int pop3ext_pop3_reply(pop3ext_pop3_t *p, char *line, size_t size,
    int *ok);
static int pop3ext_pop3_cmd(pop3ext_pop3_t *p, const char *cmd,
    const char *show, char *reply, size_t size, int *ok);
static int pop3ext_pop3_multi(pop3ext_pop3_t *p, char *line, size_t size,
    int *done);
static int pop3ext_pop3_capa(pop3ext_pop3_t *p);
static int pop3ext_pop3_login(pop3ext_pop3_t *p, const char *password,
    size_t len);
static int pop3ext_pop3_refused(pop3ext_pop3_t *p, const char *what,
    const char *reply);
static int pop3ext_pop3_list(pop3ext_pop3_t *p, pop3ext_import_list_t *list);
static int pop3ext_hex(int c);


/*
 * pop3://LOGIN@HOST[:PORT][/] or pop3s://...: LOGIN may be percent-
 * encoded (user%40example.com) and may hold "@" itself, the last "@"
 * ends it; HOST may be [IPV6].  Into p, zeroed by the caller.
 */

int
pop3ext_pop3_url(pop3ext_pop3_t *p, const char *url)
{
    int           hi, lo;
    size_t        n, len;
    const char   *s, *at, *host, *end, *colon;
    unsigned long port;

    if (strncmp(url, "pop3://", 7) == 0) {
        s = url + 7;
        p->port = POP3EXT_POP3_PORT;

    } else if (strncmp(url, "pop3s://", 8) == 0) {
        s = url + 8;
        p->port = POP3EXT_POP3S_PORT;
        p->implicit_tls = 1;

    } else {
        return pop3ext_usage_error("--from must be maildir:DIR, "
                                   "pop3://LOGIN@HOST[:PORT] or "
                                   "pop3s://LOGIN@HOST[:PORT]");
    }

    end = s + strlen(s);

    if (end > s && end[-1] == '/') {
        end--;
    }

    at = NULL;

    for (host = s; host < end; host++) {
        if (*host == '@') {
            at = host;
        }
    }

    if (at == NULL || at == s) {
        return pop3ext_usage_error("%s: no LOGIN@ before the host", url);
    }

    /* the login, percent-decoded */

    n = 0;

    for ( /* void */ ; s < at; s++) {
        if (n == sizeof(p->login) - 1) {
            return pop3ext_usage_error("%s: the login is too long", url);
        }

        if (*s == '%' && at - s >= 3
            && (hi = pop3ext_hex(s[1])) >= 0 && (lo = pop3ext_hex(s[2])) >= 0)
        {
            p->login[n++] = (char) (hi << 4 | lo);
            s += 2;

        } else {
            p->login[n++] = *s;
        }
    }

    p->login[n] = '\0';

    for (len = 0; len < n; len++) {
        if ((u_char) p->login[len] <= 0x20 || p->login[len] == 0x7f) {
            return pop3ext_usage_error("%s: the login has a space or a "
                                       "control character", url);
        }
    }

    if (n == 0) {
        return pop3ext_usage_error("%s: empty login", url);
    }

    /* the host, and the port */

    host = at + 1;
    colon = NULL;

    if (host < end && *host == '[') {
        for (s = host + 1; s < end && *s != ']'; s++) {
            /* void */
        }

        if (s == end) {
            return pop3ext_usage_error("%s: no \"]\" after the IPv6 "
                                       "address", url);
        }

        len = s - host - 1;
        host++;
        s++;

        if (s < end) {
            if (*s != ':') {
                return pop3ext_usage_error("%s: bad host", url);
            }

            colon = s;
        }

    } else {
        for (s = host; s < end && *s != ':'; s++) {
            /* void */
        }

        len = s - host;
        colon = (s < end) ? s : NULL;
    }

    if (len == 0 || len >= sizeof(p->host)) {
        return pop3ext_usage_error("%s: bad host", url);
    }

    memcpy(p->host, host, len);
    p->host[len] = '\0';

    for (s = p->host; *s != '\0'; s++) {
        if ((u_char) *s <= 0x20 || *s == '/' || *s == '@' || *s == 0x7f) {
            return pop3ext_usage_error("%s: bad host", url);
        }
    }

    if (colon != NULL) {
        port = 0;

        for (s = colon + 1; s < end; s++) {
            if (*s < '0' || *s > '9' || port > 65535) {
                break;
            }

            port = port * 10 + (*s - '0');
        }

        if (s != end || s == colon + 1 || port == 0 || port > 65535) {
            return pop3ext_usage_error("%s: bad port", url);
        }

        p->port = (unsigned) port;
    }

    snprintf(p->name, sizeof(p->name), strchr(p->host, ':') ? "[%s]:%u"
                                                            : "%s:%u",
             p->host, p->port);

    return EX_OK;
}


/*
 * Connects, takes TLS (pop3s://, or STLS when offered), and logs in with
 * USER and PASS, or AUTH PLAIN when the server offers it and not USER.
 */

int
pop3ext_pop3_open(pop3ext_pop3_t *p, const char *password, size_t len)
{
    int    rc, ok;
    char   line[POP3EXT_POP3_LINE];

    p->buf = malloc(POP3EXT_POP3_BUF);
    if (p->buf == NULL) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    rc = pop3ext_pop3_connect(p);
    if (rc != EX_OK) {
        return rc;
    }

    if (p->implicit_tls) {
        rc = pop3ext_pop3_tls(p);
        if (rc != EX_OK) {
            return rc;
        }
    }

    rc = pop3ext_pop3_reply(p, line, sizeof(line), &ok);
    if (rc != EX_OK) {
        return rc;
    }

    if (!ok) {
        pop3ext_error("pop3 server %s is not available: %s", p->name, line);
        return EX_TEMPFAIL;
    }

    rc = pop3ext_pop3_capa(p);
    if (rc != EX_OK) {
        return rc;
    }

    if (!p->implicit_tls && p->capa_stls) {
        rc = pop3ext_pop3_cmd(p, "STLS", NULL, line, sizeof(line), &ok);
        if (rc != EX_OK) {
            return rc;
        }

        if (!ok) {
            pop3ext_error("pop3 server %s offers STLS but refused it: %s",
                          p->name, line);
            return EX_PROTOCOL;
        }

        /* what came before the handshake is not to be trusted (RFC 2595) */

        if (p->pos != p->end) {
            pop3ext_error("pop3 server %s sent data after its STLS reply",
                          p->name);
            return EX_PROTOCOL;
        }

        rc = pop3ext_pop3_tls(p);
        if (rc != EX_OK) {
            return rc;
        }

        rc = pop3ext_pop3_capa(p);
        if (rc != EX_OK) {
            return rc;
        }
    }

    if (p->ssl == NULL && strcmp(p->host, "127.0.0.1") != 0
        && strcmp(p->host, "::1") != 0 && strcmp(p->host, "localhost") != 0)
    {
        pop3ext_error("warning: pop3 server %s offers no STLS: the password "
                      "goes in clear text", p->name);
    }

    return pop3ext_pop3_login(p, password, len);
}


static int
pop3ext_pop3_connect(pop3ext_pop3_t *p)
{
    return pop3ext_sock_connect(&pop3ext_pop3_peer, p->name, p->host,
                                p->port,
                                pop3ext_now() + POP3EXT_POP3_TIMEOUT,
                                &p->fd);
}


/* the name is checked unless --insecure; a DNS name is sent as SNI */

static int
pop3ext_pop3_tls(pop3ext_pop3_t *p)
{
    int  rc;

    if (p->ssl_ctx == NULL) {
        if (p->tls_ca != NULL && access(p->tls_ca, R_OK) == -1) {
            pop3ext_error("cannot read \"%s\": %s", p->tls_ca,
                          strerror(errno));
            return EX_CONFIG;
        }

        rc = pop3ext_tls_context(&p->ssl_ctx, p->tls_ca, !p->insecure);
        if (rc != EX_OK) {
            return rc;
        }
    }

    return pop3ext_sock_tls(&pop3ext_pop3_peer, p->name, p->ssl_ctx, p->fd,
                            p->host, !p->insecure,
                            pop3ext_now() + POP3EXT_POP3_TIMEOUT, &p->ssl);
}


static int
pop3ext_pop3_send(pop3ext_pop3_t *p, const char *buf, size_t len)
{
    return pop3ext_sock_send(&pop3ext_pop3_peer, p->name, p->fd, p->ssl, buf,
                             len, pop3ext_now() + POP3EXT_POP3_TIMEOUT);
}


/* reads more into the buffer, after moving what is unread to its start */

static int
pop3ext_pop3_fill(pop3ext_pop3_t *p)
{
    ssize_t  got;

    if (p->pos > 0) {
        memmove(p->buf, p->buf + p->pos, p->end - p->pos);
        p->end -= p->pos;
        p->pos = 0;
    }

    got = pop3ext_sock_recv(&pop3ext_pop3_peer, p->name, p->fd, p->ssl,
                            p->buf + p->end, POP3EXT_POP3_BUF - p->end,
                            pop3ext_now() + POP3EXT_POP3_TIMEOUT);

    if (got == POP3EXT_SOCK_TIMEDOUT) {
        pop3ext_error("pop3 server %s: no reply within %d s", p->name,
                      POP3EXT_POP3_TIMEOUT / 1000);
        return EX_TEMPFAIL;
    }

    if (got == POP3EXT_SOCK_ERROR) {
        return EX_TEMPFAIL;
    }

    if (got == 0) {
        pop3ext_error("pop3 server %s closed the connection", p->name);
        return EX_TEMPFAIL;
    }

    p->end += got;

    return EX_OK;
}


/*
 * The next piece of the input: a whole line with its line end (*whole
 * set), or, for a line longer than the buffer, as much of it as the
 * buffer holds.  Consumed.
 */

static int
pop3ext_pop3_chunk(pop3ext_pop3_t *p, const u_char **data, size_t *len,
    int *whole)
{
    int      rc;
    u_char  *nl;
    size_t   scanned;

    scanned = 0;

    for ( ;; ) {
        nl = memchr(p->buf + p->pos + scanned, '\n',
                    p->end - p->pos - scanned);

        if (nl != NULL) {
            *data = p->buf + p->pos;
            *len = nl + 1 - (p->buf + p->pos);
            *whole = 1;
            p->pos += *len;
            return EX_OK;
        }

        if (p->end - p->pos == POP3EXT_POP3_BUF) {
            *data = p->buf + p->pos;
            *len = p->end - p->pos;
            *whole = 0;
            p->pos = p->end;
            return EX_OK;
        }

        scanned = p->end - p->pos;

        rc = pop3ext_pop3_fill(p);
        if (rc != EX_OK) {
            p->broken = 1;
            return rc;
        }
    }
}


/*
 * A line of a reply into line, of size octets, without its line end and
 * NUL-terminated; what ("reply line") is said to be too long otherwise.
 */

static int
pop3ext_pop3_line(pop3ext_pop3_t *p, const char *what, char *line,
    size_t size, size_t *len)
{
    int            rc, whole;
    size_t         n;
    const u_char  *data;

    rc = pop3ext_pop3_chunk(p, &data, &n, &whole);
    if (rc != EX_OK) {
        return rc;
    }

    while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\r')) {
        n--;
    }

    if (!whole || n >= size) {
        pop3ext_error("pop3 server %s: %s too long", p->name, what);
        return EX_PROTOCOL;
    }

    memcpy(line, data, n);
    line[n] = '\0';
    *len = n;

    return EX_OK;
}


/* a status line, without its line end; *ok: it is "+OK" */

static int
pop3ext_pop3_reply(pop3ext_pop3_t *p, char *line, size_t size, int *ok)
{
    int     rc;
    size_t  len;

    rc = pop3ext_pop3_line(p, "reply line", line, size, &len);
    if (rc != EX_OK) {
        return rc;
    }

    if (len >= 3 && memcmp(line, "+OK", 3) == 0
        && (len == 3 || line[3] == ' '))
    {
        *ok = 1;
        return EX_OK;
    }

    if (len >= 4 && memcmp(line, "-ERR", 4) == 0
        && (len == 4 || line[4] == ' '))
    {
        *ok = 0;
        return EX_OK;
    }

    pop3ext_error("pop3 server %s: not a POP3 reply: \"%.60s\"", p->name,
                  line);

    return EX_PROTOCOL;
}


/* a command (shown as show in messages, if given) and its status line */

static int
pop3ext_pop3_cmd(pop3ext_pop3_t *p, const char *cmd, const char *show,
    char *reply, size_t size, int *ok)
{
    int     rc;
    char    buf[POP3EXT_POP3_LINE];
    size_t  len;

    len = strlen(cmd);

    if (len + 2 > sizeof(buf)) {
        pop3ext_error("pop3 command %s too long", show ? show : cmd);
        return EX_SOFTWARE;
    }

    memcpy(buf, cmd, len);
    buf[len++] = '\r';
    buf[len++] = '\n';

    rc = pop3ext_pop3_send(p, buf, len);

    explicit_bzero(buf, sizeof(buf));

    if (rc == EX_OK) {
        rc = pop3ext_pop3_reply(p, reply, size, ok);
    }

    if (rc != EX_OK) {
        p->broken = 1;
    }

    return rc;
}


/*
 * A line of a multi-line reply, dot-unstuffed, without its line end;
 * *done at the terminating ".".
 */

static int
pop3ext_pop3_multi(pop3ext_pop3_t *p, char *line, size_t size, int *done)
{
    int     rc;
    size_t  len;

    /* a listing cut short leaves the connection out of step: no QUIT */

    rc = pop3ext_pop3_line(p, "listing line", line, size, &len);
    if (rc != EX_OK) {
        p->broken = 1;
        return rc;
    }

    *done = (len == 1 && line[0] == '.');

    /* dot-unstuffed, with its NUL */

    if (len > 0 && line[0] == '.') {
        memmove(line, line + 1, len);
    }

    return EX_OK;
}


/* RFC 2449: STLS, USER, SASL PLAIN; a server without CAPA gets USER */

static int
pop3ext_pop3_capa(pop3ext_pop3_t *p)
{
    int    rc, ok, done;
    char   line[POP3EXT_POP3_LINE], *w;

    p->capa_stls = 0;
    p->capa_user = 0;
    p->capa_plain = 0;
    p->capa_known = 0;

    rc = pop3ext_pop3_cmd(p, "CAPA", NULL, line, sizeof(line), &ok);
    if (rc != EX_OK || !ok) {
        return rc;
    }

    p->capa_known = 1;

    for ( ;; ) {
        rc = pop3ext_pop3_multi(p, line, sizeof(line), &done);
        if (rc != EX_OK || done) {
            return rc;
        }

        w = strtok(line, " \t");

        if (w == NULL) {
            continue;
        }

        if (strcasecmp(w, "STLS") == 0) {
            p->capa_stls = 1;

        } else if (strcasecmp(w, "USER") == 0) {
            p->capa_user = 1;

        } else if (strcasecmp(w, "SASL") == 0) {
            while ((w = strtok(NULL, " \t")) != NULL) {
                if (strcasecmp(w, "PLAIN") == 0) {
                    p->capa_plain = 1;
                }
            }
        }
    }
}


static int
pop3ext_pop3_login(pop3ext_pop3_t *p, const char *password, size_t len)
{
    int       rc, ok, n;
    char      cmd[POP3EXT_POP3_LINE], line[POP3EXT_POP3_LINE];
    u_char    plain[2 * POP3EXT_LINE_MAX + 4];
    size_t    llen;

    llen = strlen(p->login);

    if (p->capa_known && !p->capa_user && p->capa_plain) {

        /* RFC 4616: authzid (none), NUL, authcid, NUL, password */

        if (llen + len + 2 > sizeof(plain)
            || 4 * ((llen + len + 4) / 3) + 12 > sizeof(cmd))
        {
            pop3ext_error("the login and password are too long");
            return EX_DATAERR;
        }

        plain[0] = '\0';
        memcpy(plain + 1, p->login, llen);
        plain[1 + llen] = '\0';
        memcpy(plain + 2 + llen, password, len);

        memcpy(cmd, "AUTH PLAIN ", 11);
        n = EVP_EncodeBlock((u_char *) cmd + 11, plain, (int) (llen + len + 2));
        cmd[11 + n] = '\0';

        explicit_bzero(plain, sizeof(plain));

        rc = pop3ext_pop3_cmd(p, cmd, "AUTH PLAIN", line, sizeof(line), &ok);

        explicit_bzero(cmd, sizeof(cmd));

        if (rc != EX_OK) {
            return rc;
        }

        if (!ok) {
            return pop3ext_pop3_refused(p, "AUTH PLAIN", line);
        }

        p->logged_in = 1;

        return EX_OK;
    }

    if (llen + 7 > sizeof(cmd) || len + 7 > sizeof(cmd)) {
        pop3ext_error("the login or password is too long");
        return EX_DATAERR;
    }

    snprintf(cmd, sizeof(cmd), "USER %s", p->login);

    rc = pop3ext_pop3_cmd(p, cmd, NULL, line, sizeof(line), &ok);
    if (rc != EX_OK) {
        return rc;
    }

    if (!ok) {
        return pop3ext_pop3_refused(p, "USER", line);
    }

    memcpy(cmd, "PASS ", 5);
    memcpy(cmd + 5, password, len);
    cmd[5 + len] = '\0';

    rc = pop3ext_pop3_cmd(p, cmd, "PASS", line, sizeof(line), &ok);

    explicit_bzero(cmd, sizeof(cmd));

    if (rc != EX_OK) {
        return rc;
    }

    if (!ok) {
        return pop3ext_pop3_refused(p, "PASS", line);
    }

    p->logged_in = 1;

    return EX_OK;
}


/*
 * A refused login: for good (a wrong password, EX_NOPERM), or for now
 * (RFC 2449 and 3206 codes IN-USE, LOGIN-DELAY, SYS/TEMP: EX_TEMPFAIL).
 */

static int
pop3ext_pop3_refused(pop3ext_pop3_t *p, const char *what, const char *reply)
{
    const char  *code;

    code = reply + 4;

    while (*code == ' ') {
        code++;
    }

    if (strncasecmp(code, "[IN-USE]", 8) == 0
        || strncasecmp(code, "[LOGIN-DELAY]", 13) == 0
        || strncasecmp(code, "[SYS/TEMP]", 10) == 0)
    {
        pop3ext_error("pop3 server %s refused %s for now: %s", p->name,
                      what, reply);
        return EX_TEMPFAIL;
    }

    pop3ext_error("pop3 server %s refused %s for \"%s\": %s", p->name, what,
                  p->login, reply);

    return EX_NOPERM;
}


/*
 * The messages and their UIDLs, in the order of their message numbers,
 * which is the order the server's clients know; then their sizes.
 */

int
pop3ext_pop3_uidl(pop3ext_pop3_t *p, pop3ext_import_list_t *list)
{
    int                    rc, ok, done;
    char                   line[POP3EXT_POP3_LINE], *s, *u;
    unsigned long          num;
    pop3ext_import_msg_t  *m;

    rc = pop3ext_pop3_cmd(p, "UIDL", NULL, line, sizeof(line), &ok);
    if (rc != EX_OK) {
        return rc;
    }

    if (!ok) {
        pop3ext_error("pop3 server %s does not list UIDLs (%s): without "
                      "them its clients would download everything again",
                      p->name, line);
        return EX_UNAVAILABLE;
    }

    for ( ;; ) {
        rc = pop3ext_pop3_multi(p, line, sizeof(line), &done);
        if (rc != EX_OK) {
            return rc;
        }

        if (done) {
            break;
        }

        num = strtoul(line, &s, 10);

        if (s == line || *s != ' ' || num == 0 || num > UINT32_MAX) {
            pop3ext_error("pop3 server %s: bad UIDL line \"%.60s\"",
                          p->name, line);
            p->broken = 1;
            return EX_PROTOCOL;
        }

        while (*s == ' ') {
            s++;
        }

        /* the UIDL is the rest of the line; its validity is checked later */

        u = s + strlen(s);

        while (u > s && (u[-1] == ' ' || u[-1] == '\t')) {
            u--;
        }

        *u = '\0';

        if (list->nmsgs > 0 && num <= list->msgs[list->nmsgs - 1].num) {
            pop3ext_error("pop3 server %s: UIDL lines out of order at "
                          "message %lu", p->name, num);
            p->broken = 1;
            return EX_PROTOCOL;
        }

        m = pop3ext_import_add(list);
        if (m == NULL) {
            return EX_TEMPFAIL;
        }

        m->num = (unsigned) num;
        m->uidl = strdup(s);

        if (m->uidl == NULL) {
            pop3ext_error("out of memory");
            return EX_TEMPFAIL;
        }
    }

    return pop3ext_pop3_list(p, list);
}


/* the sizes, so that a message too large is not downloaded */

static int
pop3ext_pop3_list(pop3ext_pop3_t *p, pop3ext_import_list_t *list)
{
    int                  rc, ok, done;
    char                 line[POP3EXT_POP3_LINE], *s;
    unsigned             i;
    unsigned long        num;
    unsigned long long   size;

    rc = pop3ext_pop3_cmd(p, "LIST", NULL, line, sizeof(line), &ok);
    if (rc != EX_OK) {
        return rc;
    }

    if (!ok) {
        pop3ext_error("pop3 server %s refused LIST: %s", p->name, line);
        return EX_PROTOCOL;
    }

    i = 0;

    for ( ;; ) {
        rc = pop3ext_pop3_multi(p, line, sizeof(line), &done);
        if (rc != EX_OK || done) {
            return rc;
        }

        num = strtoul(line, &s, 10);

        if (s == line || *s != ' ') {
            pop3ext_error("pop3 server %s: bad LIST line \"%.60s\"",
                          p->name, line);
            p->broken = 1;
            return EX_PROTOCOL;
        }

        size = strtoull(s, NULL, 10);

        /* both listings are by message number */

        while (i < list->nmsgs && list->msgs[i].num < num) {
            i++;
        }

        if (i < list->nmsgs && list->msgs[i].num == num) {
            list->msgs[i].size = size;
        }
    }
}


/*
 * RETR: the message, dot-unstuffed, as the server sent its lines.  A
 * message longer than max is read to its end, so that the session goes
 * on, and refused (EX_DATAERR); so is a message the server refuses.
 */

int
pop3ext_pop3_retr(pop3ext_pop3_t *p, pop3ext_import_msg_t *m, size_t max,
    u_char **msg, size_t *len)
{
    int            rc, ok, whole, bol;
    char           cmd[32], line[POP3EXT_POP3_LINE];
    u_char        *buf, *nb;
    size_t         n, size, dlen;
    const u_char  *data;

    snprintf(cmd, sizeof(cmd), "RETR %u", m->num);

    rc = pop3ext_pop3_cmd(p, cmd, NULL, line, sizeof(line), &ok);
    if (rc != EX_OK) {
        return rc;
    }

    if (!ok) {
        pop3ext_error("message %u (UIDL \"%s\"): the server refused RETR: "
                      "%s; skipped", m->num, m->uidl, line);
        return EX_DATAERR;
    }

    buf = NULL;
    size = 0;
    n = 0;
    bol = 1;

    for ( ;; ) {
        rc = pop3ext_pop3_chunk(p, &data, &dlen, &whole);
        if (rc != EX_OK) {
            free(buf);
            return rc;
        }

        if (bol && dlen > 0 && data[0] == '.') {
            if ((dlen == 2 && data[1] == '\n')
                || (dlen == 3 && data[1] == '\r' && data[2] == '\n'))
            {
                break;
            }

            data++;
            dlen--;
        }

        bol = whole;

        if (n + dlen > max + 1) {
            /* too large: the rest is read and dropped */
            n = max + 1;
            continue;
        }

        if (n + dlen > size) {
            size = size ? size * 2 : POP3EXT_READ_CHUNK;

            while (size < n + dlen) {
                size *= 2;
            }

            if (size > max + 1) {
                size = max + 1;
            }

            nb = realloc(buf, size);
            if (nb == NULL) {
                pop3ext_error("out of memory");
                free(buf);
                return EX_TEMPFAIL;
            }

            buf = nb;
        }

        memcpy(buf + n, data, dlen);
        n += dlen;
    }

    if (n > max) {
        pop3ext_error("message %u (UIDL \"%s\"): larger than the limit of "
                      "%zu octets (POP3EXT_MAX_SIZE); skipped", m->num,
                      m->uidl, max);
        free(buf);
        return EX_DATAERR;
    }

    *msg = buf;
    *len = n;

    return EX_OK;
}


/* QUIT (nothing was marked, so nothing is removed), and the socket closed */

void
pop3ext_pop3_close(pop3ext_pop3_t *p)
{
    int   ok;
    char  line[POP3EXT_POP3_LINE];

    if (p->fd != -1 && p->logged_in && !p->broken) {
        p->logged_in = 0;
        (void) pop3ext_pop3_cmd(p, "QUIT", NULL, line, sizeof(line), &ok);
    }

    if (p->ssl != NULL) {
        (void) SSL_shutdown(p->ssl);
        SSL_free(p->ssl);
        p->ssl = NULL;
    }

    if (p->ssl_ctx != NULL) {
        SSL_CTX_free(p->ssl_ctx);
        p->ssl_ctx = NULL;
    }

    if (p->fd != -1) {
        close(p->fd);
        p->fd = -1;
    }

    free(p->buf);
    p->buf = NULL;
}


static int
pop3ext_hex(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: reading a message and delivering it (deliver).
 */


#include "pop3ext.h"


static int pop3ext_read_message(size_t max, u_char **msg, size_t *len);


/* POP3EXT_MAX_SIZE, or the default */

int
pop3ext_max_size(size_t *max)
{
    const char          *s, *p;
    unsigned long long   v;

    *max = POP3EXT_DEFAULT_MAX_SIZE;

    s = getenv("POP3EXT_MAX_SIZE");

    if (s == NULL || s[0] == '\0') {
        return EX_OK;
    }

    v = 0;

    for (p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || v > POP3EXT_MAX_MAX_SIZE) {
            break;
        }

        v = v * 10 + (*p - '0');
    }

    if (*p != '\0' || v == 0 || v > POP3EXT_MAX_MAX_SIZE) {
        return pop3ext_usage_error("POP3EXT_MAX_SIZE must be 1 to %d "
                                   "octets", POP3EXT_MAX_MAX_SIZE);
    }

    *max = (size_t) v;

    return EX_OK;
}


/*
 * Reads the message on stdin, at most max + 1 octets: normalisation only
 * adds octets, so more cannot fit.
 */

static int
pop3ext_read_message(size_t max, u_char **msg, size_t *len)
{
    int       rc;
    u_char   *buf, *p;
    size_t    size, n;
    ssize_t   got;

    buf = NULL;
    size = 0;
    n = 0;

    for ( ;; ) {
        if (n == size) {
            if (size == max + 1) {
                goto too_large;
            }

            size = (size == 0) ? POP3EXT_READ_CHUNK : size * 2;

            if (size > max + 1) {
                size = max + 1;
            }

            p = realloc(buf, size);
            if (p == NULL) {
                goto no_memory;
            }

            buf = p;
        }

        got = read(STDIN_FILENO, buf + n, size - n);

        if (got == -1) {
            if (errno == EINTR) {
                continue;
            }

            pop3ext_error("cannot read the message: %s", strerror(errno));
            free(buf);
            return EX_IOERR;
        }

        if (got == 0) {
            break;
        }

        n += got;
    }

    if (n == 0) {
        pop3ext_error("empty message");
        free(buf);
        return EX_DATAERR;
    }

    rc = pop3ext_crlf(&buf, &n, max);

    if (rc == EX_DATAERR) {
        goto too_large;
    }

    if (rc != EX_OK) {
        goto no_memory;
    }

    *msg = buf;
    *len = n;

    return EX_OK;

too_large:

    pop3ext_error("message too large: the limit is %zu octets", max);
    free(buf);
    return EX_DATAERR;

no_memory:

    /* the size is bounded, so this is transient: let the MTA retry */
    pop3ext_error("out of memory");
    free(buf);
    return EX_TEMPFAIL;
}


/*
 * Gives every bare LF a CR and every CR alone an LF, as the model's
 * invariants want (DELIVER refuses anything else, and an MTA would retry
 * a refused message for days), and a message that does not end with a
 * line end a CRLF.  *msg, malloc()ed, of *len octets, is reallocated in
 * place; an empty message stays empty.  A result longer than max is
 * EX_DATAERR, no memory EX_TEMPFAIL; *msg is unchanged then, and nothing
 * is printed: the caller names the message.
 */

int
pop3ext_crlf(u_char **msg, size_t *len, size_t max)
{
    int       crlf;
    u_char   *buf, *p;
    size_t    n, i, j, extra;

    buf = *msg;
    n = *len;

    if (n == 0) {
        return EX_OK;
    }

    extra = 0;

    for (i = 0; i < n; i++) {
        if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r')) {
            extra++;

        } else if (buf[i] == '\r' && (i == n - 1 || buf[i + 1] != '\n')) {
            extra++;
        }
    }

    /* a CR alone at the end gets its LF below */
    crlf = (buf[n - 1] == '\n' || buf[n - 1] == '\r');

    if (!crlf) {
        extra += 2;
    }

    /* n <= max + 1 <= 512 MiB + 1, so this cannot overflow */

    if (n + extra > max) {
        return EX_DATAERR;
    }

    if (extra == 0) {
        return EX_OK;
    }

    p = realloc(buf, n + extra);
    if (p == NULL) {
        return EX_TEMPFAIL;
    }

    buf = p;

    /* back to front, in place: the write position never passes the read */

    j = n + extra;

    if (!crlf) {
        buf[--j] = '\n';
        buf[--j] = '\r';
    }

    for (i = n; i-- > 0; /* void */) {

        /* buf[i + 1] is unchanged or already copied onto itself */

        if (buf[i] == '\r' && (i == n - 1 || buf[i + 1] != '\n')) {
            buf[--j] = '\n';
        }

        buf[--j] = buf[i];

        if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r')) {
            buf[--j] = '\r';
        }
    }

    *msg = buf;
    *len = n + extra;

    return EX_OK;
}


/*
 * All recipients are resolved before anything is stored, so an unknown
 * user fails the delivery for everyone.  Recipients that share a mailbox
 * get one copy.
 *
 * A full mailbox (DELIVER's OVERQUOTA) does not stop the others: each
 * mailbox with room gets the message, and the status says that one was
 * full, temporarily (75, the MTA retries; with --id the retry stores
 * nothing twice) or, with --quota-full permanent, for good (77).  The
 * line that says so starts with the enhanced status code, 4.2.2 or 5.2.2
 * (RFC 3463, "mailbox full"), which Postfix's pipe(8) takes over the
 * exit status's own.
 */

int
pop3ext_deliver(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                 i, j, n, rc, tries, nkeys;
    char              (*mbox)[P3X_NAME_MAX + 1];
    u_char             *msg, rnd[6], digest[32];
    char                uid[P3X_UID_NEW_LEN + 1], ttl[32];
    size_t              len, max;
    redisReply         *r;
    const char         *av[14], *id;
    size_t              avlen[14];
    char                meta[POP3EXT_KEY_MAX], mtime[POP3EXT_KEY_MAX];
    char                when[32];
    unsigned long long  ms;
    char                index[POP3EXT_KEY_MAX], body[POP3EXT_KEY_MAX];
    char                dlv[POP3EXT_KEY_MAX], hex[2 * 32 + 1];
    int                 permanent, full;
    const char         *quota;
    unsigned long long  def_octets, def_messages;
    char                q_octets[32], q_messages[32];
    char                full_mbox[P3X_NAME_MAX + 1], full_what[16];

    id = NULL;
    quota = NULL;
    permanent = 0;
    full = 0;

    while (argc > 0 && argv[0][0] == '-') {

        if (strcmp(argv[0], "--") == 0) {
            argc--;
            argv++;
            break;
        }

        if (strcmp(argv[0], "--id") == 0) {
            if (argc < 2 || argv[1][0] == '\0') {
                return pop3ext_usage_error("--id needs an ID");
            }

            id = argv[1];
            argc -= 2;
            argv += 2;
            continue;
        }

        if (strncmp(argv[0], "--id=", 5) == 0 && argv[0][5] != '\0') {
            id = argv[0] + 5;
            argc--;
            argv++;
            continue;
        }

        if (strcmp(argv[0], "--quota") == 0
            || strcmp(argv[0], "--quota-full") == 0)
        {
            if (argc < 2) {
                return pop3ext_usage_error("%s needs a value", argv[0]);
            }

            if (argv[0][7] == '\0') {
                quota = argv[1];

            } else if (strcmp(argv[1], "tempfail") == 0
                       || strcmp(argv[1], "permanent") == 0)
            {
                permanent = (argv[1][0] == 'p');

            } else {
                return pop3ext_usage_error("--quota-full must be \"tempfail\" "
                                           "or \"permanent\"");
            }

            argc -= 2;
            argv += 2;
            continue;
        }

        if (strncmp(argv[0], "--quota=", 8) == 0) {
            quota = argv[0] + 8;
            argc--;
            argv++;
            continue;
        }

        if (strncmp(argv[0], "--quota-full=", 13) == 0) {
            if (strcmp(argv[0] + 13, "tempfail") != 0
                && strcmp(argv[0] + 13, "permanent") != 0)
            {
                return pop3ext_usage_error("--quota-full must be \"tempfail\" "
                                           "or \"permanent\"");
            }

            permanent = (argv[0][13] == 'p');
            argc--;
            argv++;
            continue;
        }

        return pop3ext_usage_error("deliver: unknown option \"%s\"",
                                   argv[0]);
    }

    if (argc == 0) {
        return pop3ext_usage_error("deliver needs at least one USER");
    }

    for (i = 0; i < argc; i++) {
        rc = pop3ext_valid_user(argv[i]);
        if (rc != EX_OK) {
            return rc;
        }
    }

    rc = pop3ext_max_size(&max);
    if (rc != EX_OK) {
        return rc;
    }

    /* the server's default, for mailboxes without limits of their own */

    rc = pop3ext_quota_default(quota, &def_octets, &def_messages);
    if (rc != EX_OK) {
        return rc;
    }

    snprintf(q_octets, sizeof(q_octets), "%llu", def_octets);
    snprintf(q_messages, sizeof(q_messages), "%llu", def_messages);

    rc = pop3ext_read_message(max, &msg, &len);
    if (rc != EX_OK) {
        return rc;
    }

    mbox = calloc(argc, sizeof(*mbox));
    if (mbox == NULL) {
        pop3ext_error("out of memory");
        free(msg);
        return EX_TEMPFAIL;
    }

    /* the delivery id names a key of each mailbox by its SHA-256 */

    if (id) {
        SHA256((const u_char *) id, strlen(id), digest);

        for (i = 0; i < 32; i++) {
            sprintf(hex + 2 * i, "%02x", digest[i]);
        }
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        goto done;
    }

    n = 0;

    for (i = 0; i < argc; i++) {
        rc = pop3ext_mailbox(cx, argv[i], mbox[n]);
        if (rc != EX_OK) {
            goto done;
        }

        for (j = 0; j < n; j++) {
            if (strcmp(mbox[j], mbox[n]) == 0) {
                break;
            }
        }

        if (j == n) {
            n++;
        }
    }

    /* KEYS index, body, meta, time[, dlv]; see P3X_SCRIPT_DELIVER */

    nkeys = id ? 5 : 4;
    snprintf(ttl, sizeof(ttl), "%d", P3X_DELIVERY_TTL);

    av[0] = "EVAL";
    avlen[0] = sizeof("EVAL") - 1;
    av[1] = P3X_SCRIPT_DELIVER;
    avlen[1] = sizeof(P3X_SCRIPT_DELIVER) - 1;
    av[2] = id ? "5" : "4";
    avlen[2] = 1;
    av[3] = index;
    av[4] = body;
    av[5] = meta;
    av[6] = mtime;

    if (id) {
        av[7] = dlv;
    }

    av[3 + nkeys] = (const char *) msg;
    avlen[3 + nkeys] = len;
    av[4 + nkeys] = uid;
    avlen[4 + nkeys] = P3X_UID_NEW_LEN;
    av[5 + nkeys] = ttl;
    avlen[5 + nkeys] = strlen(ttl);
    av[6 + nkeys] = when;

    av[7 + nkeys] = q_octets;
    avlen[7 + nkeys] = strlen(q_octets);
    av[8 + nkeys] = q_messages;
    avlen[8 + nkeys] = strlen(q_messages);

    for (j = 0; j < n; j++) {

        for (tries = 0; /* void */; tries++) {

            if (pop3ext_random(rnd, sizeof(rnd)) != EX_OK) {
                rc = EX_UNAVAILABLE;
                goto done;
            }

            ms = pop3ext_clock_ms();

            p3x_uid_make((u_char *) uid, ms, rnd);
            uid[P3X_UID_NEW_LEN] = '\0';

            avlen[6 + nkeys] = snprintf(when, sizeof(when), "%llu", ms);

            if (pop3ext_key(index, P3X_MBOX_PREFIX, mbox[j],
                            P3X_INDEX_SUFFIX) != EX_OK
                || pop3ext_key(meta, P3X_MBOX_PREFIX, mbox[j],
                               P3X_META_SUFFIX) != EX_OK
                || pop3ext_key(mtime, P3X_MBOX_PREFIX, mbox[j],
                               P3X_TIME_SUFFIX) != EX_OK
                || pop3ext_key(body, P3X_MBOX_PREFIX, mbox[j],
                               P3X_MSG_SUFFIX) != EX_OK
                || (id && pop3ext_key(dlv, P3X_MBOX_PREFIX, mbox[j],
                                      P3X_DLV_SUFFIX) != EX_OK)
                || strlen(body) + P3X_UID_NEW_LEN >= POP3EXT_KEY_MAX
                || (id && strlen(dlv) + 2 * 32 >= POP3EXT_KEY_MAX))
            {
                rc = EX_SOFTWARE;
                goto done;
            }

            strcat(body, uid);

            if (id) {
                strcat(dlv, hex);
            }

            avlen[3] = strlen(index);
            avlen[4] = strlen(body);
            avlen[5] = strlen(meta);
            avlen[6] = strlen(mtime);

            if (id) {
                avlen[7] = strlen(dlv);
            }

            rc = pop3ext_call(cx, index, 1, 9 + nkeys, av, avlen, &r);
            if (rc != EX_OK) {
                goto done;
            }

            if (r->type != REDIS_REPLY_ERROR
                || strncmp(r->str, "EXISTS", 6) != 0)
            {
                break;
            }

            /*
             * The UID is taken.  After a lost connection, by this very
             * delivery, whose reply was lost: it is stored.  Otherwise
             * another UID, a few times.
             */

            if (cx->resent) {
                freeReplyObject(r);
                r = NULL;
                break;
            }

            if (tries == 3) {
                break;
            }

            freeReplyObject(r);
        }

        if (r == NULL) {
            continue;
        }

        /* the others may have room: they get it, the status says */

        if (r->type == REDIS_REPLY_ERROR
            && strncmp(r->str, "OVERQUOTA", 9) == 0)
        {
            if (!full) {
                memcpy(full_mbox, mbox[j], strlen(mbox[j]) + 1);
                snprintf(full_what, sizeof(full_what), "%s",
                         (r->len > 10) ? r->str + 10 : "");
            }

            full++;
            freeReplyObject(r);
            continue;
        }

        /* a body the script refuses is refused for good, not for now */

        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BADBODY", 7) == 0)
        {
            pop3ext_error("mailbox \"%s\" refused the message: %s",
                          mbox[j], r->str);
            freeReplyObject(r);
            rc = EX_DATAERR;
            goto done;
        }

        rc = pop3ext_check(cx, r);
        if (rc != EX_OK) {
            goto done;
        }

        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            pop3ext_error("unexpected reply to DELIVER for mailbox \"%s\"",
                          mbox[j]);
            rc = EX_SOFTWARE;
        }

        freeReplyObject(r);

        if (rc != EX_OK) {
            goto done;
        }
    }

done:

    /*
     * the first line of output, so that Postfix reads its code; only when
     * it is the reason for the status
     */

    if (full && rc == EX_OK) {
        fprintf(stderr, "%s mailbox \"%s\" is full (its %s quota)%s\n",
                permanent ? "5.2.2" : "4.2.2", full_mbox, full_what,
                (full > 1) ? ", and others" : "");
        rc = permanent ? EX_NOPERM : EX_TEMPFAIL;

    } else if (full) {
        pop3ext_error("mailbox \"%s\" is full (its %s quota)", full_mbox,
                      full_what);
    }

    free(mbox);
    free(msg);

    return rc;
}


/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: mailboxes: which one a user reads, its size (stat), and
 * deleting one (purge).
 */


#include "pop3ext.h"


static int pop3ext_scan(pop3ext_ctx_t *cx, const char *prefix);
static int pop3ext_unlink_batch(pop3ext_ctx_t *cx, redisReply *keys,
    unsigned m, unsigned masters, void *data);


/*
 * Resolves the mailbox of a user: its "mailbox" field if set and not
 * empty, else the user name.  mbox has room for P3X_NAME_MAX + 1 octets.
 */

int
pop3ext_mailbox(pop3ext_ctx_t *cx, const char *user, char *mbox)
{
    int          rc;
    redisReply  *r, *m;

    rc = pop3ext_user_record(cx, user, &r);
    if (rc != EX_OK) {
        return rc;
    }

    m = r->element[1];

    if (m->type == REDIS_REPLY_STRING && m->len > 0) {
        if (!p3x_valid_name((u_char *) m->str, m->len)) {
            pop3ext_error("user \"%s\" has an invalid mailbox name", user);
            rc = EX_SOFTWARE;
            goto done;
        }

        memcpy(mbox, m->str, m->len);
        mbox[m->len] = '\0';

    } else if (m->type == REDIS_REPLY_STRING || m->type == REDIS_REPLY_NIL) {
        /* the name was validated, it fits */
        memcpy(mbox, user, strlen(user) + 1);

    } else {
        pop3ext_error("unexpected mailbox field of user \"%s\"", user);
        rc = EX_SOFTWARE;
    }

done:

    freeReplyObject(r);

    return rc;
}


/* splits an index entry "UID SIZE"; returns 0 if it is malformed */

int
pop3ext_entry(const char *p, size_t len, size_t *uid_len,
    unsigned long long *size)
{
    size_t               i, n;
    unsigned long long   v;

    for (n = 0; n < len && p[n] != ' '; n++) {
        if ((u_char) p[n] < 0x21 || (u_char) p[n] > 0x7e) {
            return 0;
        }
    }

    if (n == 0 || n > P3X_UID_MAX || n + 1 >= len) {
        return 0;
    }

    v = 0;

    for (i = n + 1; i < len; i++) {
        if (p[i] < '0' || p[i] > '9' || v > (~0ULL - 9) / 10) {
            return 0;
        }

        v = v * 10 + (p[i] - '0');
    }

    *uid_len = n;
    *size = v;

    return 1;
}


/*
 * Deletes a mailbox: the bodies listed in its index, its index, meta,
 * time, lock, owner, last and dele keys and, with scan, any body the index no longer lists and
 * the delivery ids it remembers (a mailbox made again must take a retried
 * delivery whose id the old one had stored).
 */

int
pop3ext_purge(pop3ext_ctx_t *cx, const char *mbox, int scan)
{
    int                  rc, n;
    size_t               i, k, uid_len, elements;
    long long            start;
    redisReply          *r, *e;
    const char         **av;
    size_t              *avlen;
    char                *keys;
    unsigned long long   size;
    char                 index[POP3EXT_KEY_MAX], meta[POP3EXT_KEY_MAX];
    char                 lock[POP3EXT_KEY_MAX], dele[POP3EXT_KEY_MAX];
    char                 prefix[POP3EXT_KEY_MAX], dlv[POP3EXT_KEY_MAX];
    char                 mtime[POP3EXT_KEY_MAX], owner[POP3EXT_KEY_MAX];
    char                 last[POP3EXT_KEY_MAX];

    if (pop3ext_key(index, P3X_MBOX_PREFIX, mbox, P3X_INDEX_SUFFIX) != EX_OK
        || pop3ext_key(dlv, P3X_MBOX_PREFIX, mbox, P3X_DLV_SUFFIX) != EX_OK
        || pop3ext_key(mtime, P3X_MBOX_PREFIX, mbox, P3X_TIME_SUFFIX) != EX_OK
        || pop3ext_key(owner, P3X_MBOX_PREFIX, mbox, P3X_OWNER_SUFFIX)
           != EX_OK
        || pop3ext_key(last, P3X_MBOX_PREFIX, mbox, P3X_LAST_SUFFIX) != EX_OK
        || pop3ext_key(meta, P3X_MBOX_PREFIX, mbox, P3X_META_SUFFIX) != EX_OK
        || pop3ext_key(lock, P3X_MBOX_PREFIX, mbox, P3X_LOCK_SUFFIX) != EX_OK
        || pop3ext_key(dele, P3X_MBOX_PREFIX, mbox, P3X_DELE_SUFFIX) != EX_OK
        || pop3ext_key(prefix, P3X_MBOX_PREFIX, mbox, P3X_MSG_SUFFIX)
           != EX_OK)
    {
        return EX_SOFTWARE;
    }

    av = malloc((POP3EXT_DEL_BATCH + 1) * sizeof(const char *));
    avlen = malloc((POP3EXT_DEL_BATCH + 1) * sizeof(size_t));
    keys = malloc(POP3EXT_DEL_BATCH * POP3EXT_KEY_MAX);

    if (av == NULL || avlen == NULL || keys == NULL) {
        pop3ext_error("out of memory");
        rc = EX_TEMPFAIL;
        goto done;
    }

    av[0] = "UNLINK";
    avlen[0] = sizeof("UNLINK") - 1;

    for (start = 0; /* void */; start += POP3EXT_DEL_BATCH) {
        r = pop3ext_read(cx, &rc, index, "LRANGE %s %lld %lld", index,
                         start, start + POP3EXT_DEL_BATCH - 1);
        if (r == NULL) {
            goto done;
        }

        if (r->type != REDIS_REPLY_ARRAY
            || r->elements > POP3EXT_DEL_BATCH)
        {
            pop3ext_error("unexpected reply to LRANGE");
            freeReplyObject(r);
            rc = EX_SOFTWARE;
            goto done;
        }

        k = 1;

        for (i = 0; i < r->elements; i++) {
            e = r->element[i];

            /* a malformed entry is skipped here; the scan finds its body */

            if (e->type != REDIS_REPLY_STRING
                || !pop3ext_entry(e->str, e->len, &uid_len, &size))
            {
                continue;
            }

            n = snprintf(keys + (k - 1) * POP3EXT_KEY_MAX, POP3EXT_KEY_MAX,
                         "%s%.*s", prefix, (int) uid_len, e->str);

            if (n < 0 || n >= POP3EXT_KEY_MAX) {
                continue;
            }

            av[k] = keys + (k - 1) * POP3EXT_KEY_MAX;
            avlen[k] = n;
            k++;
        }

        elements = r->elements;
        freeReplyObject(r);

        if (k > 1) {
            rc = pop3ext_call(cx, index, 1, (int) k, av, avlen, &r);
            if (rc != EX_OK) {
                goto done;
            }

            rc = pop3ext_check(cx, r);
            if (rc != EX_OK) {
                goto done;
            }

            freeReplyObject(r);
        }

        if (elements < POP3EXT_DEL_BATCH) {
            break;
        }
    }

    /*
     * The index goes before the scan: a delivery racing with us then
     * leaves a whole mailbox, not a body without an index entry.
     */

    r = pop3ext_write(cx, &rc, index, "DEL %s %s %s %s %s %s %s", index, meta,
                      lock, dele, mtime, owner, last);
    if (r == NULL) {
        goto done;
    }

    freeReplyObject(r);

    if (scan) {
        rc = pop3ext_scan(cx, prefix);

        if (rc == EX_OK) {
            rc = pop3ext_scan(cx, dlv);
        }
    }

done:

    free(keys);
    free(avlen);
    free(av);

    return rc;
}


/*
 * Unlinks every key that starts with prefix, found by SCAN on every
 * master: a key the index lost may be anywhere a slot migration left it.
 * The prefix holds the mailbox's hash tag, so the keys found share one
 * slot and one UNLINK takes each batch.
 */

static int
pop3ext_scan(pop3ext_ctx_t *cx, const char *prefix)
{
    size_t       k;
    const char  *p;
    char         pattern[2 * POP3EXT_KEY_MAX + 2];

    /* names may hold glob characters; escape them, not just the name */

    k = 0;

    for (p = prefix; *p != '\0'; p++) {
        if (*p == '*' || *p == '?' || *p == '[' || *p == ']' || *p == '\\') {
            pattern[k++] = '\\';
        }

        pattern[k++] = *p;
    }

    pattern[k++] = '*';
    pattern[k] = '\0';

    /* the prefix routes each UNLINK: the keys' slot */

    return pop3ext_scan_keys(cx, pattern, pop3ext_unlink_batch,
                             (void *) prefix);
}


static int
pop3ext_unlink_batch(pop3ext_ctx_t *cx, redisReply *keys, unsigned m,
    unsigned masters, void *data)
{
    int           rc;
    size_t        i, k;
    redisReply   *u;
    const char  **av;
    size_t       *avlen;

    (void) m;
    (void) masters;

    if (keys->elements == 0) {
        return EX_OK;
    }

    av = malloc((keys->elements + 1) * sizeof(const char *));
    avlen = malloc((keys->elements + 1) * sizeof(size_t));

    if (av == NULL || avlen == NULL) {
        pop3ext_error("out of memory");
        free(avlen);
        free(av);
        return EX_TEMPFAIL;
    }

    av[0] = "UNLINK";
    avlen[0] = sizeof("UNLINK") - 1;
    k = 1;

    for (i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type == REDIS_REPLY_STRING) {
            av[k] = keys->element[i]->str;
            avlen[k] = keys->element[i]->len;
            k++;
        }
    }

    rc = EX_OK;

    if (k > 1) {
        rc = pop3ext_call(cx, data, 1, (int) k, av, avlen, &u);

        if (rc == EX_OK) {
            rc = pop3ext_check(cx, u);
        }

        if (rc == EX_OK) {
            freeReplyObject(u);
        }
    }

    free(avlen);
    free(av);

    return rc;
}


int
pop3ext_stat(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                  rc;
    size_t               i, uid_len, elements;
    long long            start;
    redisReply          *r, *e;
    const char          *user;
    unsigned long long   count, octets, size;
    char                 mbox[P3X_NAME_MAX + 1];
    char                 index[POP3EXT_KEY_MAX];

    rc = pop3ext_user_name(argc, argv, "stat", &user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_mailbox(cx, user, mbox);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_key(index, P3X_MBOX_PREFIX, mbox, P3X_INDEX_SUFFIX);
    if (rc != EX_OK) {
        return rc;
    }

    count = 0;
    octets = 0;

    for (start = 0; /* void */; start += POP3EXT_STAT_BATCH) {
        r = pop3ext_read(cx, &rc, index, "LRANGE %s %lld %lld", index,
                         start, start + POP3EXT_STAT_BATCH - 1);
        if (r == NULL) {
            return rc;
        }

        if (r->type != REDIS_REPLY_ARRAY) {
            pop3ext_error("unexpected reply to LRANGE");
            freeReplyObject(r);
            return EX_SOFTWARE;
        }

        for (i = 0; i < r->elements; i++) {
            e = r->element[i];

            if (e->type != REDIS_REPLY_STRING
                || !pop3ext_entry(e->str, e->len, &uid_len, &size)
                || octets + size < octets)
            {
                pop3ext_error("malformed entry in the index of mailbox "
                              "\"%s\"", mbox);
                freeReplyObject(r);
                return EX_SOFTWARE;
            }

            octets += size;
        }

        count += r->elements;
        elements = r->elements;
        freeReplyObject(r);

        if (elements < POP3EXT_STAT_BATCH) {
            break;
        }
    }

    printf("%llu %llu\n", count, octets);

    if (fflush(stdout) == EOF) {
        pop3ext_error("cannot write: %s", strerror(errno));
        return EX_IOERR;
    }

    return EX_OK;
}

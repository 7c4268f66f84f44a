
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: mailboxes: which one a user reads and its keys, reading its
 * index and the delivery times of its messages, its size (stat), and
 * deleting one (purge).
 */


#include "pop3ext.h"

#include <stddef.h>


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


/* the keys of the mailbox name, valid by the model's rule */

int
pop3ext_mbox_keys(pop3ext_mbox_t *mb, const char *name)
{
    size_t  i;

    static const struct {
        size_t       offset;
        const char  *suffix;
    } keys[] = {
        { offsetof(pop3ext_mbox_t, index), P3X_INDEX_SUFFIX },
        { offsetof(pop3ext_mbox_t, meta), P3X_META_SUFFIX },
        { offsetof(pop3ext_mbox_t, time), P3X_TIME_SUFFIX },
        { offsetof(pop3ext_mbox_t, lock), P3X_LOCK_SUFFIX },
        { offsetof(pop3ext_mbox_t, dele), P3X_DELE_SUFFIX },
        { offsetof(pop3ext_mbox_t, owner), P3X_OWNER_SUFFIX },
        { offsetof(pop3ext_mbox_t, last), P3X_LAST_SUFFIX },
        { offsetof(pop3ext_mbox_t, msg), P3X_MSG_SUFFIX },
        { offsetof(pop3ext_mbox_t, dlv), P3X_DLV_SUFFIX }
    };

    memcpy(mb->name, name, strlen(name) + 1);

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (pop3ext_key((char *) mb + keys[i].offset, P3X_MBOX_PREFIX, name,
                        keys[i].suffix)
            != EX_OK)
        {
            return EX_SOFTWARE;
        }
    }

    return EX_OK;
}


/*
 * What a command on a user's mail does first: connects, finds the
 * mailbox the user reads, and makes its keys.
 */

int
pop3ext_user_mbox(pop3ext_ctx_t *cx, const char *user, pop3ext_mbox_t *mb)
{
    int   rc;
    char  name[P3X_NAME_MAX + 1];

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_mailbox(cx, user, name);
    if (rc != EX_OK) {
        return rc;
    }

    return pop3ext_mbox_keys(mb, name);
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
 * An index read in batches of LRANGE, for a command that goes through a
 * mailbox of any size: pop3ext_index_next() gives each batch, never an
 * empty one, and NULL after the last.
 */

void
pop3ext_index_init(pop3ext_index_t *ix, const char *key, size_t batch)
{
    ix->key = key;
    ix->start = 0;
    ix->batch = batch;
    ix->done = 0;
}


int
pop3ext_index_next(pop3ext_ctx_t *cx, pop3ext_index_t *ix, redisReply **rp)
{
    int          rc;
    redisReply  *r;

    *rp = NULL;

    if (ix->done) {
        return EX_OK;
    }

    r = pop3ext_read(cx, &rc, ix->key, "LRANGE %s %lld %lld", ix->key,
                     ix->start, ix->start + (long long) ix->batch - 1);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements > ix->batch) {
        pop3ext_error("unexpected reply to LRANGE");
        freeReplyObject(r);
        return EX_SOFTWARE;
    }

    ix->start += ix->batch;
    ix->done = (r->elements < ix->batch);

    if (r->elements == 0) {
        freeReplyObject(r);
        return EX_OK;
    }

    *rp = r;

    return EX_OK;
}


/*
 * The whole index in one LRANGE, a snapshot, for a listing that numbers
 * the messages as a login would; *count and *octets are of the entries
 * that are well-formed, the ones a login lists.
 */

int
pop3ext_index_all(pop3ext_ctx_t *cx, const char *index, redisReply **rp,
    size_t *count, unsigned long long *octets)
{
    int                  rc;
    size_t               i, uid_len;
    redisReply          *r, *e;
    unsigned long long   size;

    r = pop3ext_read(cx, &rc, index, "LRANGE %s 0 -1", index);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_ARRAY) {
        pop3ext_error("unexpected reply to LRANGE");
        freeReplyObject(r);
        return EX_SOFTWARE;
    }

    *count = 0;
    *octets = 0;

    for (i = 0; i < r->elements; i++) {
        e = r->element[i];

        if (e->type == REDIS_REPLY_STRING
            && pop3ext_entry(e->str, e->len, &uid_len, &size))
        {
            *octets += size;
            (*count)++;
        }
    }

    *rp = r;

    return EX_OK;
}


/*
 * HMGET of the time hash for the UIDs of index entries first .. first +
 * max - 1 of r (a malformed entry asks for a field no UID can be); *tp
 * has one element per entry.
 */

int
pop3ext_times(pop3ext_ctx_t *cx, const char *mtime, redisReply *r,
    size_t first, size_t max, redisReply **tp)
{
    int                  rc;
    size_t               i, n, uid_len;
    size_t              *lens;
    redisReply          *e, *t;
    const char         **av;
    unsigned long long   size;

    n = r->elements - first;

    if (n > max) {
        n = max;
    }

    av = malloc((n + 2) * sizeof(const char *));
    lens = malloc((n + 2) * sizeof(size_t));

    if (av == NULL || lens == NULL) {
        pop3ext_error("out of memory");
        free(lens);
        free(av);
        return EX_TEMPFAIL;
    }

    av[0] = "HMGET";
    lens[0] = 5;
    av[1] = mtime;
    lens[1] = strlen(mtime);

    for (i = 0; i < n; i++) {
        e = r->element[first + i];

        if (e->type == REDIS_REPLY_STRING
            && pop3ext_entry(e->str, e->len, &uid_len, &size))
        {
            av[2 + i] = e->str;
            lens[2 + i] = uid_len;

        } else {
            av[2 + i] = " ";
            lens[2 + i] = 1;
        }
    }

    rc = pop3ext_call(cx, mtime, 0, (int) n + 2, av, lens, &t);

    free(lens);
    free(av);

    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_check(cx, t);
    if (rc != EX_OK) {
        return rc;
    }

    if (t->type != REDIS_REPLY_ARRAY || t->elements != n) {
        pop3ext_error("unexpected reply to HMGET of \"%s\"", mtime);
        freeReplyObject(t);
        return EX_SOFTWARE;
    }

    *tp = t;

    return EX_OK;
}


/*
 * A message's delivery time in ms: the time hash's value, else the clock
 * in a native UID (24 lowercase hex digits, the first 12 the writer's
 * clock), else unknown (*src NULL).  *src says which: "time" or "uid".
 */

unsigned long long
pop3ext_delivery_time(redisReply *t, const char *uid, size_t len,
    const char **src)
{
    size_t               i;
    unsigned long long   ms;

    if (t->type == REDIS_REPLY_STRING && t->len > 0 && t->len <= 19
        && strspn(t->str, "0123456789") == t->len)
    {
        *src = "time";
        return strtoull(t->str, NULL, 10);
    }

    if (len == P3X_UID_NEW_LEN
        && strspn(uid, "0123456789abcdef") >= P3X_UID_NEW_LEN)
    {
        ms = 0;

        for (i = 0; i < 12; i++) {
            ms = ms * 16 + (uid[i] <= '9' ? uid[i] - '0' : uid[i] - 'a' + 10);
        }

        *src = "uid";
        return ms;
    }

    *src = NULL;

    return 0;
}


/*
 * The delivery time of entry i of tm->index, a well-formed one, as
 * pop3ext_delivery_time() finds it; the time hash is asked for
 * POP3EXT_LIST_BATCH entries at a time.  The caller frees tm->batch.
 */

int
pop3ext_entry_time(pop3ext_ctx_t *cx, pop3ext_times_t *tm, size_t i,
    unsigned long long *ms, const char **src)
{
    int                  rc;
    size_t               uid_len;
    redisReply          *e;
    unsigned long long   size;

    if (tm->batch == NULL || i >= tm->first + POP3EXT_LIST_BATCH) {
        if (tm->batch != NULL) {
            freeReplyObject(tm->batch);
            tm->batch = NULL;
        }

        tm->first = i;

        rc = pop3ext_times(cx, tm->key, tm->index, i, POP3EXT_LIST_BATCH,
                           &tm->batch);
        if (rc != EX_OK) {
            return rc;
        }
    }

    e = tm->index->element[i];
    (void) pop3ext_entry(e->str, e->len, &uid_len, &size);

    *ms = pop3ext_delivery_time(tm->batch->element[i - tm->first], e->str,
                                uid_len, src);

    return EX_OK;
}


/*
 * Deletes a mailbox: the bodies listed in its index, its index, meta,
 * time, lock, owner, last and dele keys and, with scan, any body the
 * index no longer lists and the delivery ids it remembers (a mailbox made
 * again must take a retried delivery whose id the old one had stored).
 */

int
pop3ext_purge(pop3ext_ctx_t *cx, const char *mbox, int scan)
{
    int                  rc, n;
    size_t               i, k, uid_len;
    redisReply          *r, *e;
    const char         **av;
    size_t              *avlen;
    char                *keys;
    pop3ext_index_t      ix;
    pop3ext_mbox_t       mb;
    unsigned long long   size;

    if (pop3ext_mbox_keys(&mb, mbox) != EX_OK) {
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

    pop3ext_index_init(&ix, mb.index, POP3EXT_DEL_BATCH);

    for ( ;; ) {
        rc = pop3ext_index_next(cx, &ix, &r);
        if (rc != EX_OK) {
            goto done;
        }

        if (r == NULL) {
            break;
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
                         "%s%.*s", mb.msg, (int) uid_len, e->str);

            if (n < 0 || n >= POP3EXT_KEY_MAX) {
                continue;
            }

            av[k] = keys + (k - 1) * POP3EXT_KEY_MAX;
            avlen[k] = n;
            k++;
        }

        freeReplyObject(r);

        if (k > 1) {
            rc = pop3ext_call(cx, mb.index, 1, (int) k, av, avlen, &r);
            if (rc != EX_OK) {
                goto done;
            }

            rc = pop3ext_check(cx, r);
            if (rc != EX_OK) {
                goto done;
            }

            freeReplyObject(r);
        }
    }

    /*
     * The index goes before the scan: a delivery racing with us then
     * leaves a whole mailbox, not a body without an index entry.
     */

    r = pop3ext_write(cx, &rc, mb.index, "DEL %s %s %s %s %s %s %s",
                      mb.index, mb.meta, mb.lock, mb.dele, mb.time, mb.owner,
                      mb.last);
    if (r == NULL) {
        goto done;
    }

    freeReplyObject(r);

    if (scan) {
        rc = pop3ext_scan(cx, mb.msg);

        if (rc == EX_OK) {
            rc = pop3ext_scan(cx, mb.dlv);
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
    size_t               i, uid_len;
    redisReply          *r, *e;
    const char          *user;
    pop3ext_index_t      ix;
    pop3ext_mbox_t       mb;
    unsigned long long   count, octets, size;

    rc = pop3ext_user_name(argc, argv, "stat", &user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_user_mbox(cx, user, &mb);
    if (rc != EX_OK) {
        return rc;
    }

    count = 0;
    octets = 0;

    pop3ext_index_init(&ix, mb.index, POP3EXT_STAT_BATCH);

    for ( ;; ) {
        rc = pop3ext_index_next(cx, &ix, &r);
        if (rc != EX_OK) {
            return rc;
        }

        if (r == NULL) {
            break;
        }

        for (i = 0; i < r->elements; i++) {
            e = r->element[i];

            if (e->type != REDIS_REPLY_STRING
                || !pop3ext_entry(e->str, e->len, &uid_len, &size)
                || octets + size < octets)
            {
                pop3ext_error("malformed entry in the index of mailbox "
                              "\"%s\"", mb.name);
                freeReplyObject(r);
                return EX_SOFTWARE;
            }

            octets += size;
        }

        count += r->elements;
        freeReplyObject(r);
    }

    printf("%llu %llu\n", count, octets);

    if (fflush(stdout) == EOF) {
        pop3ext_error("cannot write: %s", strerror(errno));
        return EX_IOERR;
    }

    return EX_OK;
}

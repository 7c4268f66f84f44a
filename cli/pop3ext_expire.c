
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: retention.  A user's retention is the user record's "expire"
 * field (days, or "never"; absent: the server's, nginx's
 * pop3_ext_expire), set by "user add/set --expire", announced by the
 * module as RFC 2449's EXPIRE.  "expunge" enforces it, from cron: it
 * removes the messages delivered longer ago than their retention with the
 * model's EXPUNGE script, which refuses a maildrop a session holds (message
 * numbers never change under a client: that mailbox is left for the next
 * run).  The retention is a minimum: removing later is allowed, removing
 * sooner never.
 */


#include "pop3ext.h"


#define POP3EXT_NEVER         (~0ULL)

/* what was found of one mailbox */
typedef struct {
    char                mbox[P3X_NAME_MAX + 1];
    unsigned long long  days;         /* the longest of its users' */
} pop3ext_target_t;

typedef struct {
    pop3ext_target_t   *t;
    size_t              n;
    size_t              alloc;
    unsigned long long  def;          /* the retention of a user without */
} pop3ext_targets_t;


static int pop3ext_expire_option(const char *v, const char *what,
    unsigned long long *days);
static int pop3ext_expire_user(pop3ext_ctx_t *cx, const char *user,
    unsigned long long def, pop3ext_targets_t *ts);
static int pop3ext_expire_found(pop3ext_ctx_t *cx, const char *name,
    redisReply *key, unsigned m, unsigned masters, void *data);
static int pop3ext_expire_add(pop3ext_targets_t *ts, const char *mbox,
    unsigned long long days);
static int pop3ext_expire_cmp(const void *a, const void *b);
static int pop3ext_expire_mailbox(pop3ext_ctx_t *cx, const char *mbox,
    unsigned long long days, int dry, int *in_use);
static int pop3ext_expire_old(pop3ext_ctx_t *cx, pop3ext_mbox_t *mb,
    unsigned long long cutoff, char ***entries, size_t *n,
    unsigned long long *octets);
static int pop3ext_expire_run(pop3ext_ctx_t *cx, pop3ext_mbox_t *mb,
    char **entries, size_t n, unsigned long long *removed,
    unsigned long long *octets, int *in_use);
static void pop3ext_expire_free(char **entries, size_t n);


/*
 * "never" or 0 to P3X_EXPIRE_DAYS_MAX days, as the module reads the field:
 * 0 and *days, or -1.
 */

int
pop3ext_expire_parse(const char *s, size_t len, unsigned long long *days)
{
    size_t              i;
    unsigned long long  v;

    if (len == sizeof(P3X_EXPIRE_NEVER) - 1
        && strncasecmp(s, P3X_EXPIRE_NEVER, len) == 0)
    {
        *days = POP3EXT_NEVER;
        return 0;
    }

    if (len == 0 || len > 9) {
        return -1;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        v = v * 10 + (s[i] - '0');
    }

    if (v > P3X_EXPIRE_DAYS_MAX) {
        return -1;
    }

    *days = v;

    return 0;
}


/*
 * The value of --expire for the user record: NULL for "default" (the
 * field goes), else the field's text in buf; -1 for a bad one.
 */

int
pop3ext_expire_field(const char *v, char *buf, size_t size,
    const char **field)
{
    unsigned long long  days;

    if (strcmp(v, "default") == 0) {
        *field = NULL;
        return 0;
    }

    if (pop3ext_expire_parse(v, strlen(v), &days) != 0) {
        pop3ext_usage_error("--expire must be DAYS (0 to %d), \"never\" or "
                            "\"default\", not \"%s\"", P3X_EXPIRE_DAYS_MAX,
                            v);
        return -1;
    }

    if (days == POP3EXT_NEVER) {
        snprintf(buf, size, "%s", P3X_EXPIRE_NEVER);

    } else {
        snprintf(buf, size, "%llu", days);
    }

    *field = buf;

    return 0;
}


/* user set USER --expire DAYS|never|default */

int
pop3ext_user_set(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int          i, rc, words;
    char         buf[32];
    const char  *user, *expire, *field;

    user = NULL;
    expire = NULL;
    words = 0;

    for (i = 0; i < argc; i++) {

        if (!words && strcmp(argv[i], "--") == 0) {
            words = 1;

        } else if (words || argv[i][0] != '-') {
            if (user != NULL) {
                return pop3ext_usage_error("user set needs exactly one "
                                           "USER");
            }

            user = argv[i];

        } else if (strcmp(argv[i], "--expire") == 0 && i + 1 < argc) {
            expire = argv[++i];

        } else if (strncmp(argv[i], "--expire=", 9) == 0) {
            expire = argv[i] + 9;

        } else {
            return pop3ext_usage_error("user set: unknown option \"%s\" "
                                       "(or a value missing)", argv[i]);
        }
    }

    if (user == NULL) {
        return pop3ext_usage_error("user set needs exactly one USER");
    }

    if (expire == NULL) {
        return pop3ext_usage_error("user set needs --expire");
    }

    rc = pop3ext_valid_user(user);
    if (rc != EX_OK) {
        return rc;
    }

    if (pop3ext_expire_field(expire, buf, sizeof(buf), &field) != 0) {
        return EX_USAGE;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_audit(cx, argc, argv);
    if (rc != EX_OK) {
        return rc;
    }

    return pop3ext_user_field(cx, user, P3X_FIELD_EXPIRE, field);
}


static int
pop3ext_expire_option(const char *v, const char *what,
    unsigned long long *days)
{
    if (pop3ext_expire_parse(v, strlen(v), days) != 0) {
        return pop3ext_usage_error("%s must be DAYS (1 to %d) or \"never\", "
                                   "not \"%s\"", what, P3X_EXPIRE_DAYS_MAX,
                                   v);
    }

    /*
     * EXPIRE 0 removes what a session retrieved, at its QUIT: nothing
     * unread is removed for it, here or there
     */

    if (*days == 0) {
        return pop3ext_usage_error("%s 0 would remove unread mail; EXPIRE 0 "
                                   "is enforced by the module at QUIT, for "
                                   "retrieved messages", what);
    }

    return EX_OK;
}


/*
 * expunge [--older-than DAYS|never] [--dry-run] USER... | --all
 *
 * Each mailbox keeps its messages for the retention of its users: a
 * user's own "expire", else --older-than (which should be what
 * pop3_ext_expire says), else $POP3EXT_EXPIRE, else never.  A mailbox
 * several users read keeps them for the longest.  Retention 0 is left to
 * the module.
 */

int
pop3ext_expunge(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                 i, rc, all, dry, in_use, busy;
    size_t              k;
    const char         *v;
    unsigned long long  def;
    pop3ext_targets_t   ts;

    all = 0;
    dry = 0;
    def = POP3EXT_NEVER;

    v = getenv("POP3EXT_EXPIRE");

    if (v != NULL && v[0] != '\0') {
        rc = pop3ext_expire_option(v, "POP3EXT_EXPIRE", &def);
        if (rc != EX_OK) {
            return rc;
        }
    }

    for (i = 0; i < argc && argv[i][0] == '-'; i++) {

        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }

        if (strcmp(argv[i], "--all") == 0) {
            all = 1;
            continue;
        }

        if (strcmp(argv[i], "--dry-run") == 0) {
            dry = 1;
            continue;
        }

        v = NULL;

        if (strcmp(argv[i], "--older-than") == 0 && i + 1 < argc) {
            v = argv[++i];

        } else if (strncmp(argv[i], "--older-than=", 13) == 0) {
            v = argv[i] + 13;
        }

        if (v == NULL) {
            return pop3ext_usage_error("expunge: unknown option \"%s\" (or "
                                       "a value missing)", argv[i]);
        }

        rc = pop3ext_expire_option(v, "--older-than", &def);
        if (rc != EX_OK) {
            return rc;
        }
    }

    if (all == (i < argc)) {
        return pop3ext_usage_error("expunge needs USER... or --all");
    }

    for (k = (size_t) i; k < (size_t) argc; k++) {
        rc = pop3ext_valid_user(argv[k]);
        if (rc != EX_OK) {
            return rc;
        }
    }

    memset(&ts, 0, sizeof(pop3ext_targets_t));

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    if (all) {
        ts.def = def;

        /* every user record, on every master of a cluster */

        rc = pop3ext_scan_names(cx, P3X_USER_PREFIX, P3X_USER_SUFFIX,
                                pop3ext_expire_found, &ts);

    } else {
        for ( /* void */ ; i < argc && rc == EX_OK; i++) {
            rc = pop3ext_expire_user(cx, argv[i], def, &ts);
        }
    }

    if (rc != EX_OK) {
        free(ts.t);
        return rc;
    }

    /* a run that may remove mail is a change: entered first */

    if (!dry && ts.n > 0) {
        rc = pop3ext_audit(cx, argc, argv);
        if (rc != EX_OK) {
            free(ts.t);
            return rc;
        }
    }

    /* one entry per mailbox, with the longest retention of its users */

    if (ts.n > 1) {
        qsort(ts.t, ts.n, sizeof(pop3ext_target_t), pop3ext_expire_cmp);
    }

    busy = 0;

    for (k = 0; k < ts.n && rc == EX_OK; k++) {

        if (k + 1 < ts.n && strcmp(ts.t[k].mbox, ts.t[k + 1].mbox) == 0) {
            if (ts.t[k].days > ts.t[k + 1].days) {
                ts.t[k + 1].days = ts.t[k].days;
            }

            continue;
        }

        if (ts.t[k].days == POP3EXT_NEVER || ts.t[k].days == 0) {
            continue;
        }

        in_use = 0;

        rc = pop3ext_expire_mailbox(cx, ts.t[k].mbox, ts.t[k].days, dry,
                                    &in_use);

        if (in_use) {
            busy++;
        }
    }

    free(ts.t);

    if (rc == EX_OK && busy) {
        pop3ext_error("%d mailbox(es) in use by a session were not "
                      "expunged: run again later", busy);
        rc = EX_TEMPFAIL;
    }

    if (fflush(stdout) == EOF && rc == EX_OK) {
        pop3ext_error("cannot write: %s", strerror(errno));
        rc = EX_IOERR;
    }

    return rc;
}


/*
 * A user's mailbox and retention, from the record's "mailbox" and
 * "expire" fields (never its secret).  A field the module would not
 * accept is reported, and the default applies, as in the module.  A user
 * that does not exist is EX_NOUSER.
 */

static int
pop3ext_expire_user(pop3ext_ctx_t *cx, const char *user,
    unsigned long long def, pop3ext_targets_t *ts)
{
    int                  rc;
    redisReply          *r, *e, *m;
    unsigned long long   days;
    char                 key[POP3EXT_KEY_MAX], mbox[P3X_NAME_MAX + 1];

    rc = pop3ext_key(key, P3X_USER_PREFIX, user, P3X_USER_SUFFIX);
    if (rc != EX_OK) {
        return rc;
    }

    r = pop3ext_read(cx, &rc, key, "HMGET %s %s %s", key,
                     P3X_FIELD_MAILBOX, P3X_FIELD_EXPIRE);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        pop3ext_error("unexpected reply to HMGET");
        freeReplyObject(r);
        return EX_SOFTWARE;
    }

    if (r->element[0]->type == REDIS_REPLY_NIL
        && r->element[1]->type == REDIS_REPLY_NIL)
    {
        freeReplyObject(r);

        rc = pop3ext_user_exists(cx, user);
        if (rc != EX_OK) {
            return rc;
        }

        return pop3ext_expire_add(ts, user, def);
    }

    m = r->element[0];

    if (m->type == REDIS_REPLY_STRING && m->len > 0) {
        if (!p3x_valid_name((u_char *) m->str, m->len)) {
            pop3ext_error("user \"%s\" has an invalid mailbox name, "
                          "skipped", user);
            freeReplyObject(r);
            return EX_OK;
        }

        memcpy(mbox, m->str, m->len);
        mbox[m->len] = '\0';

    } else {
        memcpy(mbox, user, strlen(user) + 1);
    }

    days = def;
    e = r->element[1];

    if (e->type == REDIS_REPLY_STRING && e->len > 0
        && pop3ext_expire_parse(e->str, e->len, &days) != 0)
    {
        pop3ext_error("user \"%s\" has an invalid \"expire\" field, the "
                      "default applies", user);
        days = def;
    }

    freeReplyObject(r);

    return pop3ext_expire_add(ts, mbox, days);
}


/* a user record SCAN found: a record deleted since is nothing to do */

static int
pop3ext_expire_found(pop3ext_ctx_t *cx, const char *name, redisReply *key,
    unsigned m, unsigned masters, void *data)
{
    int                 rc;
    pop3ext_targets_t  *ts;

    (void) key;
    (void) m;
    (void) masters;

    ts = data;

    rc = pop3ext_expire_user(cx, name, ts->def, ts);

    return (rc == EX_NOUSER) ? EX_OK : rc;
}


static int
pop3ext_expire_add(pop3ext_targets_t *ts, const char *mbox,
    unsigned long long days)
{
    pop3ext_target_t  *t;

    if (ts->n == ts->alloc) {
        ts->alloc = ts->alloc ? 2 * ts->alloc : 64;

        t = realloc(ts->t, ts->alloc * sizeof(pop3ext_target_t));
        if (t == NULL) {
            pop3ext_error("out of memory");
            return EX_TEMPFAIL;
        }

        ts->t = t;
    }

    t = &ts->t[ts->n++];
    memcpy(t->mbox, mbox, strlen(mbox) + 1);
    t->days = days;

    return EX_OK;
}


static int
pop3ext_expire_cmp(const void *a, const void *b)
{
    return strcmp(((const pop3ext_target_t *) a)->mbox,
                  ((const pop3ext_target_t *) b)->mbox);
}


/* one mailbox: what was delivered longer ago than days, removed */

static int
pop3ext_expire_mailbox(pop3ext_ctx_t *cx, const char *mbox,
    unsigned long long days, int dry, int *in_use)
{
    int                  rc, held;
    char               **entries;
    size_t               n;
    pop3ext_mbox_t       mb;
    unsigned long long   now, cutoff, octets, removed;

    rc = pop3ext_mbox_keys(&mb, mbox);
    if (rc != EX_OK) {
        return rc;
    }

    /* no need to read a maildrop that EXPUNGE would refuse now */

    rc = pop3ext_exists(cx, mb.lock, &held);
    if (rc != EX_OK) {
        return rc;
    }

    if (held) {
        pop3ext_error("mailbox \"%s\" is in use by a session, not expunged",
                      mbox);
        *in_use = 1;
        return EX_OK;
    }

    now = pop3ext_clock_ms();

    cutoff = (days * P3X_DAY_MS < now) ? now - days * P3X_DAY_MS : 0;

    rc = pop3ext_expire_old(cx, &mb, cutoff, &entries, &n, &octets);
    if (rc != EX_OK) {
        return rc;
    }

    if (n == 0) {
        pop3ext_expire_free(entries, n);
        return EX_OK;
    }

    if (dry) {
        printf("%s: %zu messages (%llu octets) older than %llu days, to "
               "remove\n", mbox, n, octets, days);
        pop3ext_expire_free(entries, n);
        return EX_OK;
    }

    rc = pop3ext_expire_run(cx, &mb, entries, n, &removed, &octets, in_use);

    pop3ext_expire_free(entries, n);

    if (removed > 0) {
        printf("%s: %llu messages (%llu octets) older than %llu days "
               "removed\n", mbox, removed, octets, days);
    }

    if (*in_use) {
        pop3ext_error("mailbox \"%s\" was taken by a session, %s", mbox,
                      removed ? "partly expunged" : "not expunged");
    }

    return rc;
}


/*
 * The index entries delivered at or before cutoff (ms): by the "time"
 * hash, else by the writer's clock in a UID that p3x_uid_make() made.  A
 * message with neither has no known age and stays.
 */

static int
pop3ext_expire_old(pop3ext_ctx_t *cx, pop3ext_mbox_t *mb,
    unsigned long long cutoff, char ***entries, size_t *n,
    unsigned long long *octets)
{
    int                  rc;
    char               **list, **more, *copy;
    size_t               i, alloc, uid_len;
    redisReply          *r, *tr, *e;
    const char          *src;
    pop3ext_index_t      ix;
    unsigned long long   when, size;

    *entries = NULL;
    *n = 0;
    *octets = 0;

    list = NULL;
    alloc = 0;

    pop3ext_index_init(&ix, mb->index, POP3EXT_DEL_BATCH);

    for ( ;; ) {
        rc = pop3ext_index_next(cx, &ix, &r);
        if (rc != EX_OK || r == NULL) {
            break;
        }

        /* the delivery times of this batch, by UID */

        rc = pop3ext_times(cx, mb->time, r, 0, r->elements, &tr);
        if (rc != EX_OK) {
            freeReplyObject(r);
            break;
        }

        for (i = 0; i < r->elements; i++) {
            e = r->element[i];

            if (e->type != REDIS_REPLY_STRING
                || !pop3ext_entry(e->str, e->len, &uid_len, &size))
            {
                continue;    /* malformed: not ours to remove */
            }

            /* the time hash is the authority, then a native UID's clock */

            when = pop3ext_delivery_time(tr->element[i], e->str, uid_len,
                                         &src);

            /* no known age (a UID's clock of 0 is none): the message stays */

            if (src == NULL || (when == 0 && strcmp(src, "uid") == 0)
                || when > cutoff)
            {
                continue;
            }

            if (*n == alloc) {
                alloc = alloc ? 2 * alloc : 256;
                more = realloc(list, alloc * sizeof(char *));

                if (more == NULL) {
                    rc = EX_TEMPFAIL;
                    break;
                }

                list = more;
            }

            copy = malloc(e->len + 1);

            if (copy == NULL) {
                rc = EX_TEMPFAIL;
                break;
            }

            memcpy(copy, e->str, e->len + 1);
            list[(*n)++] = copy;
            *octets += size;
        }

        freeReplyObject(tr);
        freeReplyObject(r);

        if (rc != EX_OK) {
            pop3ext_error("out of memory");
            break;
        }
    }

    if (rc != EX_OK) {
        pop3ext_expire_free(list, *n);
        *n = 0;
        return rc;
    }

    *entries = list;

    return EX_OK;
}


/*
 * EXPUNGE in batches: each one names its entries and their bodies (every
 * key a script touches is one of its KEYS), and each one checks the lock
 * again, so a session that logs in meanwhile stops the run.
 */

static int
pop3ext_expire_run(pop3ext_ctx_t *cx, pop3ext_mbox_t *mb, char **entries,
    size_t n, unsigned long long *removed, unsigned long long *octets,
    int *in_use)
{
    int           rc, argc, w;
    char         *keys, *sp;
    size_t        i, b, batch, len;
    redisReply   *r;
    const char  **av;
    size_t       *avlen;
    char          nkeys[16];

    *removed = 0;
    *octets = 0;

    av = malloc((7 + 2 * POP3EXT_DEL_BATCH) * sizeof(const char *));
    avlen = malloc((7 + 2 * POP3EXT_DEL_BATCH) * sizeof(size_t));
    keys = malloc(POP3EXT_DEL_BATCH * POP3EXT_KEY_MAX);

    if (av == NULL || avlen == NULL || keys == NULL) {
        free(av);
        free(avlen);
        free(keys);
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    rc = EX_OK;

    for (b = 0; b < n && rc == EX_OK; b += batch) {
        batch = (n - b < POP3EXT_DEL_BATCH) ? n - b : POP3EXT_DEL_BATCH;

        /* EVAL script nkeys lock index meta time BODY... ENTRY... */

        av[0] = "EVAL";
        av[1] = P3X_SCRIPT_EXPUNGE;
        snprintf(nkeys, sizeof(nkeys), "%zu", 4 + batch);
        av[2] = nkeys;
        av[3] = mb->lock;
        av[4] = mb->index;
        av[5] = mb->meta;
        av[6] = mb->time;

        for (i = 0; i < batch; i++) {
            sp = strchr(entries[b + i], ' ');
            len = (size_t) (sp - entries[b + i]);

            w = snprintf(keys + i * POP3EXT_KEY_MAX, POP3EXT_KEY_MAX,
                         "%s%.*s", mb->msg, (int) len, entries[b + i]);

            if (w < 0 || w >= POP3EXT_KEY_MAX) {
                pop3ext_error("key for a message of \"%s\" too long",
                              mb->name);
                rc = EX_SOFTWARE;
                break;
            }

            av[7 + i] = keys + i * POP3EXT_KEY_MAX;
            av[7 + batch + i] = entries[b + i];
        }

        if (rc != EX_OK) {
            break;
        }

        argc = (int) (7 + 2 * batch);

        for (i = 0; i < (size_t) argc; i++) {
            avlen[i] = strlen(av[i]);
        }

        rc = pop3ext_call(cx, mb->index, 1, argc, av, avlen, &r);
        if (rc != EX_OK) {
            break;
        }

        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "IN-USE", 6) == 0)
        {
            freeReplyObject(r);
            *in_use = 1;
            break;
        }

        rc = pop3ext_check(cx, r);
        if (rc != EX_OK) {
            break;
        }

        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
            || r->element[0]->type != REDIS_REPLY_INTEGER
            || r->element[1]->type != REDIS_REPLY_INTEGER)
        {
            pop3ext_error("unexpected reply to EXPUNGE");
            freeReplyObject(r);
            rc = EX_SOFTWARE;
            break;
        }

        *removed += (unsigned long long) r->element[0]->integer;
        *octets += (unsigned long long) r->element[1]->integer;

        freeReplyObject(r);
    }

    free(keys);
    free(avlen);
    free(av);

    return rc;
}


static void
pop3ext_expire_free(char **entries, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        free(entries[i]);
    }

    free(entries);
}

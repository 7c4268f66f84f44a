
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: the admin commands, user list, user rename, mailbox list, who
 * and kick, and the SCAN of every master for the records of a kind that
 * they and expunge --all use.
 */


#include "pop3ext.h"


#define POP3EXT_OWNER_FIELDS  5

/* "pop3:user:{" NAME "}", with the user's mailbox and state */

typedef struct {
    char               *name;
    char               *mailbox;     /* NULL: the user's own */
    unsigned            disabled:1;
} pop3ext_user_t;


/* the fields of an owner record, in the model's order; NULL when absent */

typedef struct {
    char               *mailbox;
    const char         *v[POP3EXT_OWNER_FIELDS];
    size_t              len[POP3EXT_OWNER_FIELDS];
    char               *record;
} pop3ext_owner_t;


/*
 * A listing of the records whose keys have the shape PREFIX NAME SUFFIX
 * (user list, who): found adds an element of size octets for a NAME; the
 * elements are put in order by cmp, each record once, as SCAN may give a
 * key twice (same), and printed, as text or JSON, by print; drop frees
 * what an element holds.
 */

typedef struct {
    const char         *cmd;
    const char         *array;       /* the JSON array's name */
    const char         *prefix;
    const char         *suffix;
    size_t              size;
    pop3ext_name_pt     found;
    int               (*cmp)(const void *a, const void *b);
    int               (*same)(const void *a, const void *b);
    void              (*drop)(void *elt);
    void              (*print)(void *elt, int json);
} pop3ext_listing_t;


typedef struct {
    const pop3ext_listing_t  *kind;
    void                     *elts;
    size_t                    nelts;
    size_t                    nalloc;
} pop3ext_list_t;


/* pop3ext_scan_names(): what a batch of keys is matched against */

typedef struct {
    const char         *prefix;
    const char         *suffix;
    pop3ext_name_pt     handler;
    void               *data;
} pop3ext_names_t;


static int pop3ext_admin_args(int argc, char **argv, const char *cmd,
    int *json, const char **names, int nnames);
static int pop3ext_names_batch(pop3ext_ctx_t *cx, redisReply *keys,
    unsigned m, unsigned masters, void *data);
static int pop3ext_admin_list(pop3ext_ctx_t *cx, int argc, char **argv,
    const pop3ext_listing_t *kind);
static void *pop3ext_list_push(pop3ext_list_t *list);
static int pop3ext_user_found(pop3ext_ctx_t *cx, const char *name,
    redisReply *key, unsigned m, unsigned masters, void *data);
static int pop3ext_user_cmp(const void *a, const void *b);
static int pop3ext_user_same(const void *a, const void *b);
static void pop3ext_user_drop(void *elt);
static void pop3ext_user_print(void *elt, int json);
static int pop3ext_who_found(pop3ext_ctx_t *cx, const char *name,
    redisReply *key, unsigned m, unsigned masters, void *data);
static int pop3ext_owner_cmp(const void *a, const void *b);
static int pop3ext_owner_same(const void *a, const void *b);
static void pop3ext_owner_drop(void *elt);
static void pop3ext_owner_parse(pop3ext_owner_t *o, char *record);
static void pop3ext_owner_print(void *elt, int json);
static int pop3ext_record_read(pop3ext_ctx_t *cx, const char *key,
    redisReply **rp);
static int pop3ext_record_same(redisReply *a, redisReply *b,
    const char *mbox);
static int pop3ext_rename_finish(pop3ext_ctx_t *cx, const char *old,
    const char *new, const char *okey, redisReply *rec);
static int pop3ext_record_eval(pop3ext_ctx_t *cx, const char *script,
    const char *key, redisReply *rec, const char *mbox, redisReply **rp);


static const char  *pop3ext_owner_names[POP3EXT_OWNER_FIELDS] = {
    "host", "pid", "client", "since", "user"
};


static const pop3ext_listing_t  pop3ext_user_listing = {
    "user list", "users", P3X_USER_PREFIX, P3X_USER_SUFFIX,
    sizeof(pop3ext_user_t), pop3ext_user_found, pop3ext_user_cmp,
    pop3ext_user_same, pop3ext_user_drop, pop3ext_user_print
};


static const pop3ext_listing_t  pop3ext_who_listing = {
    "who", "sessions", P3X_MBOX_PREFIX, P3X_OWNER_SUFFIX,
    sizeof(pop3ext_owner_t), pop3ext_who_found, pop3ext_owner_cmp,
    pop3ext_owner_same, pop3ext_owner_drop, pop3ext_owner_print
};


/*
 * Creates a user record from field-value pairs, only if no record of
 * that name exists: a rename never overwrites a user.
 *   KEYS[1] the new record; ARGV field, value, ...
 */

#define POP3EXT_SCRIPT_CREATE                                                 \
    "if redis.call('EXISTS', KEYS[1]) == 1 then\n"                            \
    "  return redis.error_reply('EXISTS user exists')\n"                      \
    "end\n"                                                                   \
    "redis.call('HSET', KEYS[1], unpack(ARGV))\n"                             \
    "return 1\n"

/*
 * Deletes a user record only if it still holds exactly the field-value
 * pairs given: a change made while it was copied is not lost unseen.
 *   KEYS[1] the record; ARGV field, value, ...
 *   returns 1 when deleted, 0 when it changed, -1 when it is gone
 */

#define POP3EXT_SCRIPT_DELETE_SAME                                            \
    "local cur = redis.call('HGETALL', KEYS[1])\n"                            \
    "if #cur == 0 then\n"                                                     \
    "  return -1\n"                                                           \
    "end\n"                                                                   \
    "if #cur ~= #ARGV then\n"                                                 \
    "  return 0\n"                                                            \
    "end\n"                                                                   \
    "local want = {}\n"                                                       \
    "for i = 1, #ARGV, 2 do\n"                                                \
    "  want[ARGV[i]] = ARGV[i + 1]\n"                                         \
    "end\n"                                                                   \
    "for i = 1, #cur, 2 do\n"                                                 \
    "  if want[cur[i]] ~= cur[i + 1] then\n"                                  \
    "    return 0\n"                                                          \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "redis.call('DEL', KEYS[1])\n"                                            \
    "return 1\n"


/*
 * --json anywhere before "--", and exactly nnames other words; a name is
 * checked by the model's rule.
 */

static int
pop3ext_admin_args(int argc, char **argv, const char *cmd, int *json,
    const char **names, int nnames)
{
    int  i, n, rc, opts;

    n = 0;
    opts = 1;

    for (i = 0; i < argc; i++) {

        if (opts && strcmp(argv[i], "--") == 0) {
            opts = 0;
            continue;
        }

        if (opts && json != NULL && strcmp(argv[i], "--json") == 0) {
            *json = 1;
            continue;
        }

        if (opts && argv[i][0] == '-') {
            return pop3ext_usage_error("%s: unknown option \"%s\"", cmd,
                                       argv[i]);
        }

        if (n == nnames) {
            break;
        }

        names[n++] = argv[i];
    }

    if (n != nnames || i != argc) {
        switch (nnames) {
        case 0:
            return pop3ext_usage_error("%s takes no USER", cmd);
        case 1:
            return pop3ext_usage_error("%s needs exactly one USER", cmd);
        default:
            return pop3ext_usage_error("%s needs OLD and NEW", cmd);
        }
    }

    for (i = 0; i < n; i++) {
        rc = pop3ext_valid_user(names[i]);
        if (rc != EX_OK) {
            return rc;
        }
    }

    return EX_OK;
}


/*
 * Calls handler with NAME of each key PREFIX NAME SUFFIX, from SCAN on
 * every master, NAME valid by the model's rule: a key of another shape
 * that the pattern matches too is passed over.  SCAN returns a key at
 * least once, not exactly once, so a handler that collects drops
 * duplicates.
 */

int
pop3ext_scan_names(pop3ext_ctx_t *cx, const char *prefix,
    const char *suffix, pop3ext_name_pt handler, void *data)
{
    char             pattern[POP3EXT_KEY_MAX];
    pop3ext_names_t  names;

    /* a brace is no glob character: the pattern is the key's shape */

    snprintf(pattern, sizeof(pattern), "%s*%s", prefix, suffix);

    names.prefix = prefix;
    names.suffix = suffix;
    names.handler = handler;
    names.data = data;

    return pop3ext_scan_keys(cx, pattern, pop3ext_names_batch, &names);
}


static int
pop3ext_names_batch(pop3ext_ctx_t *cx, redisReply *keys, unsigned m,
    unsigned masters, void *data)
{
    int               rc;
    size_t            i, n, plen, slen;
    redisReply       *k;
    pop3ext_names_t  *names;
    char              name[P3X_NAME_MAX + 1];

    names = data;
    plen = strlen(names->prefix);
    slen = strlen(names->suffix);

    for (i = 0; i < keys->elements; i++) {
        k = keys->element[i];

        if (k->type != REDIS_REPLY_STRING || k->len <= plen + slen
            || memcmp(k->str, names->prefix, plen) != 0
            || memcmp(k->str + k->len - slen, names->suffix, slen) != 0)
        {
            continue;
        }

        n = k->len - plen - slen;

        if (!p3x_valid_name((const u_char *) k->str + plen, n)) {
            continue;
        }

        memcpy(name, k->str + plen, n);
        name[n] = '\0';

        rc = names->handler(cx, name, k, m, masters, names->data);
        if (rc != EX_OK) {
            return rc;
        }
    }

    return EX_OK;
}


/*
 * user list and who: their arguments, the SCAN of every master for keys
 * of the listing's shape, and what was found in order, each record once.
 */

static int
pop3ext_admin_list(pop3ext_ctx_t *cx, int argc, char **argv,
    const pop3ext_listing_t *kind)
{
    int              rc, json;
    char            *elts;
    size_t           i, k;
    pop3ext_list_t   list;

    json = 0;

    rc = pop3ext_admin_args(argc, argv, kind->cmd, &json, NULL, 0);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    memset(&list, 0, sizeof(pop3ext_list_t));
    list.kind = kind;

    rc = pop3ext_scan_names(cx, kind->prefix, kind->suffix, kind->found,
                            &list);

    pop3ext_progress_end();

    if (rc != EX_OK) {
        goto done;
    }

    elts = list.elts;

    if (list.nelts > 1) {
        qsort(elts, list.nelts, kind->size, kind->cmp);
    }

    for (i = 0, k = 0; i < list.nelts; i++) {
        if (k > 0
            && kind->same(elts + (k - 1) * kind->size, elts + i * kind->size))
        {
            kind->drop(elts + i * kind->size);
            continue;
        }

        if (k != i) {
            memcpy(elts + k * kind->size, elts + i * kind->size, kind->size);
        }

        k++;
    }

    list.nelts = k;

    if (json) {
        printf("{\"%s\":[", kind->array);
    }

    for (i = 0; i < list.nelts; i++) {
        if (json && i > 0) {
            putc(',', stdout);
        }

        kind->print(elts + i * kind->size, json);
    }

    if (json) {
        printf("],\"count\":%zu}\n", list.nelts);
    }

    rc = pop3ext_flush(stdout);

done:

    for (i = 0; i < list.nelts; i++) {
        kind->drop((char *) list.elts + i * kind->size);
    }

    free(list.elts);

    return rc;
}


/* room for one more element, counted; NULL when out of memory */

static void *
pop3ext_list_push(pop3ext_list_t *list)
{
    void    *elts;
    size_t   n;

    if (list->nelts == list->nalloc) {
        n = list->nalloc * 2 + 16;

        elts = realloc(list->elts, n * list->kind->size);
        if (elts == NULL) {
            return NULL;
        }

        list->elts = elts;
        list->nalloc = n;
    }

    return (char *) list->elts + list->nelts++ * list->kind->size;
}


/*
 * pop3ext user list [--json]: every user record, found by SCAN on every
 * master, with its mailbox and whether it is disabled, sorted by name.
 */

int
pop3ext_user_list(pop3ext_ctx_t *cx, int argc, char **argv)
{
    return pop3ext_admin_list(cx, argc, argv, &pop3ext_user_listing);
}


/* "NAME[ mailbox=MBOX][ disabled]", or a JSON object */

static void
pop3ext_user_print(void *elt, int json)
{
    pop3ext_user_t  *u;

    u = elt;

    if (json) {
        fputs("{\"user\":", stdout);
        pop3ext_json_string(stdout, u->name, strlen(u->name));
        fputs(",\"mailbox\":", stdout);
        pop3ext_json_string(stdout, u->mailbox ? u->mailbox : u->name,
                            strlen(u->mailbox ? u->mailbox : u->name));
        printf(",\"disabled\":%s}", u->disabled ? "true" : "false");

    } else {
        printf("%s%s%s%s\n", u->name, u->mailbox ? " mailbox=" : "",
               u->mailbox ? u->mailbox : "",
               u->disabled ? " disabled" : "");
    }
}


/* a user SCAN found, with its mailbox and flag */

static int
pop3ext_user_found(pop3ext_ctx_t *cx, const char *name, redisReply *key,
    unsigned m, unsigned masters, void *data)
{
    int              rc;
    redisReply      *r, *mb, *dis;
    pop3ext_user_t   u, *e;
    pop3ext_list_t  *list;

    list = data;

    r = pop3ext_read(cx, &rc, key->str, "HMGET %b %s %s", key->str,
                     key->len, P3X_FIELD_MAILBOX, P3X_FIELD_DISABLED);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        pop3ext_error("unexpected reply to HMGET of user \"%s\"", name);
        freeReplyObject(r);
        return EX_SOFTWARE;
    }

    mb = r->element[0];
    dis = r->element[1];

    u.mailbox = NULL;
    u.disabled = (dis->type == REDIS_REPLY_STRING && dis->len > 0
                  && !(dis->len == 1 && dis->str[0] == '0'));

    u.name = pop3ext_strndup(name, strlen(name));
    if (u.name == NULL) {
        goto no_memory;
    }

    /* the mailbox named, if it is not the user's own */

    if (mb->type == REDIS_REPLY_STRING && mb->len > 0
        && strcmp(mb->str, name) != 0)
    {
        /* shown as text: a name breaking the rules is shown as such */

        u.mailbox = p3x_valid_name((u_char *) mb->str, mb->len)
                    ? pop3ext_strndup(mb->str, mb->len)
                    : pop3ext_strndup("(invalid)", sizeof("(invalid)") - 1);

        if (u.mailbox == NULL) {
            goto no_memory;
        }
    }

    e = pop3ext_list_push(list);
    if (e == NULL) {
        goto no_memory;
    }

    *e = u;
    freeReplyObject(r);

    pop3ext_progress("user list: %zu users (master %u of %u)", list->nelts,
                     m + 1, masters);

    return EX_OK;

no_memory:

    pop3ext_error("out of memory");
    freeReplyObject(r);
    pop3ext_user_drop(&u);

    return EX_TEMPFAIL;
}


static int
pop3ext_user_cmp(const void *a, const void *b)
{
    return strcmp(((const pop3ext_user_t *) a)->name,
                  ((const pop3ext_user_t *) b)->name);
}


static int
pop3ext_user_same(const void *a, const void *b)
{
    return pop3ext_user_cmp(a, b) == 0;
}


static void
pop3ext_user_drop(void *elt)
{
    pop3ext_user_t  *u;

    u = elt;

    free(u->name);
    free(u->mailbox);
}


/*
 * pop3ext who [--json]: the sessions holding a maildrop, from the owner
 * records the module writes beside each lock, found by SCAN on every
 * master.  A record lives as long as its lock; a session of a module
 * older than 0.3 writes none and is not listed.
 */

int
pop3ext_who(pop3ext_ctx_t *cx, int argc, char **argv)
{
    return pop3ext_admin_list(cx, argc, argv, &pop3ext_who_listing);
}


/* a session SCAN found, by the owner record of its mailbox */

static int
pop3ext_who_found(pop3ext_ctx_t *cx, const char *name, redisReply *key,
    unsigned m, unsigned masters, void *data)
{
    int               rc;
    char             *mbox, *record;
    redisReply       *r;
    pop3ext_owner_t  *o;
    pop3ext_list_t   *list;

    list = data;

    r = pop3ext_read(cx, &rc, key->str, "GET %b", key->str, key->len);
    if (r == NULL) {
        return rc;
    }

    /* the session ended since SCAN saw it */

    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return EX_OK;
    }

    mbox = pop3ext_strndup(name, strlen(name));
    record = (mbox != NULL) ? pop3ext_strndup(r->str, r->len) : NULL;

    freeReplyObject(r);

    o = (mbox != NULL && record != NULL) ? pop3ext_list_push(list) : NULL;

    if (o == NULL) {
        pop3ext_error("out of memory");
        free(record);
        free(mbox);
        return EX_TEMPFAIL;
    }

    o->mailbox = mbox;
    pop3ext_owner_parse(o, record);

    pop3ext_progress("who: %zu sessions (master %u of %u)", list->nelts,
                     m + 1, masters);

    return EX_OK;
}


/* by user, then mailbox */

static int
pop3ext_owner_cmp(const void *a, const void *b)
{
    int                     c;
    size_t                  n;
    const pop3ext_owner_t  *x, *y;

    x = a;
    y = b;

    if (x->v[4] != NULL && y->v[4] != NULL) {
        n = x->len[4] < y->len[4] ? x->len[4] : y->len[4];
        c = memcmp(x->v[4], y->v[4], n);

        if (c != 0) {
            return c;
        }

        if (x->len[4] != y->len[4]) {
            return x->len[4] < y->len[4] ? -1 : 1;
        }
    }

    return strcmp(x->mailbox, y->mailbox);
}


/* one maildrop has one session: a mailbox found twice is one record */

static int
pop3ext_owner_same(const void *a, const void *b)
{
    return strcmp(((const pop3ext_owner_t *) a)->mailbox,
                  ((const pop3ext_owner_t *) b)->mailbox)
           == 0;
}


static void
pop3ext_owner_drop(void *elt)
{
    pop3ext_owner_t  *o;

    o = elt;

    free(o->mailbox);
    free(o->record);
}


/* "host=H pid=P client=ADDR since=MS user=NAME", in any order */

static void
pop3ext_owner_parse(pop3ext_owner_t *o, char *record)
{
    int      f;
    char    *p, *end, *eq;
    size_t   n;

    memset(o->v, 0, sizeof(o->v));
    memset(o->len, 0, sizeof(o->len));
    o->record = record;

    for (p = record; *p != '\0'; p = end) {
        while (*p == ' ') {
            p++;
        }

        end = p + strcspn(p, " ");
        eq = memchr(p, '=', end - p);

        if (eq == NULL) {
            continue;
        }

        n = eq - p;

        for (f = 0; f < POP3EXT_OWNER_FIELDS; f++) {
            if (strlen(pop3ext_owner_names[f]) == n
                && memcmp(p, pop3ext_owner_names[f], n) == 0)
            {
                o->v[f] = eq + 1;
                o->len[f] = end - eq - 1;
                break;
            }
        }
    }
}


/*
 * One session: text "user=U mailbox=M host=H pid=P client=A since=TIME",
 * or a JSON object with the same names (pid and since as numbers, since
 * in ms; null for a field the record lacks).
 */

static void
pop3ext_owner_print(void *elt, int json)
{
    int                  f, numeric;
    size_t               len;
    const char          *v;
    unsigned long long   ms;
    pop3ext_owner_t     *o;
    char                 text[POP3EXT_TIME_LEN];

    static const int     order[POP3EXT_OWNER_FIELDS] = { 4, 0, 1, 2, 3 };

    o = elt;

    if (json) {
        putc('{', stdout);

    } else if (o->v[4] != NULL) {
        printf("user=%.*s ", (int) o->len[4], o->v[4]);

    } else {
        fputs("user=? ", stdout);
    }

    if (json) {
        fputs("\"user\":", stdout);

        if (o->v[4] != NULL) {
            pop3ext_json_string(stdout, o->v[4], o->len[4]);

        } else {
            fputs("null", stdout);
        }

        fputs(",\"mailbox\":", stdout);
        pop3ext_json_string(stdout, o->mailbox, strlen(o->mailbox));

    } else {
        printf("mailbox=%s", o->mailbox);
    }

    for (f = 1; f < POP3EXT_OWNER_FIELDS; f++) {
        v = o->v[order[f]];
        len = o->len[order[f]];

        numeric = (order[f] == 1 || order[f] == 3) && v != NULL && len > 0
                  && len <= 19 && strspn(v, "0123456789") >= len;

        if (json) {
            printf(",\"%s\":", pop3ext_owner_names[order[f]]);

            if (numeric) {
                printf("%.*s", (int) len, v);

            } else if (v != NULL && order[f] != 1 && order[f] != 3) {
                pop3ext_json_string(stdout, v, len);

            } else {
                fputs("null", stdout);
            }

            continue;
        }

        printf(" %s=", pop3ext_owner_names[order[f]]);

        if (v == NULL) {
            putc('?', stdout);

        } else if (order[f] == 3 && numeric) {
            sscanf(v, "%llu", &ms);
            pop3ext_time_text(text, ms);
            fputs(text, stdout);

        } else {
            printf("%.*s", (int) len, v);
        }
    }

    fputs(json ? "}" : "\n", stdout);
}


/*
 * pop3ext kick USER: the KICK script on the user's mailbox.  The lock and
 * the marks go, nothing is deleted; the session finds its lock lost at
 * its next refresh or command and ends.  Exit 0 and the session on
 * stdout, or POP3EXT_EX_NOSESSION when none held the maildrop.
 */

int
pop3ext_kick(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int               rc, held;
    char             *record;
    redisReply       *r;
    const char       *user;
    pop3ext_mbox_t    mb;
    pop3ext_owner_t   o;

    rc = pop3ext_admin_args(argc, argv, "kick", NULL, &user, 1);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_user_mbox(cx, user, &mb);
    if (rc != EX_OK) {
        return rc;
    }

    /* nothing to do is said without writing to the audit trail */

    rc = pop3ext_exists(cx, mb.lock, &held);
    if (rc != EX_OK) {
        return rc;
    }

    if (!held) {
        pop3ext_error("no session holds the maildrop of user \"%s\" "
                      "(mailbox \"%s\"): nothing done", user, mb.name);
        return POP3EXT_EX_NOSESSION;
    }

    rc = pop3ext_audit(cx, argc, argv);
    if (rc != EX_OK) {
        return rc;
    }

    r = pop3ext_write(cx, &rc, mb.lock, "EVAL %s 3 %s %s %s",
                      P3X_SCRIPT_KICK, mb.lock, mb.dele, mb.owner);
    if (r == NULL) {
        return rc;
    }

    if (r->type == REDIS_REPLY_NIL) {
        /*
         * The lock was there a moment ago: its session ended since, or,
         * of a module older than 0.3, it kept no owner record
         */

        freeReplyObject(r);
        printf("kicked mailbox=%s: the session left no owner record, or "
               "ended just now\n", mb.name);

        return pop3ext_flush(stdout);
    }

    if (r->type != REDIS_REPLY_STRING) {
        pop3ext_error("unexpected reply to KICK");
        freeReplyObject(r);
        return EX_SOFTWARE;
    }

    record = pop3ext_strndup(r->str, r->len);
    freeReplyObject(r);

    if (record == NULL) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    o.mailbox = mb.name;
    pop3ext_owner_parse(&o, record);

    fputs("kicked ", stdout);
    pop3ext_owner_print(&o, 0);

    free(record);

    return pop3ext_flush(stdout);
}


/*
 * pop3ext mailbox list USER [--json]: the messages a login would list,
 * with the number, UID and size a session would give them and the
 * delivery time: from the mailbox's time hash, else from a UID of the
 * native form (its first 12 hex digits are the writer's clock in ms),
 * else unknown.  The index is read in one LRANGE, a snapshot.
 */

int
pop3ext_mailbox_list(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                  rc, json;
    size_t               i, n, uid_len, count;
    redisReply          *r, *e;
    const char          *user, *src;
    pop3ext_mbox_t       mb;
    pop3ext_times_t      tm;
    unsigned long long   size, octets, ms;
    char                 text[POP3EXT_TIME_LEN];

    json = 0;

    rc = pop3ext_admin_args(argc, argv, "mailbox list", &json, &user, 1);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_user_mbox(cx, user, &mb);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_index_all(cx, mb.index, &r, &count, &octets);
    if (rc != EX_OK) {
        return rc;
    }

    if (json) {
        pop3ext_json_user(user, mb.name);
        printf(",\"count\":%zu,\"octets\":%llu,\"messages\":[", count,
               octets);
    }

    n = 0;
    tm.key = mb.time;
    tm.index = r;
    tm.batch = NULL;
    tm.first = 0;

    for (i = 0; i < r->elements; i++) {
        e = r->element[i];

        /* the module leaves a malformed entry out, and so numbers */

        if (e->type != REDIS_REPLY_STRING
            || !pop3ext_entry(e->str, e->len, &uid_len, &size))
        {
            pop3ext_error("warning: entry %zu of the index of mailbox "
                          "\"%s\" is malformed, and left out as a login "
                          "leaves it out", i + 1, mb.name);
            continue;
        }

        rc = pop3ext_entry_time(cx, &tm, i, &ms, &src);
        if (rc != EX_OK) {
            goto done;
        }

        n++;

        if (json) {
            printf("%s{\"number\":%zu,\"uid\":", n > 1 ? "," : "", n);
            pop3ext_json_string(stdout, e->str, uid_len);
            printf(",\"size\":%llu,\"delivered\":", size);

            if (src != NULL) {
                printf("%llu,\"delivered_from\":\"%s\"}", ms, src);

            } else {
                fputs("null,\"delivered_from\":null}", stdout);
            }

        } else {
            if (src != NULL) {
                pop3ext_time_text(text, ms);

            } else {
                memcpy(text, "-", 2);
            }

            printf("%zu %.*s %llu %s\n", n, (int) uid_len, e->str, size,
                   text);
        }
    }

    if (json) {
        fputs("]}\n", stdout);
    }

    rc = pop3ext_flush(stdout);

done:

    if (tm.batch != NULL) {
        freeReplyObject(tm.batch);
    }

    freeReplyObject(r);

    return rc;
}


/*
 * A new user without --mailbox reads the mailbox of its own name.  If that
 * mailbox holds mail while no user of the name exists, the mail is
 * another's: a user renamed away from the name reads it through its
 * "mailbox" field (user rename keeps mailboxes where they are), or a
 * deleted user's shared mailbox was kept.  user add refuses it then
 * (EX_CANTCREAT), unless --mailbox names the mailbox on purpose.
 */

int
pop3ext_mailbox_taken(pop3ext_ctx_t *cx, const char *user)
{
    int   rc, exists;
    char  key[POP3EXT_KEY_MAX], index[POP3EXT_KEY_MAX];

    if (pop3ext_key(key, P3X_USER_PREFIX, user, P3X_USER_SUFFIX) != EX_OK
        || pop3ext_key(index, P3X_MBOX_PREFIX, user, P3X_INDEX_SUFFIX)
           != EX_OK)
    {
        return EX_SOFTWARE;
    }

    rc = pop3ext_exists(cx, key, &exists);
    if (rc != EX_OK || exists) {
        return rc;
    }

    rc = pop3ext_exists(cx, index, &exists);
    if (rc != EX_OK) {
        return rc;
    }

    if (exists) {
        pop3ext_error("mailbox \"%s\" holds mail, and no user \"%s\" "
                      "exists: it is another's (a user renamed from \"%s\" "
                      "reads it); give --mailbox %s to read it anyway, or "
                      "--mailbox with another name", user, user, user, user);
        return EX_CANTCREAT;
    }

    return EX_OK;
}


/* the user record as HGETALL gives it; an unknown user is EX_NOUSER */

static int
pop3ext_record_read(pop3ext_ctx_t *cx, const char *key, redisReply **rp)
{
    int          rc;
    size_t       i;
    redisReply  *r;

    r = pop3ext_read(cx, &rc, key, "HGETALL %s", key);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        pop3ext_error("unexpected reply to HGETALL");
        freeReplyObject(r);
        return EX_SOFTWARE;
    }

    for (i = 0; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING) {
            pop3ext_error("unexpected reply to HGETALL");
            freeReplyObject(r);
            return EX_SOFTWARE;
        }
    }

    *rp = r;

    return EX_OK;
}


/*
 * Does record b hold the fields of record a, with "mailbox" set to mbox
 * (as a rename writes it)?
 */

static int
pop3ext_record_same(redisReply *a, redisReply *b, const char *mbox)
{
    size_t        i, j, n, vlen;
    const char   *v;

    n = 0;

    for (i = 0; i < a->elements; i += 2) {
        if (strcmp(a->element[i]->str, P3X_FIELD_MAILBOX) == 0) {
            continue;
        }

        n++;
    }

    /* the fields of a but its mailbox, and the mailbox */

    if (b->elements != 2 * (n + 1)) {
        return 0;
    }

    for (j = 0; j < b->elements; j += 2) {

        if (strcmp(b->element[j]->str, P3X_FIELD_MAILBOX) == 0) {
            v = mbox;
            vlen = strlen(mbox);

        } else {
            for (i = 0; i < a->elements; i += 2) {
                if (a->element[i]->len == b->element[j]->len
                    && memcmp(a->element[i]->str, b->element[j]->str,
                              a->element[i]->len) == 0)
                {
                    break;
                }
            }

            if (i == a->elements) {
                return 0;
            }

            v = a->element[i + 1]->str;
            vlen = a->element[i + 1]->len;
        }

        if (b->element[j + 1]->len != vlen
            || memcmp(b->element[j + 1]->str, v, vlen) != 0)
        {
            return 0;
        }
    }

    return 1;
}


/*
 * pop3ext user rename OLD NEW.  The user record moves; the mailbox stays
 * where it is, under its own name: a record that named a mailbox keeps
 * naming it, and one that read the mailbox named OLD (the implicit one)
 * now names it in its "mailbox" field.  Moving a mailbox would copy every
 * message between two hash tags (two slots of a cluster) while mail keeps
 * arriving, which cannot be made atomic, and would break the users who
 * share it; its name is seen by no client.
 *
 * The two records are in different slots too, so the move is two
 * scripts: NEW is created (never over an existing user), then OLD is
 * deleted if it still holds what was copied.  Interrupted in between,
 * both exist with the same secret and mailbox, and running the rename
 * again finishes it.  Refused while a session holds the maildrop (a
 * check, not a lock: a login may come during the rename, and is not
 * harmed, since the mailbox stays).
 */

int
pop3ext_user_rename(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int              rc, held, implicit;
    size_t           k;
    redisReply      *rec, *nrec, *r;
    const char      *names[2], *old, *new;
    pop3ext_mbox_t   mb;
    char             mbox[P3X_NAME_MAX + 1];
    char             okey[POP3EXT_KEY_MAX], nkey[POP3EXT_KEY_MAX];

    rc = pop3ext_admin_args(argc, argv, "user rename", NULL, names, 2);
    if (rc != EX_OK) {
        return rc;
    }

    old = names[0];
    new = names[1];

    if (strcmp(old, new) == 0) {
        return pop3ext_usage_error("user rename: OLD and NEW are the same");
    }

    if (pop3ext_key(okey, P3X_USER_PREFIX, old, P3X_USER_SUFFIX) != EX_OK
        || pop3ext_key(nkey, P3X_USER_PREFIX, new, P3X_USER_SUFFIX) != EX_OK)
    {
        return EX_SOFTWARE;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_record_read(cx, okey, &rec);
    if (rc != EX_OK) {
        return rc;
    }

    nrec = NULL;

    if (rec->elements == 0) {
        pop3ext_error("unknown user \"%s\"", old);
        rc = EX_NOUSER;
        goto done;
    }

    /* the mailbox OLD reads: its "mailbox" field, else its own name */

    implicit = 1;
    memcpy(mbox, old, strlen(old) + 1);

    for (k = 0; k < rec->elements; k += 2) {
        if (strcmp(rec->element[k]->str, P3X_FIELD_MAILBOX) == 0
            && rec->element[k + 1]->len > 0)
        {
            if (!p3x_valid_name((u_char *) rec->element[k + 1]->str,
                                rec->element[k + 1]->len))
            {
                pop3ext_error("user \"%s\" has an invalid mailbox name",
                              old);
                rc = EX_SOFTWARE;
                goto done;
            }

            memcpy(mbox, rec->element[k + 1]->str,
                   rec->element[k + 1]->len + 1);
            implicit = 0;
        }
    }

    rc = pop3ext_record_read(cx, nkey, &nrec);
    if (rc != EX_OK) {
        goto done;
    }

    if (nrec->elements > 0) {

        /* a rename interrupted after NEW was made: finish it */

        if (pop3ext_record_same(rec, nrec, mbox)) {
            rc = pop3ext_audit(cx, argc, argv);

            if (rc == EX_OK) {
                rc = pop3ext_rename_finish(cx, old, new, okey, rec);
            }

            goto done;
        }

        pop3ext_error("user \"%s\" exists", new);
        rc = EX_CANTCREAT;
        goto done;
    }

    if (pop3ext_mbox_keys(&mb, mbox) != EX_OK) {
        rc = EX_SOFTWARE;
        goto done;
    }

    rc = pop3ext_exists(cx, mb.lock, &held);
    if (rc != EX_OK) {
        goto done;
    }

    if (held) {
        r = pop3ext_read(cx, &rc, mb.owner, "GET %s", mb.owner);
        if (r == NULL) {
            goto done;
        }

        pop3ext_error("a session holds the maildrop of user \"%s\" "
                      "(mailbox \"%s\"%s%.*s): try again once it ends, or "
                      "end it with \"pop3ext kick %s\"", old, mbox,
                      r->type == REDIS_REPLY_STRING ? ", " : "",
                      r->type == REDIS_REPLY_STRING ? (int) r->len : 0,
                      r->type == REDIS_REPLY_STRING ? r->str : "", old);
        freeReplyObject(r);
        rc = EX_TEMPFAIL;
        goto done;
    }

    rc = pop3ext_audit(cx, argc, argv);
    if (rc != EX_OK) {
        goto done;
    }

    /* NEW: OLD's fields, with the mailbox named */

    rc = pop3ext_record_eval(cx, POP3EXT_SCRIPT_CREATE, nkey, rec, mbox, &r);
    if (rc != EX_OK) {
        goto done;
    }

    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "EXISTS", 6) == 0) {
        freeReplyObject(r);
        pop3ext_error("user \"%s\" exists", new);
        rc = EX_CANTCREAT;
        goto done;
    }

    rc = pop3ext_check(cx, r);
    if (rc != EX_OK) {
        pop3ext_error("user \"%s\" is unchanged", old);
        goto done;
    }

    freeReplyObject(r);

    rc = pop3ext_rename_finish(cx, old, new, okey, rec);

    if (rc == EX_OK && implicit) {
        pop3ext_error("note: user \"%s\" reads mailbox \"%s\", which keeps "
                      "its name", new, mbox);
    }

done:

    if (nrec != NULL) {
        freeReplyObject(nrec);
    }

    /* the record holds the secret, which may be a PLAIN password */

    for (k = 0; k < rec->elements; k++) {
        explicit_bzero(rec->element[k]->str, rec->element[k]->len);
    }

    freeReplyObject(rec);

    return rc;
}


/* the second half of a rename: OLD goes, if it is what was copied */

static int
pop3ext_rename_finish(pop3ext_ctx_t *cx, const char *old, const char *new,
    const char *okey, redisReply *rec)
{
    int          rc;
    redisReply  *r;

    rc = pop3ext_record_eval(cx, POP3EXT_SCRIPT_DELETE_SAME, okey, rec, NULL,
                             &r);

    if (rc == EX_OK) {
        rc = pop3ext_check(cx, r);
    }

    if (rc != EX_OK) {
        pop3ext_error("user \"%s\" was made, but \"%s\" may not be deleted "
                      "yet: both may log in, to the same mailbox; run the "
                      "rename again to finish it", new, old);
        return rc;
    }

    if (r->type != REDIS_REPLY_INTEGER) {
        pop3ext_error("unexpected reply to EVAL");
        freeReplyObject(r);
        return EX_SOFTWARE;
    }

    /* -1: OLD is gone already, deleted by someone else; done all the same */

    if (r->integer == 0) {
        pop3ext_error("user \"%s\" changed while it was renamed: \"%s\" "
                      "was made as it was before, and both exist now; "
                      "check them, and delete one", old, new);
        freeReplyObject(r);
        return EX_TEMPFAIL;
    }

    freeReplyObject(r);

    return EX_OK;
}


/*
 * EVAL script 1 key with the field-value pairs of the record rec: all of
 * them, or, with mbox, all but "mailbox" and then "mailbox" mbox, as a
 * rename writes them.
 */

static int
pop3ext_record_eval(pop3ext_ctx_t *cx, const char *script, const char *key,
    redisReply *rec, const char *mbox, redisReply **rp)
{
    int           rc;
    size_t        k, n;
    size_t       *lens;
    const char  **av;

    av = malloc((rec->elements + 6) * sizeof(const char *));
    lens = malloc((rec->elements + 6) * sizeof(size_t));

    if (av == NULL || lens == NULL) {
        pop3ext_error("out of memory");
        free(lens);
        free(av);
        return EX_TEMPFAIL;
    }

    n = 0;
    av[n] = "EVAL";
    lens[n++] = 4;
    av[n] = script;
    lens[n++] = strlen(script);
    av[n] = "1";
    lens[n++] = 1;
    av[n] = key;
    lens[n++] = strlen(key);

    for (k = 0; k < rec->elements; k += 2) {
        if (mbox != NULL
            && strcmp(rec->element[k]->str, P3X_FIELD_MAILBOX) == 0)
        {
            continue;
        }

        av[n] = rec->element[k]->str;
        lens[n++] = rec->element[k]->len;
        av[n] = rec->element[k + 1]->str;
        lens[n++] = rec->element[k + 1]->len;
    }

    if (mbox != NULL) {
        av[n] = P3X_FIELD_MAILBOX;
        lens[n++] = sizeof(P3X_FIELD_MAILBOX) - 1;
        av[n] = mbox;
        lens[n++] = strlen(mbox);
    }

    rc = pop3ext_call(cx, key, 1, (int) n, av, lens, rp);

    free(lens);
    free(av);

    return rc;
}

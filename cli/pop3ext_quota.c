
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: quotas, quota get, set and recalc, and the server's default
 * quota that deliver passes to DELIVER.
 *
 * The limits are the mailbox's (the "meta" hash: quota_messages,
 * quota_octets; absent: the server's default, 0: none), since the mailbox
 * is what fills, whoever reads it.  The usage beside them (messages,
 * octets) is kept by the scripts, atomically, so this file never writes
 * it except through USAGE.
 */


#include "pop3ext.h"


/* sets (ARGV[i + 1] not empty) or deletes (empty) the fields ARGV[i] */
#define POP3EXT_SCRIPT_QUOTA_SET                                              \
    "for i = 1, #ARGV, 2 do\n"                                                \
    "  if ARGV[i + 1] == '' then\n"                                           \
    "    redis.call('HDEL', KEYS[1], ARGV[i])\n"                              \
    "  else\n"                                                                \
    "    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])\n"                 \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "return 1\n"


typedef struct {
    unsigned long long  used;
    unsigned long long  limit;        /* 0: none */
    const char         *source;       /* "mailbox" or "default" */
} pop3ext_quota_item_t;


static int pop3ext_quota_args(int argc, char **argv, const char *cmd,
    int opts, int *json, const char **quota, const char **user);
static int pop3ext_quota_get(pop3ext_ctx_t *cx, int argc, char **argv);
static int pop3ext_quota_set(pop3ext_ctx_t *cx, int argc, char **argv);
static int pop3ext_quota_recalc(pop3ext_ctx_t *cx, int argc, char **argv);
static int pop3ext_quota_count(pop3ext_ctx_t *cx, pop3ext_mbox_t *mb,
    unsigned long long *count, unsigned long long *octets);
static int pop3ext_quota_field(redisReply *r, unsigned long long *v);
static void pop3ext_quota_limit(redisReply *r, unsigned long long def,
    pop3ext_quota_item_t *q);
static void pop3ext_quota_print(const char *name,
    pop3ext_quota_item_t *q);
static void pop3ext_quota_json_item(const char *name,
    pop3ext_quota_item_t *q);


int
pop3ext_quota(pop3ext_ctx_t *cx, int argc, char **argv)
{
    if (argc < 1) {
        return pop3ext_usage_error("quota needs \"get\", \"set\" or "
                                   "\"recalc\"");
    }

    if (strcmp(argv[0], "get") == 0) {
        return pop3ext_quota_get(cx, argc - 1, argv + 1);
    }

    if (strcmp(argv[0], "set") == 0) {
        return pop3ext_quota_set(cx, argc - 1, argv + 1);
    }

    if (strcmp(argv[0], "recalc") == 0) {
        return pop3ext_quota_recalc(cx, argc - 1, argv + 1);
    }

    return pop3ext_usage_error("unknown command \"quota %s\"", argv[0]);
}


/*
 * A count of octets, "0" for none: decimal digits, optionally followed by
 * k, m, g or t (powers of 1024, as nginx reads sizes).  0 on success.
 */

int
pop3ext_quota_number(const char *s, int suffix, unsigned long long *v)
{
    unsigned long long  n, mul;
    const char         *p;

    n = 0;

    for (p = s; *p >= '0' && *p <= '9'; p++) {
        if (n > (~0ULL - 9) / 10) {
            return -1;
        }

        n = n * 10 + (*p - '0');
    }

    if (p == s) {
        return -1;
    }

    mul = 1;

    if (suffix && *p != '\0' && p[1] == '\0') {
        switch (*p) {
        case 'k': case 'K': mul = 1ULL << 10; break;
        case 'm': case 'M': mul = 1ULL << 20; break;
        case 'g': case 'G': mul = 1ULL << 30; break;
        case 't': case 'T': mul = 1ULL << 40; break;
        default: return -1;
        }

        p++;
    }

    if (*p != '\0' || (n != 0 && n > ~0ULL / mul)) {
        return -1;
    }

    *v = n * mul;

    return 0;
}


/*
 * The server's default quota, "OCTETS:MESSAGES" (0: none), from --quota
 * or, without it, $POP3EXT_QUOTA; both 0 when neither is given.  It is
 * what nginx's pop3_ext_quota_octets and pop3_ext_quota_messages say,
 * for the mailboxes with no limits of their own.
 */

int
pop3ext_quota_default(const char *opt, unsigned long long *octets,
    unsigned long long *messages)
{
    char        buf[64], *colon;
    const char *s, *from;

    *octets = 0;
    *messages = 0;

    s = opt;
    from = "--quota";

    if (s == NULL) {
        s = getenv("POP3EXT_QUOTA");
        from = "POP3EXT_QUOTA";

        if (s == NULL || s[0] == '\0') {
            return EX_OK;
        }
    }

    if (strlen(s) >= sizeof(buf)) {
        goto invalid;
    }

    memcpy(buf, s, strlen(s) + 1);

    colon = strchr(buf, ':');
    if (colon == NULL) {
        goto invalid;
    }

    *colon = '\0';

    if (pop3ext_quota_number(buf, 1, octets) != 0
        || pop3ext_quota_number(colon + 1, 0, messages) != 0)
    {
        goto invalid;
    }

    return EX_OK;

invalid:

    return pop3ext_usage_error("%s must be OCTETS:MESSAGES (0: no limit; "
                               "OCTETS may end in k, m, g or t), not "
                               "\"%s\"", from, s);
}


/* options anywhere, one USER; --json and --quota where allowed */

static int
pop3ext_quota_args(int argc, char **argv, const char *cmd, int opts,
    int *json, const char **quota, const char **user)
{
    int  i, words;

    *user = NULL;
    words = 0;

    for (i = 0; i < argc; i++) {

        if (!words && strcmp(argv[i], "--") == 0) {
            words = 1;
            continue;
        }

        if (!words && argv[i][0] == '-') {

            if (opts && strcmp(argv[i], "--json") == 0) {
                *json = 1;
                continue;
            }

            if (opts && strcmp(argv[i], "--quota") == 0 && i + 1 < argc) {
                *quota = argv[++i];
                continue;
            }

            if (opts && strncmp(argv[i], "--quota=", 8) == 0) {
                *quota = argv[i] + 8;
                continue;
            }

            return pop3ext_usage_error("%s: unknown option \"%s\" (or a "
                                       "value missing)", cmd, argv[i]);
        }

        if (*user != NULL) {
            return pop3ext_usage_error("%s needs exactly one USER", cmd);
        }

        *user = argv[i];
    }

    if (*user == NULL) {
        return pop3ext_usage_error("%s needs exactly one USER", cmd);
    }

    return pop3ext_valid_user(*user);
}


/*
 * Limits, usage and the share used.  The usage is the one the scripts
 * keep; a mailbox written before it was kept (0.2) is counted from its
 * index here, read-only, and said so.
 */

static int
pop3ext_quota_get(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                   rc, json, kept;
    const char           *user, *qopt;
    redisReply           *r;
    unsigned long long    def_octets, def_messages;
    pop3ext_mbox_t        mb;
    pop3ext_quota_item_t  msgs, octs;

    json = 0;
    qopt = NULL;

    rc = pop3ext_quota_args(argc, argv, "quota get", 1, &json, &qopt, &user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_quota_default(qopt, &def_octets, &def_messages);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_user_mbox(cx, user, &mb);
    if (rc != EX_OK) {
        return rc;
    }

    r = pop3ext_read(cx, &rc, mb.meta, "HMGET %s %s %s %s %s", mb.meta,
                     P3X_META_MESSAGES, P3X_META_OCTETS,
                     P3X_META_QUOTA_MESSAGES, P3X_META_QUOTA_OCTETS);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
        pop3ext_error("unexpected reply to HMGET");
        freeReplyObject(r);
        return EX_SOFTWARE;
    }

    kept = (pop3ext_quota_field(r->element[0], &msgs.used) == 1
            && pop3ext_quota_field(r->element[1], &octs.used) == 1);

    pop3ext_quota_limit(r->element[2], def_messages, &msgs);
    pop3ext_quota_limit(r->element[3], def_octets, &octs);

    freeReplyObject(r);

    if (!kept) {
        rc = pop3ext_quota_count(cx, &mb, &msgs.used, &octs.used);
        if (rc != EX_OK) {
            return rc;
        }
    }

    if (json) {
        pop3ext_json_user(user, mb.name);
        printf(",\"usage_kept\":%s,", kept ? "true" : "false");
        pop3ext_quota_json_item("messages", &msgs);
        fputc(',', stdout);
        pop3ext_quota_json_item("octets", &octs);
        fputs("}\n", stdout);

    } else {
        printf("user: %s\nmailbox: %s\n", user, mb.name);
        pop3ext_quota_print("messages", &msgs);
        pop3ext_quota_print("octets", &octs);

        if (!kept) {
            printf("usage: counted from the index, not kept yet (the next "
                   "delivery or \"quota recalc\" keeps it)\n");
        }
    }

    if (fflush(stdout) == EOF) {
        pop3ext_error("cannot write: %s", strerror(errno));
        return EX_IOERR;
    }

    return EX_OK;
}


/* "messages: 3 / 100 (3%) [mailbox]", "octets: 2048 / none [default]" */

static void
pop3ext_quota_print(const char *name, pop3ext_quota_item_t *q)
{
    if (q->limit == 0) {
        printf("%s: %llu / none [%s]\n", name, q->used, q->source);
        return;
    }

    printf("%s: %llu / %llu (%llu%%) [%s]\n", name, q->used, q->limit,
           q->used * 100 / q->limit, q->source);
}


static void
pop3ext_quota_json_item(const char *name, pop3ext_quota_item_t *q)
{
    printf("\"%s\":{\"used\":%llu,\"limit\":%llu,", name, q->used,
           q->limit);

    if (q->limit == 0) {
        fputs("\"percent\":null,", stdout);

    } else {
        printf("\"percent\":%llu,", q->used * 100 / q->limit);
    }

    printf("\"source\":\"%s\"}", q->source);
}


/*
 * A meta field: 1 and *v for a decimal number, 0 when absent, -1 when it
 * holds something else.
 */

static int
pop3ext_quota_field(redisReply *r, unsigned long long *v)
{
    if (r->type == REDIS_REPLY_NIL) {
        return 0;
    }

    if (r->type == REDIS_REPLY_STRING && r->len > 0
        && pop3ext_quota_number(r->str, 0, v) == 0)
    {
        return 1;
    }

    return -1;
}


/*
 * A limit of the mailbox's own, else the server's default.  As DELIVER
 * reads them: a value that is not a number is the mailbox's, and none.
 */

static void
pop3ext_quota_limit(redisReply *r, unsigned long long def,
    pop3ext_quota_item_t *q)
{
    unsigned long long  v;

    q->limit = def;
    q->source = "default";

    switch (pop3ext_quota_field(r, &v)) {
    case 1:
        q->limit = v;
        q->source = "mailbox";
        break;
    case -1:
        q->limit = 0;
        q->source = "mailbox";
        break;
    }
}


/* the usage of a mailbox whose usage is not kept, from its index */

static int
pop3ext_quota_count(pop3ext_ctx_t *cx, pop3ext_mbox_t *mb,
    unsigned long long *count, unsigned long long *octets)
{
    int                  rc;
    char                *sp;
    size_t               i;
    redisReply          *r, *e;
    pop3ext_index_t      ix;
    unsigned long long   size;

    *count = 0;
    *octets = 0;

    pop3ext_index_init(&ix, mb->index, POP3EXT_STAT_BATCH);

    for ( ;; ) {
        rc = pop3ext_index_next(cx, &ix, &r);
        if (rc != EX_OK || r == NULL) {
            return rc;
        }

        /* as the scripts count: the number after the last space */

        for (i = 0; i < r->elements; i++) {
            e = r->element[i];

            if (e->type == REDIS_REPLY_STRING
                && (sp = strrchr(e->str, ' ')) != NULL
                && pop3ext_quota_number(sp + 1, 0, &size) == 0)
            {
                *octets += size;
            }
        }

        *count += r->elements;
        freeReplyObject(r);
    }
}


/*
 * quota set USER [--octets N] [--messages N]: N is a number (0: no limit)
 * or "default" (the mailbox's own limit goes; the server's applies).
 */

static int
pop3ext_quota_set(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                  i, n, rc, k, words;
    const char          *user, *octets, *messages, *v, **dst;
    size_t               avlen[8];
    const char          *av[8];
    redisReply          *r;
    pop3ext_mbox_t       mb;
    unsigned long long   num;
    char                 vo[32], vm[32];

    user = NULL;
    octets = NULL;
    messages = NULL;
    words = 0;

    for (i = 0; i < argc; i++) {
        dst = NULL;
        v = NULL;

        if (words || argv[i][0] != '-') {
            if (user != NULL) {
                return pop3ext_usage_error("quota set needs exactly one "
                                           "USER");
            }

            user = argv[i];
            continue;
        }

        if (strcmp(argv[i], "--") == 0) {
            words = 1;
            continue;
        }

        if (strcmp(argv[i], "--octets") == 0
            || strcmp(argv[i], "--messages") == 0)
        {
            if (i + 1 == argc) {
                return pop3ext_usage_error("%s needs a number or "
                                           "\"default\"", argv[i]);
            }

            dst = (argv[i][2] == 'o') ? &octets : &messages;
            v = argv[++i];

        } else if (strncmp(argv[i], "--octets=", 9) == 0) {
            dst = &octets;
            v = argv[i] + 9;

        } else if (strncmp(argv[i], "--messages=", 11) == 0) {
            dst = &messages;
            v = argv[i] + 11;

        } else {
            return pop3ext_usage_error("quota set: unknown option \"%s\"",
                                       argv[i]);
        }

        *dst = v;
    }

    if (user == NULL) {
        return pop3ext_usage_error("quota set needs exactly one USER");
    }

    if (octets == NULL && messages == NULL) {
        return pop3ext_usage_error("quota set needs --octets or --messages");
    }

    rc = pop3ext_valid_user(user);
    if (rc != EX_OK) {
        return rc;
    }

    /* "" in the script deletes the field */

    vo[0] = '\0';
    vm[0] = '\0';

    if (octets != NULL && strcmp(octets, "default") != 0) {
        if (pop3ext_quota_number(octets, 1, &num) != 0) {
            return pop3ext_usage_error("--octets must be a number of octets "
                                       "(k, m, g, t allowed), 0 for no "
                                       "limit, or \"default\"");
        }

        snprintf(vo, sizeof(vo), "%llu", num);
    }

    if (messages != NULL && strcmp(messages, "default") != 0) {
        if (pop3ext_quota_number(messages, 0, &num) != 0) {
            return pop3ext_usage_error("--messages must be a number, 0 for "
                                       "no limit, or \"default\"");
        }

        snprintf(vm, sizeof(vm), "%llu", num);
    }

    rc = pop3ext_user_mbox(cx, user, &mb);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_audit(cx, argc, argv);
    if (rc != EX_OK) {
        return rc;
    }

    av[0] = "EVAL";
    av[1] = POP3EXT_SCRIPT_QUOTA_SET;
    av[2] = "1";
    av[3] = mb.meta;
    k = 4;

    if (octets != NULL) {
        av[k++] = P3X_META_QUOTA_OCTETS;
        av[k++] = vo;
    }

    if (messages != NULL) {
        av[k++] = P3X_META_QUOTA_MESSAGES;
        av[k++] = vm;
    }

    for (n = 0; n < k; n++) {
        avlen[n] = strlen(av[n]);
    }

    rc = pop3ext_call(cx, mb.meta, 1, k, av, avlen, &r);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_check(cx, r);
    if (rc != EX_OK) {
        return rc;
    }

    freeReplyObject(r);

    return EX_OK;
}


/* quota recalc USER: the usage counted again by USAGE, printed */

static int
pop3ext_quota_recalc(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int              rc;
    const char      *user;
    redisReply      *r;
    pop3ext_mbox_t   mb;

    rc = pop3ext_user_name(argc, argv, "quota recalc", &user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_user_mbox(cx, user, &mb);
    if (rc != EX_OK) {
        return rc;
    }

    r = pop3ext_write(cx, &rc, mb.index, "EVAL %s 2 %s %s",
                      P3X_SCRIPT_USAGE, mb.index, mb.meta);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[0]->type != REDIS_REPLY_INTEGER
        || r->element[1]->type != REDIS_REPLY_INTEGER)
    {
        pop3ext_error("unexpected reply to USAGE");
        freeReplyObject(r);
        return EX_SOFTWARE;
    }

    printf("%lld %lld\n", r->element[0]->integer, r->element[1]->integer);

    freeReplyObject(r);

    if (fflush(stdout) == EOF) {
        pop3ext_error("cannot write: %s", strerror(errno));
        return EX_IOERR;
    }

    return EX_OK;
}


/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: the user commands, user add, del, show, disable and enable.
 */


#include "pop3ext.h"


/* the single USER of "user del" and "stat", after an optional "--" */

int
pop3ext_user_name(int argc, char **argv, const char *cmd, const char **user)
{
    if (argc > 0 && strcmp(argv[0], "--") == 0) {
        argc--;
        argv++;
    }

    if (argc != 1) {
        return pop3ext_usage_error("%s needs exactly one USER", cmd);
    }

    *user = argv[0];

    return pop3ext_valid_user(*user);
}


int
pop3ext_valid_user(const char *name)
{
    if (!p3x_valid_name((const u_char *) name, strlen(name))) {
        pop3ext_error("invalid user name: it must be 1 to %d octets, "
                      "without spaces, control characters or braces",
                      P3X_NAME_MAX);
        return EX_USAGE;
    }

    return EX_OK;
}


/*
 * Reads what a login reads of a user, with the module's own AUTHINFO
 * script: on EX_OK *rp is { secret, mailbox, disabled, failures }, each
 * nil or a string, for the caller to free; an unknown user is EX_NOUSER.
 */

int
pop3ext_user_record(pop3ext_ctx_t *cx, const char *user, redisReply **rp)
{
    int          rc;
    size_t       i;
    char         key[POP3EXT_KEY_MAX], fkey[POP3EXT_KEY_MAX];
    redisReply  *r;

    if (pop3ext_key(key, P3X_USER_PREFIX, user, P3X_USER_SUFFIX) != EX_OK
        || pop3ext_key(fkey, P3X_FAIL_USER_PREFIX, user, P3X_TAG_CLOSE)
           != EX_OK)
    {
        return EX_SOFTWARE;
    }

    r = pop3ext_read(cx, &rc, key, "EVAL %s 2 %s %s", P3X_SCRIPT_AUTHINFO,
                     key, fkey);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements < 4) {
        goto unexpected;
    }

    for (i = 0; i < 4; i++) {
        if (r->element[i]->type != REDIS_REPLY_NIL
            && r->element[i]->type != REDIS_REPLY_STRING)
        {
            goto unexpected;
        }
    }

    /* a hash without fields does not exist, so all nil is a missing key */

    if (r->element[0]->type == REDIS_REPLY_NIL
        && r->element[1]->type == REDIS_REPLY_NIL
        && r->element[2]->type == REDIS_REPLY_NIL)
    {
        pop3ext_error("unknown user \"%s\"", user);
        freeReplyObject(r);
        return EX_NOUSER;
    }

    *rp = r;

    return EX_OK;

unexpected:

    pop3ext_error("unexpected reply to AUTHINFO for user \"%s\"", user);
    freeReplyObject(r);

    return EX_SOFTWARE;
}


/* EX_OK, or EX_NOUSER, said, for a user without a record */

int
pop3ext_user_exists(pop3ext_ctx_t *cx, const char *user)
{
    int   rc, exists;
    char  key[POP3EXT_KEY_MAX];

    rc = pop3ext_key(key, P3X_USER_PREFIX, user, P3X_USER_SUFFIX);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_exists(cx, key, &exists);
    if (rc != EX_OK) {
        return rc;
    }

    if (!exists) {
        pop3ext_error("unknown user \"%s\"", user);
        return EX_NOUSER;
    }

    return EX_OK;
}


/*
 * Sets a field of an existing user record to value, or deletes it (value
 * NULL), in one script, so that a user deleted meanwhile is not made
 * again with just that field; an unknown user is EX_NOUSER.
 */

int
pop3ext_user_field(pop3ext_ctx_t *cx, const char *user, const char *field,
    const char *value)
{
    int          rc;
    redisReply  *r;
    char         key[POP3EXT_KEY_MAX];

    rc = pop3ext_key(key, P3X_USER_PREFIX, user, P3X_USER_SUFFIX);
    if (rc != EX_OK) {
        return rc;
    }

    if (value != NULL) {
        r = pop3ext_write(cx, &rc, key, "EVAL %s 1 %s %s %s",
                          POP3EXT_SCRIPT_FIELD, key, field, value);

    } else {
        r = pop3ext_write(cx, &rc, key, "EVAL %s 1 %s %s",
                          POP3EXT_SCRIPT_FIELD, key, field);
    }

    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_INTEGER) {
        pop3ext_error("unexpected reply to EVAL");
        rc = EX_SOFTWARE;

    } else if (r->integer == 0) {
        pop3ext_error("unknown user \"%s\"", user);
        rc = EX_NOUSER;
    }

    freeReplyObject(r);

    return rc;
}


/*
 * Reads the first line of stdin into buf as a C string without its line
 * end.  read(2), not stdio, so that no copy of the password stays in a
 * stdio buffer.
 */

int
pop3ext_read_line(char *buf, size_t size, size_t *len)
{
    char     *nl;
    size_t    n;
    ssize_t   got;

    n = 0;
    nl = NULL;

    while (n < size - 1) {
        got = read(STDIN_FILENO, buf + n, size - 1 - n);

        if (got == -1) {
            if (errno == EINTR) {
                continue;
            }

            pop3ext_error("cannot read stdin: %s", strerror(errno));
            return EX_IOERR;
        }

        if (got == 0) {
            break;
        }

        nl = memchr(buf + n, '\n', got);
        n += got;

        if (nl != NULL) {
            n = nl - buf;
            break;
        }
    }

    if (nl == NULL && n == size - 1) {
        pop3ext_error("the line on stdin is longer than %d octets",
                      POP3EXT_LINE_MAX);
        return EX_DATAERR;
    }

    while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == '\n')) {
        n--;
    }

    buf[n] = '\0';

    if (n > POP3EXT_LINE_MAX) {
        pop3ext_error("the line on stdin is longer than %d octets",
                      POP3EXT_LINE_MAX);
        return EX_DATAERR;
    }

    if (n == 0) {
        pop3ext_error("empty password");
        return EX_DATAERR;
    }

    if (memchr(buf, '\0', n) != NULL) {
        pop3ext_error("the line on stdin contains a NUL octet");
        return EX_DATAERR;
    }

    *len = n;

    return EX_OK;
}


/*
 * The secret, the mailbox if given, and the end of "disabled" are written
 * in one script: a new password never leaves the old "disabled".
 */

int
pop3ext_user_add(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                      i, rc, hash, given;
    size_t                   len, k, avlen[9];
    const char              *user, *name, *mbox, *av[9], *expire, *field;
    redisReply              *r;
    const pop3ext_scheme_t  *s;
    char                     key[POP3EXT_KEY_MAX];
    char                     line[POP3EXT_LINE_MAX + 3];
    char                     secret[POP3EXT_SECRET_MAX];
    char                     days[32];

    s = pop3ext_schemes;
    given = 0;
    hash = 0;
    mbox = NULL;
    expire = NULL;
    field = NULL;

    for (i = 0; i < argc; i++) {

        if (strcmp(argv[i], "--hash") == 0) {
            hash = 1;
            continue;
        }

        if (strcmp(argv[i], "--mailbox") == 0) {
            if (++i == argc) {
                return pop3ext_usage_error("--mailbox needs an MBOX");
            }

            mbox = argv[i];
            continue;
        }

        if (strncmp(argv[i], "--mailbox=", 10) == 0) {
            mbox = argv[i] + 10;
            continue;
        }

        if (strcmp(argv[i], "--expire") == 0) {
            if (++i == argc) {
                return pop3ext_usage_error("--expire needs DAYS, \"never\" "
                                           "or \"default\"");
            }

            expire = argv[i];
            continue;
        }

        if (strncmp(argv[i], "--expire=", 9) == 0) {
            expire = argv[i] + 9;
            continue;
        }

        if (strcmp(argv[i], "--scheme") == 0) {
            if (++i == argc) {
                return pop3ext_usage_error("--scheme needs a SCHEME");
            }

            name = argv[i];

        } else if (strncmp(argv[i], "--scheme=", 9) == 0) {
            name = argv[i] + 9;

        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;

        } else if (argv[i][0] == '-') {
            return pop3ext_usage_error("unknown option \"%s\"", argv[i]);

        } else {
            break;
        }

        s = pop3ext_scheme(name, strlen(name), 0);

        if (s == NULL) {
            fprintf(stderr, "pop3ext: unknown scheme \"%s\"; known:", name);

            for (k = 0; k < P3X_SCHEME_N; k++) {
                fprintf(stderr, " %s",
                        pop3ext_scheme_name(&pop3ext_schemes[k]));
            }

            fputc('\n', stderr);

            return EX_USAGE;
        }

        given = 1;
    }

    if (argc - i != 1) {
        return pop3ext_usage_error("user add needs exactly one USER");
    }

    user = argv[i];

    rc = pop3ext_valid_user(user);
    if (rc != EX_OK) {
        return rc;
    }

    /* an empty MBOX is the user's own mailbox: the field goes */

    if (mbox != NULL && mbox[0] != '\0'
        && !p3x_valid_name((const u_char *) mbox, strlen(mbox)))
    {
        pop3ext_error("invalid mailbox name: it must be 1 to %d octets, "
                      "without spaces, control characters or braces",
                      P3X_NAME_MAX);
        return EX_USAGE;
    }

    if (expire != NULL
        && pop3ext_expire_field(expire, days, sizeof(days), &field) != 0)
    {
        return EX_USAGE;
    }

    /* found before stdin is read */

    if (!hash && !(pop3ext_scheme_flags(s) & P3X_SCHEME_MAKE)) {
        pop3ext_error("%s is too weak to make new hashes; it is accepted "
                      "with --hash only, to import old ones",
                      pop3ext_scheme_name(s));
        return EX_USAGE;
    }

    rc = pop3ext_key(key, P3X_USER_PREFIX, user, P3X_USER_SUFFIX);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_read_line(line, sizeof(line), &len);

    if (rc == EX_OK) {
        rc = hash ? pop3ext_import(s, given, line, secret, sizeof(secret))
                  : pop3ext_hash(s, line, len, secret, sizeof(secret));
    }

    explicit_bzero(line, sizeof(line));

    if (rc != EX_OK) {
        goto done;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        goto done;
    }

    if (mbox == NULL) {
        rc = pop3ext_mailbox_taken(cx, user);
        if (rc != EX_OK) {
            goto done;
        }
    }

    rc = pop3ext_audit(cx, argc, argv);
    if (rc != EX_OK) {
        goto done;
    }

    av[0] = "EVAL";
    av[1] = POP3EXT_SCRIPT_USER_SET;
    av[2] = "1";
    av[3] = key;
    av[4] = secret;
    av[5] = (mbox == NULL) ? "keep" : (mbox[0] != '\0') ? "set" : "del";
    av[6] = (mbox != NULL) ? mbox : "";
    av[7] = (expire == NULL) ? "keep" : (field != NULL) ? "set" : "del";
    av[8] = (field != NULL) ? field : "";

    for (i = 0; i < 9; i++) {
        avlen[i] = strlen(av[i]);
    }

    rc = pop3ext_call(cx, key, 1, 9, av, avlen, &r);
    if (rc != EX_OK) {
        goto done;
    }

    rc = pop3ext_check(cx, r);
    if (rc != EX_OK) {
        goto done;
    }

    if (r->type != REDIS_REPLY_INTEGER) {
        pop3ext_error("unexpected reply to EVAL");
        rc = EX_SOFTWARE;
    }

    freeReplyObject(r);

done:

    /* a PLAIN secret is the password itself */
    explicit_bzero(secret, sizeof(secret));

    return rc;
}


/*
 * Prints what a login reads of a user, with the module's own AUTHINFO
 * script (it only reads): the scheme of the secret (never the secret),
 * the mailbox, the disabled flag as the module reads it, and the failed
 * logins counted against the name.
 */

int
pop3ext_user_show(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                      rc;
    size_t                   i;
    const char              *user, *p, *scheme, *note, *methods;
    redisReply              *r, *e;
    const pop3ext_scheme_t  *s;
    unsigned                 flags;
    unsigned long long       v;
    char                     mbox[P3X_NAME_MAX + 1];
    char                     name[64], mlist[64];

    rc = pop3ext_user_name(argc, argv, "user show", &user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_user_record(cx, user, &r);
    if (rc != EX_OK) {
        return rc;
    }

    /* the scheme, as ngx_p3x_auth_split() and the scheme table read it */

    e = r->element[0];
    note = "";
    methods = "password";

    if (e->type == REDIS_REPLY_NIL || e->len == 0) {
        scheme = "none";
        note = " (no secret: cannot log in)";
        methods = "none";

    } else if (e->str[0] != '{') {
        scheme = "CRYPT";

    } else if ((p = memchr(e->str, '}', e->len)) == NULL) {
        scheme = "invalid";
        note = " (not verified by the module: cannot log in)";
        methods = "none";

    } else {
        s = pop3ext_scheme(e->str + 1, p - e->str - 1, 0);

        if (s != NULL) {
            scheme = pop3ext_scheme_name(s);
            flags = pop3ext_scheme_flags(s);

            snprintf(mlist, sizeof(mlist), "%s%s%s",
                     (flags & P3X_METHOD_PASSWORD) ? "password" : "none",
                     (flags & P3X_METHOD_APOP) ? ", APOP" : "",
                     (flags & P3X_METHOD_CRAM_MD5) ? ", CRAM-MD5" : "");
            methods = mlist;

        } else {
            /* printable, for the terminal's sake */

            for (i = 0; i + 1 < sizeof(name) && e->str + 1 + i < p; i++) {
                name[i] = (e->str[1 + i] > 0x20 && e->str[1 + i] < 0x7f)
                          ? e->str[1 + i] : '?';
            }

            name[i] = '\0';
            scheme = name;
            note = " (not verified by the module: cannot log in)";
            methods = "none";
        }
    }

    e = r->element[1];

    if (e->type == REDIS_REPLY_STRING && e->len > 0) {
        if (!p3x_valid_name((u_char *) e->str, e->len)) {
            memcpy(mbox, "invalid (cannot log in)",
                   sizeof("invalid (cannot log in)"));

        } else {
            memcpy(mbox, e->str, e->len);
            mbox[e->len] = '\0';
        }

    } else {
        memcpy(mbox, user, strlen(user) + 1);
    }

    e = r->element[2];

    printf("user: %s\n"
           "scheme: %s%s\n"
           "methods: %s\n"
           "mailbox: %s\n"
           "disabled: %s\n",
           user, scheme, note, methods, mbox,
           (e->type == REDIS_REPLY_STRING && e->len > 0
            && !(e->len == 1 && e->str[0] == '0')) ? "yes" : "no");

    e = r->element[3];

    if (e->type == REDIS_REPLY_STRING && e->len > 0
        && strspn(e->str, "0123456789") == e->len)
    {
        printf("failures: %s\n", e->str);

    } else {
        printf("failures: 0\n");
    }

    /* the user's own retention, when it has one (else the server's) */

    e = (r->elements > 4) ? r->element[4] : NULL;

    if (e != NULL && e->type == REDIS_REPLY_STRING && e->len > 0) {
        printf("expire: %s\n",
               pop3ext_expire_parse(e->str, e->len, &v) == 0
               ? e->str : "invalid (the server's applies)");
    }

    if (fflush(stdout) == EOF) {
        pop3ext_error("cannot write: %s", strerror(errno));
        rc = EX_IOERR;
    }

    /* the reply holds the secret, which may be a PLAIN password */

    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0
        && r->element[0]->type == REDIS_REPLY_STRING)
    {
        explicit_bzero(r->element[0]->str, r->element[0]->len);
    }

    freeReplyObject(r);

    return rc;
}


/* sets or deletes "disabled" of an existing user */

int
pop3ext_user_disable(pop3ext_ctx_t *cx, int argc, char **argv, int disable)
{
    int          rc;
    const char  *user;

    rc = pop3ext_user_name(argc, argv,
                           disable ? "user disable" : "user enable", &user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    /* an unknown name is said before the audit trail gets an entry */

    rc = pop3ext_user_exists(cx, user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_audit(cx, argc, argv);
    if (rc != EX_OK) {
        return rc;
    }

    return pop3ext_user_field(cx, user, P3X_FIELD_DISABLED,
                              disable ? "1" : NULL);
}


/*
 * Deletes the mailbox first and the user last, so that a run that failed
 * half way can be repeated; a second pass then removes what a concurrent
 * delivery stored before the user key went away.
 *
 * The mailbox deleted is the one named USER, even when other users read
 * it through their "mailbox" field: finding them would take a SCAN of
 * every user record.  A mailbox that USER reads through its own "mailbox"
 * field is kept, since others may share it.  Both are in the usage text.
 */

int
pop3ext_user_del(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int          rc, nil;
    const char  *user;
    redisReply  *r;
    char         key[POP3EXT_KEY_MAX];

    rc = pop3ext_user_name(argc, argv, "user del", &user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_key(key, P3X_USER_PREFIX, user, P3X_USER_SUFFIX);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    r = pop3ext_read(cx, &rc, key, "HGET %s %s", key, P3X_FIELD_MAILBOX);
    if (r == NULL) {
        return rc;
    }

    nil = (r->type == REDIS_REPLY_NIL);

    if (r->type == REDIS_REPLY_STRING && r->len > 0
        && (r->len != strlen(user) || memcmp(r->str, user, r->len) != 0))
    {
        /* another user may share it: not ours to delete */
        pop3ext_error("note: mailbox \"%.*s\" of user \"%s\" is kept",
                      (int) r->len, r->str, user);
    }

    freeReplyObject(r);

    /* no mailbox field: a user without one, or no user */

    if (nil) {
        rc = pop3ext_user_exists(cx, user);
        if (rc != EX_OK) {
            return rc;
        }
    }

    rc = pop3ext_audit(cx, argc, argv);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_purge(cx, user, 1);
    if (rc != EX_OK) {
        return rc;
    }

    r = pop3ext_write(cx, &rc, key, "DEL %s", key);
    if (r == NULL) {
        return rc;
    }

    freeReplyObject(r);

    return pop3ext_purge(cx, user, 0);
}

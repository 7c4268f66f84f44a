
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext import: moves a mailbox from another server into Redis, each
 * message under the UIDL its POP3 clients already know, in the order
 * they know them, so that a client that leaves mail on the server
 * downloads nothing again when it is pointed at this one.
 *
 * Each message goes through DELIVER with the UIDL as its UID and the
 * delivery id "import:SOURCE:UIDL", so that a run repeated, even after
 * clients deleted what an earlier run imported, adds only what is
 * missing.  A UIDL already taken in the mailbox by the same message is
 * "already there"; by another message it is refused, as is a UIDL that
 * DELIVER cannot take (RFC 1939: 1 to 70 octets of 0x21-0x7E).
 */


#include "pop3ext_import.h"

#include <limits.h>


/*
 * How long a delivery id of an import is kept, in ms: each run that finds
 * the message at the source again renews it, so a message a client has
 * deleted here is not imported again by a run within 30 days of the last.
 */
#define POP3EXT_IMPORT_ID_TTL     (30ULL * 86400 * 1000)


typedef struct {
    pop3ext_ctx_t        *cx;
    char                  mbox[P3X_NAME_MAX + 1];
    char                  source[PATH_MAX + POP3EXT_HOST_MAX + 16];
    size_t                max;
    unsigned              imported;
    unsigned              already;
    unsigned              skipped;
} pop3ext_import_t;


static int pop3ext_import_dups(pop3ext_import_list_t *list);
static int pop3ext_uidl_cmp(const void *a, const void *b);
static int pop3ext_import_one(pop3ext_import_t *im, pop3ext_import_msg_t *m,
    pop3ext_maildir_t *md, pop3ext_pop3_t *pop);
static int pop3ext_import_store(pop3ext_import_t *im,
    pop3ext_import_msg_t *m, const char *label, u_char *msg, size_t len,
    const char *dlv, const char *index);
static int pop3ext_import_known(pop3ext_import_t *im, const char *dlv,
    int *known);
static void pop3ext_import_label(pop3ext_import_msg_t *m, char *buf,
    size_t size);
static void pop3ext_import_show(const char *s, char *buf, size_t size);
static int pop3ext_import_native(const char *uidl);
static unsigned long long pop3ext_header_time(const u_char *msg,
    size_t len);
static long long pop3ext_date(const u_char *p, const u_char *end);
static const u_char *pop3ext_date_skip(const u_char *p, const u_char *end);


/*
 * pop3ext import USER --from SOURCE [options]: options may come before
 * or after USER.
 */

int
pop3ext_import_mail(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                    rc, stop, i, opts, format_given;
    char                   password[POP3EXT_LINE_MAX + 2], *name, *v;
    char                   real[PATH_MAX], *h;
    size_t                 plen, len;
    unsigned               k;
    const char            *user, *from, *dups;
    pop3ext_pop3_t         pop;
    pop3ext_import_t       im;
    pop3ext_maildir_t      md;
    pop3ext_import_list_t  list;

    user = NULL;
    from = NULL;
    dups = NULL;
    opts = 1;
    format_given = 0;
    plen = 0;

    memset(&md, 0, sizeof(pop3ext_maildir_t));
    memset(&list, 0, sizeof(pop3ext_import_list_t));
    memset(&im, 0, sizeof(pop3ext_import_t));
    memset(&pop, 0, sizeof(pop3ext_pop3_t));
    pop.fd = -1;

    md.format = POP3EXT_UIDL_FORMAT;

    for (i = 0; i < argc; i++) {

        if (!opts || argv[i][0] != '-' || argv[i][1] != '-') {
            if (user != NULL) {
                return pop3ext_usage_error("import takes one USER");
            }

            user = argv[i];
            continue;
        }

        if (strcmp(argv[i], "--") == 0) {
            opts = 0;
            continue;
        }

        if (strcmp(argv[i], "--reuse-xuidl") == 0) {
            md.reuse_xuidl = 1;
            continue;
        }

        if (strcmp(argv[i], "--insecure") == 0) {
            pop.insecure = 1;
            continue;
        }

        /* the others take a value: "--name VALUE" or "--name=VALUE" */

        name = argv[i];
        v = strchr(name, '=');

        if (v != NULL) {
            len = v - name;
            v++;

        } else {
            len = strlen(name);

            if (i + 1 < argc) {
                v = argv[++i];
            }
        }

#define POP3EXT_OPT(s)  (len == sizeof(s) - 1 && strncmp(name, s, len) == 0)

        if (!POP3EXT_OPT("--from") && !POP3EXT_OPT("--uidl-format")
            && !POP3EXT_OPT("--uidlist") && !POP3EXT_OPT("--tls-ca")
            && !POP3EXT_OPT("--uidl-duplicates"))
        {
            return pop3ext_usage_error("import: unknown option \"%.*s\"",
                                       (int) len, name);
        }

        if (v == NULL || v[0] == '\0') {
            return pop3ext_usage_error("import: %.*s needs a value",
                                       (int) len, name);
        }

        if (POP3EXT_OPT("--from")) {
            from = v;

        } else if (POP3EXT_OPT("--uidl-format")) {
            md.format = v;
            format_given = 1;

        } else if (POP3EXT_OPT("--uidlist")) {
            md.uidlist = v;

        } else if (POP3EXT_OPT("--tls-ca")) {
            pop.tls_ca = v;

        } else {
            dups = v;
        }

#undef POP3EXT_OPT
    }

    if (user == NULL) {
        return pop3ext_usage_error("import needs a USER");
    }

    rc = pop3ext_valid_user(user);
    if (rc != EX_OK) {
        return rc;
    }

    if (from == NULL) {
        return pop3ext_usage_error("import needs --from maildir:DIR or "
                                   "--from pop3[s]://LOGIN@HOST[:PORT]");
    }

    if (strncmp(from, "maildir:", 8) == 0) {
        md.dir = from + 8;

        if (md.dir[0] == '\0') {
            return pop3ext_usage_error("--from maildir: needs a DIR");
        }

        if (pop.tls_ca != NULL || pop.insecure) {
            return pop3ext_usage_error("--tls-ca and --insecure are for a "
                                       "POP3 source");
        }

        if (dups != NULL) {
            if (strcmp(dups, "rename") == 0) {
                md.rename_dups = 1;

            } else if (strcmp(dups, "allow") != 0) {
                return pop3ext_usage_error("--uidl-duplicates is allow or "
                                           "rename");
            }
        }

        rc = pop3ext_uidl_format_check(md.format, &md.vars);
        if (rc != EX_OK) {
            return rc;
        }

        if (realpath(md.dir, real) == NULL) {
            pop3ext_error("%s: %s", md.dir, strerror(errno));
            return (errno == ENOENT || errno == ENOTDIR) ? EX_NOINPUT
                                                         : EX_IOERR;
        }

        snprintf(im.source, sizeof(im.source), "maildir:%s", real);

    } else {
        rc = pop3ext_pop3_url(&pop, from);
        if (rc != EX_OK) {
            return rc;
        }

        if (format_given || md.uidlist != NULL || md.reuse_xuidl
            || dups != NULL)
        {
            return pop3ext_usage_error("--uidl-format, --uidlist, "
                                       "--reuse-xuidl and --uidl-duplicates"
                                       " are for a Maildir: a POP3 server "
                                       "gives its UIDLs");
        }

        /*
         * The same mailbox read over pop3:// or pop3s://, on any port,
         * is one source: its delivery ids are the same.
         */

        snprintf(im.source, sizeof(im.source), "pop3:%s@%s", pop.login,
                 pop.host);

        for (h = strrchr(im.source, '@'); *h != '\0'; h++) {
            *h = (*h >= 'A' && *h <= 'Z') ? *h | 0x20 : *h;
        }

        rc = pop3ext_read_line(password, sizeof(password), &plen);
        if (rc != EX_OK) {
            return rc;
        }
    }

    rc = pop3ext_max_size(&im.max);
    if (rc != EX_OK) {
        goto done;
    }

    im.cx = cx;

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        goto done;
    }

    rc = pop3ext_mailbox(cx, user, im.mbox);
    if (rc != EX_OK) {
        goto done;
    }

    if (md.dir != NULL) {
        rc = pop3ext_maildir_read(&md, &list);

    } else {
        rc = pop3ext_pop3_open(&pop, password, plen);

        explicit_bzero(password, sizeof(password));

        if (rc == EX_OK) {
            rc = pop3ext_pop3_uidl(&pop, &list);
        }
    }

    if (rc == EX_OK) {
        rc = pop3ext_import_dups(&list);
    }

    if (rc == EX_OK) {
        rc = pop3ext_audit(cx, argc, argv);
    }

    if (rc != EX_OK) {
        goto done;
    }

    stop = EX_OK;

    for (k = 0; k < list.nmsgs; k++) {
        pop3ext_progress("importing into \"%s\": %u of %u messages (%u%%)",
                         im.mbox, k, list.nmsgs,
                         (unsigned) (100ULL * k / list.nmsgs));

        stop = pop3ext_import_one(&im, &list.msgs[k],
                                  md.dir ? &md : NULL,
                                  md.dir ? NULL : &pop);
        if (stop != EX_OK) {
            break;
        }
    }

    pop3ext_progress_end();

    /* nothing was marked for deletion: QUIT removes nothing */

    pop3ext_pop3_close(&pop);

    /* wait=N: what was stored is on the replicas before it is counted */

    rc = pop3ext_sync(cx);

    if (stop != EX_OK) {
        rc = stop;

    } else if (rc == EX_OK && im.skipped > 0) {
        rc = EX_DATAERR;
    }

    printf("imported %u, already there %u, skipped %u\n", im.imported,
           im.already, im.skipped);

    if (fflush(stdout) == EOF) {
        pop3ext_error("cannot write: %s", strerror(errno));

        if (rc == EX_OK) {
            rc = EX_IOERR;
        }
    }

done:

    explicit_bzero(password, sizeof(password));
    pop3ext_progress_end();
    pop3ext_pop3_close(&pop);

    for (k = 0; k < list.nmsgs; k++) {
        free(list.msgs[k].uidl);
        free(list.msgs[k].file);
    }

    free(list.msgs);

    return rc;
}


/* a new message at the end of the list, zeroed; NULL: out of memory */

pop3ext_import_msg_t *
pop3ext_import_add(pop3ext_import_list_t *list)
{
    unsigned               n;
    pop3ext_import_msg_t  *m;

    if (list->nmsgs == list->nalloc) {
        n = list->nalloc ? list->nalloc * 2 : 256;

        m = realloc(list->msgs, n * sizeof(pop3ext_import_msg_t));
        if (m == NULL) {
            pop3ext_error("out of memory");
            return NULL;
        }

        list->msgs = m;
        list->nalloc = n;
    }

    m = &list->msgs[list->nmsgs++];
    memset(m, 0, sizeof(pop3ext_import_msg_t));

    return m;
}


/*
 * A UIDL the source gives twice (Dovecot allows it by default): the
 * first message keeps it, the others are refused, in every run alike.
 */

static int
pop3ext_import_dups(pop3ext_import_list_t *list)
{
    unsigned               i, j;
    pop3ext_import_msg_t  **sorted;

    if (list->nmsgs < 2) {
        return EX_OK;
    }

    sorted = malloc(list->nmsgs * sizeof(pop3ext_import_msg_t *));
    if (sorted == NULL) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    for (i = 0; i < list->nmsgs; i++) {
        sorted[i] = &list->msgs[i];
    }

    /* by UIDL, then by position: the first of equals is the one kept */

    qsort(sorted, list->nmsgs, sizeof(pop3ext_import_msg_t *),
          pop3ext_uidl_cmp);

    for (i = 0; i < list->nmsgs; i = j) {
        for (j = i + 1; j < list->nmsgs
                        && strcmp(sorted[j]->uidl, sorted[i]->uidl) == 0;
             j++)
        {
            sorted[j]->first = sorted[i];
        }
    }

    free(sorted);

    return EX_OK;
}


static int
pop3ext_uidl_cmp(const void *a, const void *b)
{
    int                          rc;
    const pop3ext_import_msg_t  *ma, *mb;

    ma = *(pop3ext_import_msg_t *const *) a;
    mb = *(pop3ext_import_msg_t *const *) b;

    rc = strcmp(ma->uidl, mb->uidl);

    if (rc != 0) {
        return rc;
    }

    return (ma > mb) - (ma < mb);
}


/*
 * One message: EX_OK whether it was imported, already there or skipped
 * (counted); anything else stops the import.
 */

static int
pop3ext_import_one(pop3ext_import_t *im, pop3ext_import_msg_t *m,
    pop3ext_maildir_t *md, pop3ext_pop3_t *pop)
{
    int          rc, known, i;
    char         label[512], first[512], shown[96], hex[2 * 32 + 1];
    char         index[POP3EXT_KEY_MAX], dlv[POP3EXT_KEY_MAX];
    u_char      *msg, digest[32];
    size_t       len;
    EVP_MD_CTX  *ctx;

    pop3ext_import_label(m, label, sizeof(label));

    if (!p3x_valid_uid((const u_char *) m->uidl, strlen(m->uidl))) {
        pop3ext_import_show(m->uidl, shown, sizeof(shown));
        pop3ext_error("%s: UIDL \"%s\" is not 1 to %d characters 0x21-0x7E, "
                      "as RFC 1939 wants and this server's UIDs must be; "
                      "skipped", label, shown, P3X_UID_MAX);
        im->skipped++;
        return EX_OK;
    }

    if (m->first != NULL) {
        pop3ext_import_label(m->first, first, sizeof(first));
        pop3ext_error("%s: the source gives this UIDL to %s too, which "
                      "keeps it; skipped", label, first);
        im->skipped++;
        return EX_OK;
    }

    /* the delivery id: the SHA-256 of "import:SOURCE:UIDL" */

    ctx = EVP_MD_CTX_new();

    if (ctx == NULL
        || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(ctx, "import:", 7) != 1
        || EVP_DigestUpdate(ctx, im->source, strlen(im->source)) != 1
        || EVP_DigestUpdate(ctx, ":", 1) != 1
        || EVP_DigestUpdate(ctx, m->uidl, strlen(m->uidl)) != 1
        || EVP_DigestFinal_ex(ctx, digest, NULL) != 1)
    {
        EVP_MD_CTX_free(ctx);
        pop3ext_error("cannot compute SHA-256");
        return EX_SOFTWARE;
    }

    EVP_MD_CTX_free(ctx);

    for (i = 0; i < 32; i++) {
        sprintf(hex + 2 * i, "%02x", digest[i]);
    }

    if (pop3ext_key(index, P3X_MBOX_PREFIX, im->mbox, P3X_INDEX_SUFFIX)
        != EX_OK
        || pop3ext_key(dlv, P3X_MBOX_PREFIX, im->mbox, P3X_DLV_SUFFIX)
           != EX_OK
        || strlen(dlv) + P3X_DLV_ID_LEN >= POP3EXT_KEY_MAX)
    {
        return EX_SOFTWARE;
    }

    strcat(dlv, hex);

    /* imported by an earlier run: not downloaded again */

    rc = pop3ext_import_known(im, dlv, &known);
    if (rc != EX_OK) {
        return rc;
    }

    if (known) {
        im->already++;
        return EX_OK;
    }

    msg = NULL;

    if (md != NULL) {
        rc = pop3ext_maildir_fetch(md, m, im->max, &msg, &len);

    } else {
        if (m->size > im->max) {
            pop3ext_error("%s: larger than the limit of %zu octets "
                          "(POP3EXT_MAX_SIZE); skipped", label, im->max);
            im->skipped++;
            return EX_OK;
        }

        rc = pop3ext_pop3_retr(pop, m, im->max, &msg, &len);
    }

    if (rc == EX_DATAERR || rc == EX_NOINPUT) {
        im->skipped++;
        return EX_OK;
    }

    if (rc != EX_OK) {
        return rc;
    }

    /* line ends as pop3ext deliver makes them */

    rc = pop3ext_crlf(&msg, &len, im->max);

    if (rc == EX_DATAERR) {
        pop3ext_error("%s: larger than the limit of %zu octets "
                      "(POP3EXT_MAX_SIZE) with CRLF line ends; skipped",
                      label, im->max);
        free(msg);
        im->skipped++;
        return EX_OK;
    }

    if (rc != EX_OK) {
        pop3ext_error("out of memory");
        free(msg);
        return rc;
    }

    if (m->ms == 0) {
        m->ms = pop3ext_header_time(msg, len);
    }

    if (m->ms == 0) {
        m->ms = pop3ext_clock_ms();
    }

    rc = pop3ext_import_store(im, m, label, msg, len, dlv, index);

    free(msg);

    return rc;
}


/* PEXPIRE: the id is known (and lives on), or not */

static int
pop3ext_import_known(pop3ext_import_t *im, const char *dlv, int *known)
{
    int          rc;
    redisReply  *r;

    *known = 0;

    r = pop3ext_write(im->cx, &rc, dlv, "PEXPIRE %s %llu", dlv,
                      POP3EXT_IMPORT_ID_TTL);
    if (r == NULL) {
        return rc;
    }

    *known = (r->type == REDIS_REPLY_INTEGER && r->integer == 1);

    freeReplyObject(r);

    return EX_OK;
}


static int
pop3ext_import_store(pop3ext_import_t *im, pop3ext_import_msg_t *m,
    const char *label, u_char *msg, size_t len, const char *dlv,
    const char *index)
{
    int          rc, same, i;
    char         body[POP3EXT_KEY_MAX], meta[POP3EXT_KEY_MAX];
    char         mtime[POP3EXT_KEY_MAX], ttl[32], when[32];
    char         shown[96];
    size_t       avlen[14];
    redisReply  *r, *b;
    const char  *av[14];

    if (pop3ext_key(body, P3X_MBOX_PREFIX, im->mbox, P3X_MSG_SUFFIX)
        != EX_OK
        || pop3ext_key(meta, P3X_MBOX_PREFIX, im->mbox, P3X_META_SUFFIX)
           != EX_OK
        || pop3ext_key(mtime, P3X_MBOX_PREFIX, im->mbox, P3X_TIME_SUFFIX)
           != EX_OK
        || strlen(body) + strlen(m->uidl) >= POP3EXT_KEY_MAX)
    {
        return EX_SOFTWARE;
    }

    strcat(body, m->uidl);

    snprintf(ttl, sizeof(ttl), "%llu", POP3EXT_IMPORT_ID_TTL);
    snprintf(when, sizeof(when), "%llu", m->ms);

    /* KEYS index, body, meta, time, dlv; see P3X_SCRIPT_DELIVER */

    av[0] = "EVAL";
    av[1] = P3X_SCRIPT_DELIVER;
    av[2] = "5";
    av[3] = index;
    av[4] = body;
    av[5] = meta;
    av[6] = mtime;
    av[7] = dlv;
    av[8] = (const char *) msg;
    av[9] = m->uidl;
    av[10] = ttl;
    av[11] = when;

    /* no server default quota here: a mailbox's own limits apply */
    av[12] = "0";
    av[13] = "0";

    avlen[0] = sizeof("EVAL") - 1;
    avlen[1] = sizeof(P3X_SCRIPT_DELIVER) - 1;
    avlen[8] = len;

    for (i = 2; i < 14; i++) {
        if (i != 8) {
            avlen[i] = strlen(av[i]);
        }
    }

    rc = pop3ext_call(im->cx, index, 1, 14, av, avlen, &r);
    if (rc != EX_OK) {
        return rc;
    }

    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2
        && r->element[1]->type == REDIS_REPLY_INTEGER)
    {
        /* stored, or stored by this very call before its reply was lost */

        if (r->element[1]->integer == 1 || im->cx->resent) {
            im->imported++;

        } else {
            im->already++;
        }

        freeReplyObject(r);
        return EX_OK;
    }

    if (r->type != REDIS_REPLY_ERROR) {
        freeReplyObject(r);
        pop3ext_error("unexpected reply to DELIVER for mailbox \"%s\"",
                      im->mbox);
        return EX_SOFTWARE;
    }

    if (strncmp(r->str, "OVERQUOTA", 9) == 0) {
        pop3ext_error("%s: mailbox \"%s\" is over its quota (%s): raise it "
                      "and run the import again", label, im->mbox, r->str);
        freeReplyObject(r);
        return EX_CANTCREAT;
    }

    if (strncmp(r->str, "BADUID", 6) == 0
        || strncmp(r->str, "BADBODY", 7) == 0)
    {
        pop3ext_error("%s: mailbox \"%s\" refused the message: %s; skipped",
                      label, im->mbox, r->str);
        freeReplyObject(r);
        im->skipped++;
        return EX_OK;
    }

    if (strncmp(r->str, "EXISTS", 6) != 0) {
        return pop3ext_check(im->cx, r);
    }

    freeReplyObject(r);

    /*
     * The UID is taken: by this message (imported before its delivery id
     * expired, or by a retry of this call), or by another.
     */

    b = pop3ext_read(im->cx, &rc, body, "GET %s", body);
    if (b == NULL) {
        return rc;
    }

    same = (b->type == REDIS_REPLY_STRING && b->len == len
            && memcmp(b->str, msg, len) == 0);

    freeReplyObject(b);

    if (same) {
        if (im->cx->resent) {
            im->imported++;

        } else {
            im->already++;
        }

        /* its delivery id had expired: a later run must know it again */

        b = pop3ext_write(im->cx, &rc, dlv, "SET %s %s PX %llu", dlv,
                          m->uidl, POP3EXT_IMPORT_ID_TTL);
        if (b == NULL) {
            return rc;
        }

        freeReplyObject(b);

        return EX_OK;
    }

    pop3ext_import_show(m->uidl, shown, sizeof(shown));

    if (pop3ext_import_native(m->uidl)) {
        pop3ext_error("%s: UIDL \"%s\" has the form of the UIDs this "
                      "server makes, and another message of mailbox \"%s\" "
                      "has it: its clients would take one for the other; "
                      "skipped", label, shown, im->mbox);

    } else {
        pop3ext_error("%s: another message of mailbox \"%s\" has UIDL \"%s\" "
                      "(imported from another source, or a duplicate UIDL "
                      "in this one); skipped", label, im->mbox, shown);
    }

    im->skipped++;

    return EX_OK;
}


/* the message as errors name it: its file, or its number, and its UIDL */

static void
pop3ext_import_label(pop3ext_import_msg_t *m, char *buf, size_t size)
{
    char  shown[96];

    pop3ext_import_show(m->uidl, shown, sizeof(shown));

    if (m->file != NULL) {
        snprintf(buf, size, "%s (UIDL \"%s\")", m->file, shown);

    } else {
        snprintf(buf, size, "message %u (UIDL \"%s\")", m->num, shown);
    }
}


/* a UIDL for a message: control octets as "?", cut at 80 */

static void
pop3ext_import_show(const char *s, char *buf, size_t size)
{
    size_t  i;

    for (i = 0; s[i] != '\0' && i < size - 4 && i < 80; i++) {
        buf[i] = ((u_char) s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    }

    if (s[i] != '\0') {
        memcpy(buf + i, "...", 3);
        i += 3;
    }

    buf[i] = '\0';
}


/* the form of p3x_uid_make(): 24 lowercase hexadecimal digits */

static int
pop3ext_import_native(const char *uidl)
{
    size_t  i;

    for (i = 0; uidl[i] != '\0'; i++) {
        if (!((uidl[i] >= '0' && uidl[i] <= '9')
              || (uidl[i] >= 'a' && uidl[i] <= 'f')))
        {
            return 0;
        }
    }

    return i == P3X_UID_NEW_LEN;
}


/*
 * The delivery time a message tells: the date of its first Received
 * field, added by the server that delivered it, else its Date; 0 when
 * neither is usable (absent, unreadable, or in the future).
 */

static unsigned long long
pop3ext_header_time(const u_char *msg, size_t len)
{
    size_t               i, nlen, vlen;
    long long            date, received;
    const u_char        *p, *end, *name, *value, *semi;
    unsigned long long   now;

    p = msg;
    end = msg + (len < POP3EXT_HEADER_MAX ? len : POP3EXT_HEADER_MAX);
    date = -1;
    received = -1;

    while ((p = pop3ext_header_next(p, end, &name, &nlen, &value, &vlen))
           != NULL)
    {
        if (nlen == 8 && received == -1
            && strncasecmp((const char *) name, "Received", 8) == 0)
        {
            /* "Received: tokens ; date-time" */

            semi = NULL;

            for (i = 0; i < vlen; i++) {
                if (value[i] == ';') {
                    semi = value + i;
                }
            }

            received = semi ? pop3ext_date(semi + 1, value + vlen) : -2;

        } else if (nlen == 4 && date == -1
                   && strncasecmp((const char *) name, "Date", 4) == 0)
        {
            date = pop3ext_date(value, value + vlen);
        }
    }

    /* a time in the future is a wrong clock: retention would keep it */

    now = pop3ext_clock_ms();

    if (received > 0 && (unsigned long long) received * 1000 <= now) {
        return (unsigned long long) received * 1000;
    }

    if (date > 0 && (unsigned long long) date * 1000 <= now) {
        return (unsigned long long) date * 1000;
    }

    return 0;
}


/*
 * RFC 5322 date-time, with the obsolete forms of 4.3: an optional day of
 * the week, a two- or three-digit year, zone names; seconds since the
 * epoch, or -1.
 */

static long long
pop3ext_date(const u_char *p, const u_char *end)
{
    int           i, sign;
    long          v[6];
    struct tm     tm;
    long long     t, zone;
    const u_char  *w;

    static const char  months[] = "janfebmaraprmayjunjulaugsepoctnovdec";

    static const struct {
        const char  *name;
        int          hours;
    } zones[] = {
        { "ut", 0 }, { "gmt", 0 }, { "z", 0 }, { "utc", 0 },
        { "est", -5 }, { "edt", -4 }, { "cst", -6 }, { "cdt", -5 },
        { "mst", -7 }, { "mdt", -6 }, { "pst", -8 }, { "pdt", -7 },
    };

    p = pop3ext_date_skip(p, end);

    /* the day of the week, with or without its comma */

    if (p < end && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')) {
        while (p < end && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')) {
            p++;
        }

        p = pop3ext_date_skip(p, end);

        if (p < end && *p == ',') {
            p = pop3ext_date_skip(p + 1, end);
        }
    }

    /* day, month, year, hours, minutes[, seconds] */

    memset(v, 0, sizeof(v));

    for (i = 0; i < 6; i++) {
        p = pop3ext_date_skip(p, end);

        if (i == 1) {
            if (end - p < 3) {
                return -1;
            }

            for (v[1] = 0; v[1] < 12; v[1]++) {
                if (strncasecmp((const char *) p, months + 3 * v[1], 3) == 0)
                {
                    break;
                }
            }

            if (v[1] == 12) {
                return -1;
            }

            while (p < end && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')) {
                p++;
            }

            continue;
        }

        if (i == 5 && (p >= end || *p != ':')) {
            break;
        }

        if (i >= 4) {
            if (p >= end || *p != ':') {
                return -1;
            }

            p = pop3ext_date_skip(p + 1, end);
        }

        w = p;

        while (p < end && *p >= '0' && *p <= '9' && p - w < 4) {
            v[i] = v[i] * 10 + (*p++ - '0');
        }

        if (p == w) {
            return -1;
        }

        if (i == 2) {
            /* RFC 5322 4.3: 00-49 are 2000-2049, 50-99 and 3 digits +1900 */
            if (p - w == 2) {
                v[2] += (v[2] < 50) ? 2000 : 1900;

            } else if (p - w == 3) {
                v[2] += 1900;
            }
        }
    }

    if (v[0] < 1 || v[0] > 31 || v[2] < 1970 || v[3] > 23 || v[4] > 59
        || v[5] > 60)
    {
        return -1;
    }

    /* the zone; an unknown one is taken as UTC, as "-0000" would be */

    p = pop3ext_date_skip(p, end);
    zone = 0;

    if (p < end && (*p == '+' || *p == '-')) {
        sign = (*p == '-') ? -1 : 1;
        w = ++p;
        t = 0;

        while (p < end && *p >= '0' && *p <= '9' && p - w < 4) {
            t = t * 10 + (*p++ - '0');
        }

        if (p - w == 4 && t % 100 < 60) {
            zone = sign * ((t / 100) * 3600 + (t % 100) * 60);
        }

    } else {
        w = p;

        while (p < end && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')) {
            p++;
        }

        for (i = 0; i < (int) (sizeof(zones) / sizeof(zones[0])); i++) {
            if ((size_t) (p - w) == strlen(zones[i].name)
                && strncasecmp((const char *) w, zones[i].name, p - w) == 0)
            {
                zone = zones[i].hours * 3600;
                break;
            }
        }
    }

    memset(&tm, 0, sizeof(struct tm));
    tm.tm_mday = (int) v[0];
    tm.tm_mon = (int) v[1];
    tm.tm_year = (int) v[2] - 1900;
    tm.tm_hour = (int) v[3];
    tm.tm_min = (int) v[4];
    tm.tm_sec = (int) v[5];

    t = (long long) timegm(&tm);

    if (t < 0) {
        return -1;
    }

    return t - zone;
}


/* past blanks, line ends and (comments), which may nest */

static const u_char *
pop3ext_date_skip(const u_char *p, const u_char *end)
{
    int  depth;

    depth = 0;

    while (p < end) {
        if (*p == '(') {
            depth++;

        } else if (*p == ')' && depth > 0) {
            depth--;

        } else if (*p == '\\' && depth > 0 && p + 1 < end) {
            p++;

        } else if (depth == 0 && *p != ' ' && *p != '\t' && *p != '\r'
                   && *p != '\n')
        {
            break;
        }

        p++;
    }

    return p;
}


/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext import: a Dovecot Maildir as a source.  The messages, their
 * UIDLs and their order are those Dovecot's POP3 server presents, taken
 * from dovecot-uidlist as Dovecot 2.3 reads it:
 *
 *   header   "3 V<uidvalidity> N<next uid> G<guid> ..." (version 1:
 *            "1 <uidvalidity> <next uid>")
 *   record   "<uid> [<key><value> ...] :<file name>" (version 1: "<uid>
 *            <file name>"), by ascending UID; the file is named by its
 *            base name, the part before ":", since flags change the rest
 *
 * and of the record fields:
 *
 *   P<uidl>  the UIDL, saved by pop3_save_uidl or by a migration; "P"
 *            alone means the base file name.  It wins over the format.
 *   O<n>     the POP3 order: messages with one come first, by it, the
 *            others after them; each group by UID.
 *   G<guid>  the message GUID, %g (default: the base file name)
 *
 * Otherwise the UIDL comes from X-UIDL (pop3_reuse_xuidl) or from the
 * pop3_uidl_format expanded as Dovecot's var_expand() does, %08Xu%08Xv
 * by default.  A file that the uidlist does not name yet gets the UID
 * Dovecot would give it: from the next UID on, in the order of the time
 * in the file names.
 */


#include "pop3ext_import.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>


#define POP3EXT_UIDL_BUF          1024
#define POP3EXT_MODIFIERS_MAX     10      /* as Dovecot */


typedef struct {
    unsigned             uid;
    char                *base;       /* in the uidlist's text */
    size_t               len;        /* of the base name */
    char                *pop3;       /* P, NULL: none */
    char                *guid;       /* G, NULL: none */
    unsigned             order;      /* O, UINT_MAX: none */
} pop3ext_uidrec_t;


typedef struct {
    char                *name;       /* "cur/NAME" or "new/NAME" */
    size_t               len;        /* of the base name, after "cur/" */
    unsigned             used:1;
} pop3ext_mfile_t;


typedef struct {
    char                *text;
    pop3ext_uidrec_t    *recs;
    unsigned             nrecs;
    unsigned             validity;
    unsigned             next;
    unsigned             found:1;
} pop3ext_uidlist_t;


static int pop3ext_uidlist_read(pop3ext_maildir_t *md,
    pop3ext_uidlist_t *ul);
static int pop3ext_uidlist_record(pop3ext_uidlist_t *ul, char *line,
    unsigned version, const char *path, unsigned lineno);
static int pop3ext_maildir_scan(pop3ext_maildir_t *md,
    pop3ext_mfile_t **files, unsigned *nfiles);
static int pop3ext_maildir_subdir(pop3ext_maildir_t *md, const char *sub,
    pop3ext_mfile_t **files, unsigned *nfiles, unsigned *nalloc);
static int pop3ext_mfile_cmp(const void *a, const void *b);
static int pop3ext_mfile_time_cmp(const void *a, const void *b);
static int pop3ext_maildir_order_cmp(const void *a, const void *b);
static size_t pop3ext_base_len(const char *name);
static int pop3ext_maildir_time(pop3ext_maildir_t *md,
    pop3ext_import_msg_t *m);
static int pop3ext_maildir_uidl(pop3ext_maildir_t *md,
    pop3ext_import_msg_t *m, pop3ext_uidrec_t *rec, unsigned validity);
static int pop3ext_maildir_head(pop3ext_maildir_t *md,
    pop3ext_import_msg_t *m, u_char **head, size_t *len);
static int pop3ext_maildir_rename(pop3ext_import_list_t *list);
static void pop3ext_header_md5(const u_char *p, size_t len, char *hex);
static int pop3ext_xuidl(const u_char *p, size_t len, char *out,
    size_t size);
static int pop3ext_expand(const char *format, const char *const *vars,
    char *out, size_t size, unsigned *used);
static size_t pop3ext_modify(char key, char *v, size_t len, size_t size,
    int *width, int *offset);
static unsigned pop3ext_str_hash(const char *s, size_t len);
static int pop3ext_path(char *buf, size_t size, const char *dir,
    const char *name);


/* the five variables of pop3_uidl_format, in the order of vars[] */

static const char  pop3ext_var_keys[] = "vumfg";

/*
 * The messages of the Maildir md->dir, with their UIDLs, in the order
 * Dovecot's POP3 server lists them.
 */

int
pop3ext_maildir_read(pop3ext_maildir_t *md, pop3ext_import_list_t *list)
{
    int                    rc;
    size_t                 len;
    unsigned               i, j, nfiles, lo, hi, mid;
    pop3ext_mfile_t       *files, *f;
    pop3ext_uidrec_t      *rec, **recs;
    pop3ext_uidlist_t      ul;
    pop3ext_import_msg_t  *m;

    memset(&ul, 0, sizeof(pop3ext_uidlist_t));
    files = NULL;
    nfiles = 0;
    recs = NULL;

    rc = pop3ext_maildir_scan(md, &files, &nfiles);
    if (rc != EX_OK) {
        goto done;
    }

    rc = pop3ext_uidlist_read(md, &ul);
    if (rc != EX_OK) {
        goto done;
    }

    if (!ul.found && nfiles > 0
        && (md->vars & (POP3EXT_VAR_V|POP3EXT_VAR_U)))
    {
        /*
         * Without the uidlist there are no IMAP UIDs and no UIDVALIDITY:
         * Dovecot never listed these messages, and makes both up when it
         * first opens the Maildir.
         */

        pop3ext_error("%s has no dovecot-uidlist: UIDs and UIDVALIDITY "
                      "(%%u, %%v) are unknown; give --uidl-format without "
                      "them (%%f, the file name, say), or --uidlist",
                      md->dir);
        rc = EX_DATAERR;
        goto done;
    }

    qsort(files, nfiles, sizeof(pop3ext_mfile_t), pop3ext_mfile_cmp);

    /* the messages the uidlist names, by UID; those gone are expunged */

    recs = calloc(nfiles + 1, sizeof(pop3ext_uidrec_t *));
    if (recs == NULL) {
        goto no_memory;
    }

    for (i = 0; i < ul.nrecs; i++) {
        rec = &ul.recs[i];
        lo = 0;
        hi = nfiles;
        f = NULL;

        while (lo < hi) {
            mid = lo + (hi - lo) / 2;
            len = files[mid].len < rec->len ? files[mid].len : rec->len;
            rc = memcmp(files[mid].name + 4, rec->base, len);

            if (rc == 0) {
                rc = (files[mid].len > rec->len)
                     - (files[mid].len < rec->len);
            }

            if (rc == 0) {
                f = &files[mid];
                break;
            }

            if (rc < 0) {
                lo = mid + 1;

            } else {
                hi = mid;
            }
        }

        if (f == NULL || f->used) {
            continue;
        }

        f->used = 1;

        m = pop3ext_import_add(list);
        if (m == NULL) {
            rc = EX_TEMPFAIL;
            goto done;
        }

        m->uid = rec->uid;
        m->order = rec->order;
        m->file = strdup(f->name);

        if (m->file == NULL) {
            goto no_memory;
        }

        recs[list->nmsgs - 1] = rec;
    }

    /* the files Dovecot has not seen get UIDs as it would give them */

    j = 0;

    for (i = 0; i < nfiles; i++) {
        if (!files[i].used) {
            files[j++] = files[i];

        } else {
            free(files[i].name);
        }
    }

    nfiles = j;

    qsort(files, nfiles, sizeof(pop3ext_mfile_t), pop3ext_mfile_time_cmp);

    if (ul.nrecs > 0 && ul.next <= ul.recs[ul.nrecs - 1].uid) {
        ul.next = ul.recs[ul.nrecs - 1].uid + 1;
    }

    if (ul.next == 0) {
        ul.next = 1;
    }

    for (i = 0; i < nfiles; i++) {
        m = pop3ext_import_add(list);
        if (m == NULL) {
            rc = EX_TEMPFAIL;
            goto done;
        }

        m->uid = ul.next++;
        m->order = UINT_MAX;
        m->file = files[i].name;
        files[i].name = NULL;
    }

    for (i = 0; i < list->nmsgs; i++) {
        m = &list->msgs[i];

        rc = pop3ext_maildir_time(md, m);
        if (rc != EX_OK) {
            goto done;
        }

        rc = pop3ext_maildir_uidl(md, m, recs[i], ul.validity);
        if (rc != EX_OK) {
            goto done;
        }
    }

    if (md->rename_dups) {
        rc = pop3ext_maildir_rename(list);
        if (rc != EX_OK) {
            goto done;
        }
    }

    qsort(list->msgs, list->nmsgs, sizeof(pop3ext_import_msg_t),
          pop3ext_maildir_order_cmp);

    rc = EX_OK;

done:

    for (i = 0; i < nfiles; i++) {
        free(files[i].name);
    }

    free(files);
    free(recs);
    free(ul.recs);
    free(ul.text);

    return rc;

no_memory:

    pop3ext_error("out of memory");
    rc = EX_TEMPFAIL;
    goto done;
}


static int
pop3ext_uidlist_read(pop3ext_maildir_t *md, pop3ext_uidlist_t *ul)
{
    int           fd, rc;
    char          path[PATH_MAX], *p, *nl, *s;
    size_t        n;
    ssize_t       got;
    unsigned      version, lineno;
    struct stat   st;

    if (md->uidlist != NULL) {
        if (strlen(md->uidlist) >= sizeof(path)) {
            pop3ext_error("path too long: %s", md->uidlist);
            return EX_USAGE;
        }

        strcpy(path, md->uidlist);

    } else if (pop3ext_path(path, sizeof(path), md->dir, "dovecot-uidlist")
               != EX_OK)
    {
        return EX_USAGE;
    }

    fd = open(path, O_RDONLY|O_CLOEXEC);

    if (fd == -1) {
        if (errno == ENOENT && md->uidlist == NULL) {
            return EX_OK;
        }

        pop3ext_error("cannot open %s: %s", path, strerror(errno));
        return (errno == ENOENT) ? EX_NOINPUT : EX_IOERR;
    }

    /* Dovecot replaces the file by rename(2): this one stays whole */

    if (fstat(fd, &st) == -1) {
        pop3ext_error("cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return EX_IOERR;
    }

    ul->text = malloc((size_t) st.st_size + 1);
    if (ul->text == NULL) {
        pop3ext_error("out of memory");
        close(fd);
        return EX_TEMPFAIL;
    }

    n = 0;

    while (n < (size_t) st.st_size) {
        got = read(fd, ul->text + n, (size_t) st.st_size - n);

        if (got == -1 && errno == EINTR) {
            continue;
        }

        if (got == -1) {
            pop3ext_error("cannot read %s: %s", path, strerror(errno));
            close(fd);
            return EX_IOERR;
        }

        if (got == 0) {
            break;
        }

        n += got;
    }

    close(fd);

    ul->text[n] = '\0';
    ul->found = 1;

    /* one record per line at most */

    for (p = ul->text, lineno = 1; *p != '\0'; p++) {
        lineno += (*p == '\n');
    }

    ul->recs = calloc(lineno, sizeof(pop3ext_uidrec_t));
    if (ul->recs == NULL) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    version = 0;

    for (p = ul->text, lineno = 1; *p != '\0'; p = nl, lineno++) {
        nl = strchr(p, '\n');

        if (nl == NULL) {
            /* a last line without its LF is being written: not ours yet */
            break;
        }

        *nl++ = '\0';

        if (lineno > 1) {
            rc = pop3ext_uidlist_record(ul, p, version, path, lineno);
            if (rc != EX_OK) {
                return rc;
            }

            continue;
        }

        if (p[0] < '0' || p[0] > '9' || p[1] != ' ') {
            goto bad_header;
        }

        version = p[0] - '0';

        if (version == 1) {
            if (sscanf(p + 2, "%u %u", &ul->validity, &ul->next) != 2) {
                goto bad_header;
            }

        } else if (version == 3) {
            for (s = strtok(p + 2, " "); s != NULL; s = strtok(NULL, " ")) {
                if (s[0] == 'V') {
                    ul->validity = (unsigned) strtoul(s + 1, NULL, 10);

                } else if (s[0] == 'N') {
                    ul->next = (unsigned) strtoul(s + 1, NULL, 10);
                }
            }

        } else {
            pop3ext_error("%s: version %u is not one Dovecot 2.3 writes",
                          path, version);
            return EX_DATAERR;
        }

        if (ul->validity == 0) {
            goto bad_header;
        }
    }

    if (version == 0) {
        /* empty: being created; Dovecot has given out no UID yet */
        ul->found = 0;
    }

    return EX_OK;

bad_header:

    pop3ext_error("%s: bad header line", path);

    return EX_DATAERR;
}


static int
pop3ext_uidlist_record(pop3ext_uidlist_t *ul, char *line, unsigned version,
    const char *path, unsigned lineno)
{
    char              *p, *f;
    unsigned long      uid, order;
    pop3ext_uidrec_t  *rec;

    if (line[0] == '\0') {
        return EX_OK;
    }

    uid = 0;

    for (p = line; *p >= '0' && *p <= '9'; p++) {
        uid = uid * 10 + (*p - '0');

        if (uid >= UINT32_MAX) {
            break;
        }
    }

    if (uid == 0 || uid >= UINT32_MAX || *p != ' '
        || (ul->nrecs > 0 && uid <= ul->recs[ul->nrecs - 1].uid))
    {
        pop3ext_error("%s: line %u: a bad or unordered UID", path, lineno);
        return EX_DATAERR;
    }

    rec = &ul->recs[ul->nrecs];
    rec->uid = (unsigned) uid;
    rec->order = UINT_MAX;

    while (*p == ' ') {
        p++;
    }

    /* version 3: fields "<key><value>" up to the one that starts with ":" */

    while (version == 3 && *p != '\0' && *p != ':') {
        f = p;

        while (*p != ' ' && *p != '\0') {
            p++;
        }

        if (*p == ' ') {
            *p++ = '\0';
        }

        while (*p == ' ') {
            p++;
        }

        switch (f[0]) {

        case 'P':
            rec->pop3 = f + 1;
            break;

        case 'G':
            rec->guid = f + 1;
            break;

        case 'O':
            /* as Dovecot: a value that is not a number orders last */
            order = (f[1] >= '0' && f[1] <= '9') ? strtoul(f + 1, &f, 10)
                                                 : UINT_MAX;
            rec->order = (*f == '\0' && order < UINT_MAX) ? order
                                                          : UINT_MAX;
            break;

        default:
            break;
        }
    }

    if (*p == ':') {
        p++;
    }

    if (*p == '\0' || strchr(p, '/') != NULL) {
        pop3ext_error("%s: line %u: a bad file name", path, lineno);
        return EX_DATAERR;
    }

    rec->base = p;
    rec->len = pop3ext_base_len(p);
    ul->nrecs++;

    return EX_OK;
}


/* the files of cur/ and new/ (tmp/ holds deliveries not yet made) */

static int
pop3ext_maildir_scan(pop3ext_maildir_t *md, pop3ext_mfile_t **files,
    unsigned *nfiles)
{
    int       rc;
    unsigned  nalloc;

    nalloc = 0;

    rc = pop3ext_maildir_subdir(md, "cur", files, nfiles, &nalloc);

    if (rc == EX_OK) {
        rc = pop3ext_maildir_subdir(md, "new", files, nfiles, &nalloc);
    }

    return rc;
}


static int
pop3ext_maildir_subdir(pop3ext_maildir_t *md, const char *sub,
    pop3ext_mfile_t **files, unsigned *nfiles, unsigned *nalloc)
{
    DIR              *d;
    char              path[PATH_MAX];
    size_t            len;
    struct stat       st;
    struct dirent    *de;
    pop3ext_mfile_t  *f;

    if (pop3ext_path(path, sizeof(path), md->dir, sub) != EX_OK) {
        return EX_USAGE;
    }

    d = opendir(path);

    if (d == NULL) {
        pop3ext_error("cannot open %s: %s (is %s a Maildir?)", path,
                      strerror(errno), md->dir);
        return (errno == ENOENT || errno == ENOTDIR) ? EX_NOINPUT
                                                     : EX_IOERR;
    }

    for ( ;; ) {
        errno = 0;
        de = readdir(d);

        if (de == NULL) {
            if (errno != 0) {
                pop3ext_error("cannot read %s: %s", path, strerror(errno));
                closedir(d);
                return EX_IOERR;
            }

            break;
        }

        /* Maildir's rule: a name that starts with a dot is no message */

        if (de->d_name[0] == '.') {
            continue;
        }

        if (de->d_type != DT_REG) {
            if (de->d_type != DT_UNKNOWN && de->d_type != DT_LNK) {
                continue;
            }

            len = strlen(path);

            if (len + 1 + strlen(de->d_name) >= sizeof(path)) {
                continue;
            }

            path[len] = '/';
            strcpy(path + len + 1, de->d_name);

            if (stat(path, &st) == -1 || !S_ISREG(st.st_mode)) {
                path[len] = '\0';
                continue;
            }

            path[len] = '\0';
        }

        if (*nfiles == *nalloc) {
            *nalloc = *nalloc ? *nalloc * 2 : 256;

            f = realloc(*files, *nalloc * sizeof(pop3ext_mfile_t));
            if (f == NULL) {
                goto no_memory;
            }

            *files = f;
        }

        f = &(*files)[*nfiles];
        f->used = 0;
        f->name = malloc(4 + strlen(de->d_name) + 1);

        if (f->name == NULL) {
            goto no_memory;
        }

        memcpy(f->name, sub, 3);
        f->name[3] = '/';
        strcpy(f->name + 4, de->d_name);
        f->len = pop3ext_base_len(de->d_name);

        (*nfiles)++;
    }

    closedir(d);

    return EX_OK;

no_memory:

    pop3ext_error("out of memory");
    closedir(d);

    return EX_TEMPFAIL;
}


/* the base name: what comes before ":" (the info, as "2,S") */

static size_t
pop3ext_base_len(const char *name)
{
    const char  *c;

    c = strchr(name, ':');

    return c ? (size_t) (c - name) : strlen(name);
}


static int
pop3ext_mfile_cmp(const void *a, const void *b)
{
    int                     rc;
    size_t                  len;
    const pop3ext_mfile_t  *fa, *fb;

    fa = a;
    fb = b;
    len = fa->len < fb->len ? fa->len : fb->len;

    rc = memcmp(fa->name + 4, fb->name + 4, len);

    if (rc != 0) {
        return rc;
    }

    return (fa->len > fb->len) - (fa->len < fb->len);
}


/*
 * Dovecot's order for new files: the seconds in the name, then the
 * microseconds of its "M" part, then the rest of the base name.
 */

static int
pop3ext_mfile_time_cmp(const void *a, const void *b)
{
    int                     k;
    long                    usec[2];
    const char             *s[2], *p;
    unsigned long long      sec[2];
    const pop3ext_mfile_t  *f[2];

    f[0] = a;
    f[1] = b;

    for (k = 0; k < 2; k++) {
        sec[k] = 0;

        for (p = f[k]->name + 4; *p >= '0' && *p <= '9'; p++) {
            sec[k] = sec[k] * 10 + (*p - '0');
        }

        s[k] = p;
        usec[k] = -1;

        if (*p == '.') {
            for (p++; *p != '\0' && *p != '.' && *p != ':'; p++) {
                if (*p == 'M') {
                    usec[k] = strtol(p + 1, NULL, 10);
                    break;
                }
            }
        }
    }

    if (sec[0] != sec[1]) {
        return sec[0] < sec[1] ? -1 : 1;
    }

    if (usec[0] >= 0 && usec[1] >= 0 && usec[0] != usec[1]) {
        return usec[0] < usec[1] ? -1 : 1;
    }

    for ( /* void */ ; *s[0] == *s[1] && *s[0] != '\0' && *s[0] != ':';
         s[0]++, s[1]++)
    {
        /* void */
    }

    if ((*s[0] == '\0' || *s[0] == ':') && (*s[1] == '\0' || *s[1] == ':')) {
        return 0;
    }

    return (u_char) *s[0] - (u_char) *s[1];
}


/* POP3 order: "O" first, by it; the others after; each group by UID */

static int
pop3ext_maildir_order_cmp(const void *a, const void *b)
{
    const pop3ext_import_msg_t  *ma, *mb;

    ma = a;
    mb = b;

    if (ma->order != mb->order) {
        return ma->order < mb->order ? -1 : 1;
    }

    return (ma->uid > mb->uid) - (ma->uid < mb->uid);
}


/*
 * The delivery time: the earlier of the time in the file name (written
 * when the message was delivered, kept by copies that do not keep
 * times) and the modification time (Dovecot's received date, kept by
 * dsync and IMAP APPEND with a date when the name is new).
 */

static int
pop3ext_maildir_time(pop3ext_maildir_t *md, pop3ext_import_msg_t *m)
{
    char                 path[PATH_MAX];
    const char          *p;
    struct stat          st;
    unsigned long long   sec, ms;

    if (pop3ext_path(path, sizeof(path), md->dir, m->file) != EX_OK) {
        return EX_USAGE;
    }

    if (stat(path, &st) == -1) {
        /* gone meanwhile; the fetch says so */
        return EX_OK;
    }

    m->size = (unsigned long long) st.st_size;
    m->ms = (unsigned long long) st.st_mtim.tv_sec * 1000
            + st.st_mtim.tv_nsec / 1000000;

    sec = 0;

    for (p = m->file + 4; *p >= '0' && *p <= '9' && sec < 1ULL << 40; p++) {
        sec = sec * 10 + (*p - '0');
    }

    if (p == m->file + 4 || *p != '.' || sec == 0 || sec >= 1ULL << 40) {
        return EX_OK;
    }

    ms = sec * 1000;

    for (p++; *p != '\0' && *p != '.' && *p != ':'; p++) {
        if (*p == 'M') {
            ms += strtoul(p + 1, NULL, 10) / 1000 % 1000;
            break;
        }
    }

    if (ms < m->ms || m->ms == 0) {
        m->ms = ms;
    }

    return EX_OK;
}


/* Dovecot's pop3_get_uid(): the saved UIDL, X-UIDL, or the format */

static int
pop3ext_maildir_uidl(pop3ext_maildir_t *md, pop3ext_import_msg_t *m,
    pop3ext_uidrec_t *rec, unsigned validity)
{
    int          rc;
    char         out[POP3EXT_UIDL_BUF], v[16], u[16], md5[33];
    char         base[NAME_MAX + 1];
    u_char      *head;
    size_t       len, hlen;
    const char  *vars[5];

    len = pop3ext_base_len(m->file + 4);

    if (len > NAME_MAX) {
        len = NAME_MAX;
    }

    memcpy(base, m->file + 4, len);
    base[len] = '\0';

    if (rec != NULL && rec->pop3 != NULL) {
        m->uidl = strdup(rec->pop3[0] ? rec->pop3 : base);
        goto done;
    }

    head = NULL;
    hlen = 0;
    md5[0] = '\0';

    if (md->reuse_xuidl || (md->vars & POP3EXT_VAR_M)) {
        rc = pop3ext_maildir_head(md, m, &head, &hlen);
        if (rc != EX_OK) {
            return rc;
        }

        if (md->reuse_xuidl
            && pop3ext_xuidl(head, hlen, out, sizeof(out)) == EX_OK)
        {
            free(head);
            m->uidl = strdup(out);
            goto done;
        }

        pop3ext_header_md5(head, hlen, md5);
        free(head);
    }

    snprintf(v, sizeof(v), "%u", validity);
    snprintf(u, sizeof(u), "%u", m->uid);

    vars[0] = v;
    vars[1] = u;
    vars[2] = md5;
    vars[3] = base;
    vars[4] = (rec != NULL && rec->guid != NULL && rec->guid[0] != '\0')
              ? rec->guid : base;

    rc = pop3ext_expand(md->format, vars, out, sizeof(out), NULL);
    if (rc != EX_OK) {
        return rc;
    }

    m->uidl = strdup(out);

done:

    if (m->uidl == NULL) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    return EX_OK;
}


/* the start of a message, enough for its header */

static int
pop3ext_maildir_head(pop3ext_maildir_t *md, pop3ext_import_msg_t *m,
    u_char **head, size_t *len)
{
    int       fd;
    char      path[PATH_MAX];
    u_char   *buf;
    size_t    n;
    ssize_t   got;

    *head = NULL;
    *len = 0;

    if (pop3ext_path(path, sizeof(path), md->dir, m->file) != EX_OK) {
        return EX_USAGE;
    }

    fd = open(path, O_RDONLY|O_CLOEXEC);

    if (fd == -1) {
        /* gone or renamed meanwhile: the fetch finds it or says so */
        return EX_OK;
    }

    buf = malloc(POP3EXT_HEADER_MAX);
    if (buf == NULL) {
        close(fd);
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    n = 0;

    while (n < POP3EXT_HEADER_MAX) {
        got = read(fd, buf + n, POP3EXT_HEADER_MAX - n);

        if (got == -1 && errno == EINTR) {
            continue;
        }

        if (got <= 0) {
            break;
        }

        n += got;
    }

    close(fd);

    *head = buf;
    *len = n;

    return EX_OK;
}


/*
 * pop3_uidl_duplicates = rename: a UIDL seen before, in UID order, gets
 * "-2", "-3"... as Dovecot numbers them.  Quadratic, but only asked for
 * by the few who run Dovecot so.
 */

static int
pop3ext_maildir_rename(pop3ext_import_list_t *list)
{
    char       *s, *n;
    size_t      len;
    unsigned    i, j, *count, c;

    count = calloc(list->nmsgs + 1, sizeof(unsigned));
    if (count == NULL) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    for (i = 0; i < list->nmsgs; i++) {
        s = list->msgs[i].uidl;

        for (j = 0; j < i; j++) {
            if (strcmp(list->msgs[j].uidl, s) != 0) {
                continue;
            }

            c = ++count[j];

            len = strlen(s);
            n = malloc(len + 12);

            if (n == NULL) {
                free(count);
                pop3ext_error("out of memory");
                return EX_TEMPFAIL;
            }

            snprintf(n, len + 12, "%s-%u", s, c);
            free(s);
            s = n;
            list->msgs[i].uidl = s;

            /* the new name may be taken too: from the start again */
            j = (unsigned) -1;
        }

        count[i] = 1;
    }

    free(count);

    return EX_OK;
}


/*
 * Reads one message; a file renamed since the scan (its flags changed) is
 * looked for again by its base name.  EX_NOINPUT: it is gone.
 */

int
pop3ext_maildir_fetch(pop3ext_maildir_t *md, pop3ext_import_msg_t *m,
    size_t max, u_char **msg, size_t *len)
{
    int               fd, rc, k;
    DIR              *d;
    char              path[PATH_MAX], *name;
    u_char           *buf;
    size_t            n, blen;
    ssize_t           got;
    struct stat       st;
    struct dirent    *de;

    static const char  *subs[2] = { "cur", "new" };

    if (pop3ext_path(path, sizeof(path), md->dir, m->file) != EX_OK) {
        return EX_USAGE;
    }

    fd = open(path, O_RDONLY|O_CLOEXEC);

    for (k = 0; fd == -1 && errno == ENOENT && k < 2; k++) {
        if (pop3ext_path(path, sizeof(path), md->dir, subs[k]) != EX_OK) {
            return EX_USAGE;
        }

        d = opendir(path);
        if (d == NULL) {
            break;
        }

        blen = pop3ext_base_len(m->file + 4);
        name = NULL;

        while ((de = readdir(d)) != NULL) {
            if (pop3ext_base_len(de->d_name) == blen
                && memcmp(de->d_name, m->file + 4, blen) == 0)
            {
                name = de->d_name;
                break;
            }
        }

        if (name != NULL) {
            n = strlen(path);

            if (n + 1 + strlen(name) < sizeof(path)) {
                path[n] = '/';
                strcpy(path + n + 1, name);
                fd = open(path, O_RDONLY|O_CLOEXEC);
            }
        }

        closedir(d);

        if (name == NULL) {
            errno = ENOENT;
        }
    }

    if (fd == -1) {
        rc = errno;
        pop3ext_error("%s (UIDL \"%s\"): %s; skipped", m->file, m->uidl,
                      rc == ENOENT ? "gone from the Maildir" : strerror(rc));
        return (rc == ENOENT) ? EX_NOINPUT : EX_IOERR;
    }

    if (fstat(fd, &st) == -1) {
        rc = errno;
        close(fd);
        pop3ext_error("%s: %s", path, strerror(rc));
        return EX_IOERR;
    }

    /* normalisation only adds octets: a larger file cannot fit */

    if ((unsigned long long) st.st_size > max) {
        close(fd);
        pop3ext_error("%s (UIDL \"%s\"): larger than the limit of %zu "
                      "octets (POP3EXT_MAX_SIZE); skipped", m->file,
                      m->uidl, max);
        return EX_DATAERR;
    }

    buf = malloc(st.st_size > 0 ? (size_t) st.st_size : 1);
    if (buf == NULL) {
        close(fd);
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    n = 0;

    while (n < (size_t) st.st_size) {
        got = read(fd, buf + n, (size_t) st.st_size - n);

        if (got == -1 && errno == EINTR) {
            continue;
        }

        if (got == -1) {
            rc = errno;
            close(fd);
            free(buf);
            pop3ext_error("cannot read %s: %s", path, strerror(rc));
            return EX_IOERR;
        }

        if (got == 0) {
            break;
        }

        n += got;
    }

    close(fd);

    *msg = buf;
    *len = n;

    return EX_OK;
}


/*
 * The next header field of p..end: its name, and its value from after
 * ":" and the blanks that follow, to the end of its last line (folding
 * kept, the final line end not); NULL at the end of the header.
 */

const u_char *
pop3ext_header_next(const u_char *p, const u_char *end, const u_char **name,
    size_t *name_len, const u_char **value, size_t *value_len)
{
    const u_char  *nl, *colon, *v, *e;

    for ( ;; ) {
        if (p >= end || *p == '\n' || (*p == '\r' && p + 1 < end
                                       && p[1] == '\n'))
        {
            return NULL;
        }

        /* the field ends at a line end that no blank follows */

        e = p;

        for ( ;; ) {
            nl = memchr(e, '\n', end - e);

            if (nl == NULL) {
                e = end;
                break;
            }

            e = nl + 1;

            if (e >= end || (*e != ' ' && *e != '\t')) {
                break;
            }
        }

        colon = memchr(p, ':', e - p);

        if (colon == NULL) {
            p = e;
            continue;
        }

        *name = p;
        *name_len = colon - p;

        while (*name_len > 0 && (p[*name_len - 1] == ' '
                                 || p[*name_len - 1] == '\t'))
        {
            (*name_len)--;
        }

        v = colon + 1;

        while (v < e && (*v == ' ' || *v == '\t')) {
            v++;
        }

        *value = v;
        *value_len = e - v;

        while (*value_len > 0 && (v[*value_len - 1] == '\n'
                                  || v[*value_len - 1] == '\r'))
        {
            (*value_len)--;
        }

        return e;
    }
}


/*
 * X-UIDL, for pop3_reuse_xuidl: the first one's value; Dovecot passes it
 * on as it is, so a folded one cannot make a valid UIDL and is kept with
 * its line end, for the check to refuse.  Trailing blanks go: clients
 * split the UIDL line on them.
 */

static int
pop3ext_xuidl(const u_char *p, size_t len, char *out, size_t size)
{
    size_t         nlen, vlen;
    const u_char  *end, *name, *value;

    end = p + len;

    while ((p = pop3ext_header_next(p, end, &name, &nlen, &value, &vlen))
           != NULL)
    {
        if (nlen != 6 || strncasecmp((const char *) name, "X-UIDL", 6) != 0)
        {
            continue;
        }

        while (vlen > 0 && (value[vlen - 1] == ' '
                            || value[vlen - 1] == '\t'))
        {
            vlen--;
        }

        if (vlen >= size) {
            vlen = size - 1;
        }

        memcpy(out, value, vlen);
        out[vlen] = '\0';

        return EX_OK;
    }

    return EX_DATAERR;
}


/*
 * %m: the header MD5 Dovecot computes for mbox (mbox_md5 = apop3d, the
 * only storage that has one), in lowercase hex.  Each physical line of
 * these fields counts, the first from after ":" and one blank, a folded
 * one whole, without line ends: Delivered-To and X-Delivery-ID always,
 * the first Received, and Date and Message-ID until a Received is seen.
 */

static void
pop3ext_header_md5(const u_char *p, size_t len, char *hex)
{
    int            received, take;
    size_t         n, l, vlen;
    u_char         digest[16];
    const u_char  *end, *nl, *colon, *v, *name;
    EVP_MD_CTX    *ctx;
    unsigned int   dlen;

    static const char  digits[] = "0123456789abcdef";

    end = p + len;
    received = 0;
    take = 0;
    name = NULL;
    n = 0;

    ctx = EVP_MD_CTX_new();

    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1) {
        hex[0] = '\0';
        EVP_MD_CTX_free(ctx);
        return;
    }

    while (p < end) {
        nl = memchr(p, '\n', end - p);
        l = (nl ? nl : end) - p;

        if (l > 0 && nl != NULL && p[l - 1] == '\r') {
            l--;
        }

        if (l == 0) {
            break;
        }

        if (*p == ' ' || *p == '\t') {
            v = p;
            vlen = l;

        } else {
            colon = memchr(p, ':', l);

            if (colon == NULL) {
                name = NULL;
                v = p;
                vlen = l;

            } else {
                name = p;
                n = colon - p;

                while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
                    n--;
                }

                v = colon + 1;
                vlen = l - (v - p);

                if (vlen > 0 && (*v == ' ' || *v == '\t')) {
                    v++;
                    vlen--;
                }
            }

            take = 0;

#define POP3EXT_IS(s)  (name != NULL && n == sizeof(s) - 1                   \
                        && strncasecmp((const char *) name, s, n) == 0)

            if (POP3EXT_IS("Delivered-To") || POP3EXT_IS("X-Delivery-ID")) {
                take = 1;

            } else if (POP3EXT_IS("Date") || POP3EXT_IS("Message-ID")) {
                take = !received;

            } else if (POP3EXT_IS("Received")) {
                take = (received == 0) ? 2 : 0;
            }

#undef POP3EXT_IS
        }

        if (take) {
            EVP_DigestUpdate(ctx, v, vlen);
        }

        p = nl ? nl + 1 : end;

        /* the first Received ends with its last line */

        if (take == 2 && (p >= end || (*p != ' ' && *p != '\t'))) {
            received = 1;
            take = 0;
        }
    }

    dlen = 0;
    EVP_DigestFinal_ex(ctx, digest, &dlen);
    EVP_MD_CTX_free(ctx);

    for (n = 0; n < 16; n++) {
        hex[2 * n] = digits[digest[n] >> 4];
        hex[2 * n + 1] = digits[digest[n] & 0xf];
    }

    hex[32] = '\0';
}


/*
 * Checks --uidl-format before anything is read; *vars: the variables it
 * uses (POP3EXT_VAR_*).
 */

int
pop3ext_uidl_format_check(const char *format, unsigned *vars)
{
    int          rc;
    char         out[POP3EXT_UIDL_BUF];
    const char  *v[5];

    v[0] = v[1] = v[2] = v[3] = v[4] = "";
    *vars = 0;

    rc = pop3ext_expand(format, v, out, sizeof(out), vars);
    if (rc != EX_OK) {
        return rc;
    }

    /* as Dovecot: without a variable every message would have one UIDL */

    if (*vars == 0) {
        return pop3ext_usage_error("--uidl-format \"%s\" has none of "
                                   "%%v %%u %%m %%f %%g", format);
    }

    return EX_OK;
}


/*
 * pop3_uidl_format expanded as Dovecot 2.3's var_expand() does it:
 *
 *   %[-][0][WIDTH][.[0][-]WIDTH][MODIFIERS]KEY
 *
 * WIDTH before "." is an offset (negative: from the end), the one after
 * it the width (negative: all but that many at the end); a width with "0"
 * pads with zeros and never cuts.  The modifiers: L lowercase, U
 * uppercase, X decimal to lowercase hex, R reversed, M MD5 in hex, T
 * trailing blanks cut, E backslash before quotes and backslashes, D each
 * "." as ",dc=", H and N hashes.  vars[] holds %v %u %m %f %g.
 */

static int
pop3ext_expand(const char *format, const char *const *vars, char *out,
    size_t size, unsigned *used)
{
    int          sign, zero, width, offset, i, nmod;
    char         v[POP3EXT_UIDL_BUF], mods[POP3EXT_MODIFIERS_MAX];
    size_t       n, len;
    const char  *s, *key, *e;

    n = 0;

    for (s = format; *s != '\0'; s++) {

        if (*s != '%') {
            if (n + 1 < size) {
                out[n++] = *s;
            }

            continue;
        }

        s++;
        sign = 1;
        zero = 0;
        width = 0;
        offset = 0;

        if (*s == '-') {
            sign = -1;
            s++;
        }

        if (*s == '0') {
            zero = 1;
            s++;
        }

        while (*s >= '0' && *s <= '9' && width < 100000) {
            width = width * 10 + (*s++ - '0');
        }

        if (*s == '.') {
            offset = sign * width;
            sign = 1;
            width = 0;
            zero = 0;
            s++;

            if (*s == '0') {
                zero = 1;
                s++;
            }

            if (*s == '-') {
                sign = -1;
                s++;
            }

            while (*s >= '0' && *s <= '9' && width < 100000) {
                width = width * 10 + (*s++ - '0');
            }

            width *= sign;
        }

        for (nmod = 0; nmod < POP3EXT_MODIFIERS_MAX; nmod++) {
            if (*s == '\0' || strchr("LUEXRHNMDT", *s) == NULL) {
                break;
            }

            mods[nmod] = *s++;
        }

        if (*s == '\0') {
            break;
        }

        /* the variable */

        /* only these: Dovecot refuses %{...} in pop3_uidl_format */

        if (*s == '%') {
            key = "%";

        } else {
            e = strchr(pop3ext_var_keys, *s);

            if (e == NULL) {
                return pop3ext_usage_error("--uidl-format: unknown "
                                           "variable %%%c (Dovecot's are "
                                           "%%v %%u %%m %%f %%g)", *s);
            }

            key = vars[e - pop3ext_var_keys];

            if (used != NULL) {
                *used |= 1 << (e - pop3ext_var_keys);
            }
        }

        len = strlen(key);

        if (len >= sizeof(v)) {
            len = sizeof(v) - 1;
        }

        memcpy(v, key, len);
        v[len] = '\0';

        for (i = 0; i < nmod; i++) {
            len = pop3ext_modify(mods[i], v, len, sizeof(v), &width, &offset);
        }

        key = v;

        if (offset < 0) {
            if (len > (size_t) -offset) {
                key += len - (size_t) -offset;
                len = (size_t) -offset;
            }

        } else {
            while (len > 0 && offset > 0) {
                key++;
                len--;
                offset--;
            }
        }

        if (width != 0 && !zero) {
            if (width < 0) {
                width = (int) len + width;
            }

            /* a width left negative takes it all, as in Dovecot */

            if (width >= 0 && (size_t) width < len) {
                len = (size_t) width;
            }

        } else if (width != 0) {
            while ((int) len < width && n + 1 < size) {
                out[n++] = '0';
                width--;
            }
        }

        if (n + len >= size) {
            len = size - 1 - n;
        }

        memcpy(out + n, key, len);
        n += len;
    }

    out[n] = '\0';

    return EX_OK;
}


/* one modifier applied to v in place; its new length */

static size_t
pop3ext_modify(char key, char *v, size_t len, size_t size, int *width,
    int *offset)
{
    int                  n;
    char                 t[POP3EXT_UIDL_BUF];
    u_char               md[16];
    size_t               i, j;
    unsigned long long   l, h;

    static const char  digits[] = "0123456789abcdef";

    switch (key) {

    case 'L':
        for (i = 0; i < len; i++) {
            v[i] = (v[i] >= 'A' && v[i] <= 'Z') ? v[i] | 0x20 : v[i];
        }

        return len;

    case 'U':
        for (i = 0; i < len; i++) {
            v[i] = (v[i] >= 'a' && v[i] <= 'z') ? v[i] & ~0x20 : v[i];
        }

        return len;

    case 'X':
        /* Dovecot reads the value as a decimal number, 0 if it is not */
        l = 0;

        for (i = 0; i < len && v[i] >= '0' && v[i] <= '9'; i++) {
            l = l * 10 + (v[i] - '0');
        }

        if (i != len || len == 0) {
            l = 0;
        }

        n = snprintf(v, size, "%llx", l);
        return (size_t) n;

    case 'R':
        for (i = 0; i < len / 2; i++) {
            t[0] = v[i];
            v[i] = v[len - 1 - i];
            v[len - 1 - i] = t[0];
        }

        return len;

    case 'T':
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'
                           || v[len - 1] == '\r' || v[len - 1] == '\n'
                           || v[len - 1] == '\f' || v[len - 1] == '\v'))
        {
            len--;
        }

        v[len] = '\0';
        return len;

    case 'E':
    case 'D':
        for (i = 0, j = 0; i < len && j + 5 < sizeof(t); i++) {
            if (key == 'E' && (v[i] == '"' || v[i] == '\'' || v[i] == '\\'))
            {
                t[j++] = '\\';
                t[j++] = v[i];

            } else if (key == 'D' && v[i] == '.') {
                memcpy(t + j, ",dc=", 4);
                j += 4;

            } else {
                t[j++] = v[i];
            }
        }

        memcpy(v, t, j);
        v[j] = '\0';
        return j;

    case 'M':
    case 'N':
        EVP_Digest(v, len, md, NULL, EVP_md5(), NULL);

        if (key == 'M') {
            for (i = 0; i < 16; i++) {
                v[2 * i] = digits[md[i] >> 4];
                v[2 * i + 1] = digits[md[i] & 0xf];
            }

            v[32] = '\0';
            return 32;
        }

        h = 0;

        for (i = 0; i < 8; i++) {
            h = h << 8 | md[i];
        }

        goto hash;

    case 'H':
        h = pop3ext_str_hash(v, len);

    hash:

        /* the width takes the hash modulo it, the offset pads with zeros */

        if (*width != 0) {
            h %= (key == 'H') ? (unsigned) *width
                              : (unsigned long long) (long long) *width;
            *width = 0;
        }

        n = snprintf(t, sizeof(t), "%x", (unsigned) h);

        for (i = 0; (int) i < *offset - n && i < size - 1 - n; i++) {
            v[i] = '0';
        }

        memcpy(v + i, t, n + 1);
        *offset = 0;
        return i + n;

    default:
        return len;
    }
}


/* Dovecot's str_hash(), the ELF hash, for the H modifier */

static unsigned
pop3ext_str_hash(const char *s, size_t len)
{
    size_t    i;
    unsigned  h, g;

    h = 0;

    for (i = 0; i < len; i++) {
        h = (h << 4) + (u_char) s[i];
        g = h & 0xf0000000U;

        if (g != 0) {
            h ^= g >> 24;
            h ^= g;
        }
    }

    return h;
}


static int
pop3ext_path(char *buf, size_t size, const char *dir, const char *name)
{
    int  n;

    n = snprintf(buf, size, "%s/%s", dir, name);

    if (n < 0 || (size_t) n >= size) {
        pop3ext_error("path too long: %s/%s", dir, name);
        return EX_USAGE;
    }

    return EX_OK;
}

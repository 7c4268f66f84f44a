
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: password schemes, making hashes and checking imported ones.
 */


#include "pop3ext.h"

#include <openssl/md5.h>


static int pop3ext_secret(const pop3ext_scheme_t *s, const char *value,
    char *secret, size_t size);
static int pop3ext_make_crypt(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size);
static int pop3ext_make_argon2id(const pop3ext_scheme_t *s,
    const char *pass, size_t len, char *secret, size_t size);
static int pop3ext_make_pbkdf2(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size);
static int pop3ext_make_ssha(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size);
static int pop3ext_make_cram_md5(const pop3ext_scheme_t *s,
    const char *pass, size_t len, char *secret, size_t size);
static int pop3ext_make_plain(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size);
static int pop3ext_valid_crypt(const pop3ext_scheme_t *s, const char *v);
static int pop3ext_valid_argon2id(const pop3ext_scheme_t *s, const char *v);
static int pop3ext_valid_pbkdf2(const pop3ext_scheme_t *s, const char *v);
static int pop3ext_valid_ssha(const pop3ext_scheme_t *s, const char *v);
static int pop3ext_valid_cram_md5(const pop3ext_scheme_t *s, const char *v);
static int pop3ext_valid_plain(const pop3ext_scheme_t *s, const char *v);
static size_t pop3ext_digits(const char *p, unsigned long *value);


#define POP3EXT_B64_CRYPT                                                     \
    "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#define POP3EXT_B64                                                           \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#define POP3EXT_HEX               "0123456789abcdefABCDEF"


/*
 * How pop3ext makes and checks each scheme of the shared table
 * (ngx_mail_pop3_ext_scheme.h: names, prefixes, what each can do), in
 * its order.  A bare value (no "{SCHEME}") selects the first
 * P3X_SCHEME_DETECT scheme whose shape it has; their shapes do not
 * overlap.
 */

const pop3ext_scheme_t  pop3ext_schemes[P3X_SCHEME_N] = {

    [P3X_SCHEME_SHA512_CRYPT] = {
      .id = P3X_SCHEME_SHA512_CRYPT, .make = pop3ext_make_crypt,
      .valid = pop3ext_valid_crypt, .setting = "$6$",
      .len = 86, .ids = { "$6$", NULL } },

    [P3X_SCHEME_SHA256_CRYPT] = {
      .id = P3X_SCHEME_SHA256_CRYPT, .make = pop3ext_make_crypt,
      .valid = pop3ext_valid_crypt, .setting = "$5$",
      .len = 43, .ids = { "$5$", NULL } },

    /* bcrypt silently ignores octets past the 72nd */
    [P3X_SCHEME_BLF_CRYPT] = {
      .id = P3X_SCHEME_BLF_CRYPT, .make = pop3ext_make_crypt,
      .valid = pop3ext_valid_crypt, .setting = "$2b$",
      .cost = 10, .max = 72, .len = 53,
      .ids = { "$2b$", "$2y$", "$2a$", NULL } },

    [P3X_SCHEME_ARGON2ID] = {
      .id = P3X_SCHEME_ARGON2ID, .make = pop3ext_make_argon2id,
      .valid = pop3ext_valid_argon2id },

    [P3X_SCHEME_PBKDF2] = {
      .id = P3X_SCHEME_PBKDF2, .make = pop3ext_make_pbkdf2,
      .valid = pop3ext_valid_pbkdf2 },

    [P3X_SCHEME_SSHA512] = {
      .id = P3X_SCHEME_SSHA512, .make = pop3ext_make_ssha,
      .valid = pop3ext_valid_ssha, .md = EVP_sha512 },

    [P3X_SCHEME_SSHA256] = {
      .id = P3X_SCHEME_SSHA256, .make = pop3ext_make_ssha,
      .valid = pop3ext_valid_ssha, .md = EVP_sha256 },

    [P3X_SCHEME_CRAM_MD5] = {
      .id = P3X_SCHEME_CRAM_MD5, .make = pop3ext_make_cram_md5,
      .valid = pop3ext_valid_cram_md5 },

    [P3X_SCHEME_PLAIN] = {
      .id = P3X_SCHEME_PLAIN, .make = pop3ext_make_plain,
      .valid = pop3ext_valid_plain },

    /* weak: imported only (no P3X_SCHEME_MAKE), so no make */

    [P3X_SCHEME_MD5_CRYPT] = {
      .id = P3X_SCHEME_MD5_CRYPT, .valid = pop3ext_valid_crypt,
      .len = 22, .ids = { "$1$", NULL } },

    [P3X_SCHEME_CRYPT] = {
      .id = P3X_SCHEME_CRYPT, .valid = pop3ext_valid_crypt }
};


/* a scheme by name, canonical or (with aliases) Dovecot's other names */

const pop3ext_scheme_t *
pop3ext_scheme(const char *name, size_t len, int aliases)
{
    const p3x_scheme_t  *d;

    d = p3x_scheme_find(name, len, aliases);

    return (d != NULL) ? &pop3ext_schemes[d->id] : NULL;
}


/*
 * Prints the names of the schemes that make hashes (makes) or that are
 * imported only, comma-separated, wrapped at 76 columns with an indent of
 * 13; col is where the cursor starts.
 */

void
pop3ext_scheme_list(FILE *f, int makes, int col)
{
    int                      n, first;
    size_t                   i;
    const char              *name, *dflt;
    const pop3ext_scheme_t  *s;

    first = 1;

    for (i = 0; i < P3X_SCHEME_N; i++) {
        s = &pop3ext_schemes[i];

        if (((pop3ext_scheme_flags(s) & P3X_SCHEME_MAKE) != 0)
            != (makes != 0))
        {
            continue;
        }

        name = pop3ext_scheme_name(s);
        dflt = (s == pop3ext_schemes) ? " (default)" : "";

        n = (int) (strlen(name) + strlen(dflt)) + (first ? 0 : 2);

        if (!first) {
            fputc(',', f);

            if (col + n + 1 > 76) {
                fprintf(f, "\n%13s", "");
                col = 13;
                n--;

            } else {
                fputc(' ', f);
            }
        }

        fprintf(f, "%s%s", name, dflt);

        col += n;
        first = 0;
    }
}


/* "{NAME}value" */

static int
pop3ext_secret(const pop3ext_scheme_t *s, const char *value, char *secret,
    size_t size)
{
    int  n;

    n = snprintf(secret, size, "{%s}%s", pop3ext_scheme_name(s), value);

    if (n < 0 || (size_t) n >= size) {
        pop3ext_error("the %s secret is too long", pop3ext_scheme_name(s));
        return EX_DATAERR;
    }

    return EX_OK;
}


int
pop3ext_hash(const pop3ext_scheme_t *s, const char *pass, size_t len,
    char *secret, size_t size)
{
    if (s->max != 0 && len > s->max) {
        pop3ext_error("%s uses only the first %zu octets of a password, "
                      "this one has %zu", pop3ext_scheme_name(s), s->max, len);
        return EX_DATAERR;
    }

    return s->make(s, pass, len, secret, size);
}


static int
pop3ext_make_crypt(const pop3ext_scheme_t *s, const char *pass, size_t len,
    char *secret, size_t size)
{
    int                  rc, err;
    char                 salt[CRYPT_GENSALT_OUTPUT_SIZE];
    const char          *hash;
    struct crypt_data   *data;

    (void) len;

    if (crypt_gensalt_rn(s->setting, s->cost, NULL, 0, salt, sizeof(salt))
        == NULL)
    {
        err = errno;
        pop3ext_error("cannot make a %s salt: %s",
                      pop3ext_scheme_name(s), strerror(err));
        return (err == EINVAL || err == ENOSYS) ? EX_UNAVAILABLE
                                                : EX_SOFTWARE;
    }

    /* struct crypt_data is 32 KB: too much for a stack frame */

    data = calloc(1, sizeof(struct crypt_data));
    if (data == NULL) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    hash = crypt_r(pass, salt, data);

    if (hash == NULL || hash[0] == '*') {
        pop3ext_error("cannot hash the password with %s",
                      pop3ext_scheme_name(s));
        rc = EX_UNAVAILABLE;

    } else {
        rc = pop3ext_secret(s, hash, secret, size);
    }

    /* it holds the password and the state derived from it */
    explicit_bzero(data, sizeof(struct crypt_data));
    free(data);

    return rc;
}


/* "$argon2id$v=19$m=65536,t=3,p=1$SALT$HASH", as "doveadm pw" makes it */

static int
pop3ext_make_argon2id(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size)
{
    int      rc, err;
    u_char   salt[POP3EXT_ARGON2_SALT];
    char     encoded[256];

    if (argon2_encodedlen(POP3EXT_ARGON2_T, POP3EXT_ARGON2_M,
                          POP3EXT_ARGON2_P, POP3EXT_ARGON2_SALT,
                          POP3EXT_ARGON2_HASH, Argon2_id)
        > sizeof(encoded))
    {
        pop3ext_error("argon2 hash too long");
        return EX_SOFTWARE;
    }

    rc = pop3ext_random(salt, sizeof(salt));
    if (rc != EX_OK) {
        return rc;
    }

    err = argon2id_hash_encoded(POP3EXT_ARGON2_T, POP3EXT_ARGON2_M,
                                POP3EXT_ARGON2_P, pass, len, salt,
                                sizeof(salt), POP3EXT_ARGON2_HASH, encoded,
                                sizeof(encoded));

    if (err != ARGON2_OK) {
        pop3ext_error("cannot hash the password with %s: %s",
                      pop3ext_scheme_name(s),
                      argon2_error_message(err));
        return (err == ARGON2_MEMORY_ALLOCATION_ERROR) ? EX_TEMPFAIL
                                                       : EX_SOFTWARE;
    }

    rc = pop3ext_secret(s, encoded, secret, size);

    explicit_bzero(encoded, sizeof(encoded));

    return rc;
}


/* Dovecot's "$1$SALT$ROUNDS$HEX": PBKDF2-HMAC-SHA1 over the ASCII salt */

static int
pop3ext_make_pbkdf2(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size)
{
    int      rc, n;
    size_t   i;
    u_char   rnd[POP3EXT_PBKDF2_SALT], out[POP3EXT_PBKDF2_HASH];
    char     salt[POP3EXT_PBKDF2_SALT + 1];
    char     value[sizeof("$1$$$") + POP3EXT_PBKDF2_SALT + 10
                   + 2 * POP3EXT_PBKDF2_HASH];

    rc = pop3ext_random(rnd, sizeof(rnd));
    if (rc != EX_OK) {
        return rc;
    }

    /* 64 characters: six random bits each, no bias */

    for (i = 0; i < POP3EXT_PBKDF2_SALT; i++) {
        salt[i] = POP3EXT_B64_CRYPT[rnd[i] & 63];
    }

    salt[i] = '\0';

    if (PKCS5_PBKDF2_HMAC(pass, (int) len, (u_char *) salt,
                          POP3EXT_PBKDF2_SALT, POP3EXT_PBKDF2_ROUNDS,
                          EVP_sha1(), sizeof(out), out)
        != 1)
    {
        pop3ext_error("cannot hash the password with %s",
                      pop3ext_scheme_name(s));
        return EX_SOFTWARE;
    }

    n = snprintf(value, sizeof(value), "$1$%s$%d$", salt,
                 POP3EXT_PBKDF2_ROUNDS);

    for (i = 0; i < sizeof(out); i++) {
        n += snprintf(value + n, sizeof(value) - n, "%02x", out[i]);
    }

    rc = pop3ext_secret(s, value, secret, size);

    explicit_bzero(out, sizeof(out));

    return rc;
}


/* base64(HASH(password . salt) . salt) */

static int
pop3ext_make_ssha(const pop3ext_scheme_t *s, const char *pass, size_t len,
    char *secret, size_t size)
{
    int            rc;
    size_t         mdlen;
    u_char         raw[EVP_MAX_MD_SIZE + POP3EXT_SSHA_SALT];
    char           value[4 * ((EVP_MAX_MD_SIZE + POP3EXT_SSHA_SALT + 2) / 3)
                         + 1];
    unsigned int   dlen;
    const EVP_MD  *md;
    EVP_MD_CTX    *ctx;

    md = s->md();
    mdlen = (size_t) EVP_MD_size(md);

    rc = pop3ext_random(raw + mdlen, POP3EXT_SSHA_SALT);
    if (rc != EX_OK) {
        return rc;
    }

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    if (EVP_DigestInit_ex(ctx, md, NULL) != 1
        || EVP_DigestUpdate(ctx, pass, len) != 1
        || EVP_DigestUpdate(ctx, raw + mdlen, POP3EXT_SSHA_SALT) != 1
        || EVP_DigestFinal_ex(ctx, raw, &dlen) != 1
        || dlen != mdlen)
    {
        pop3ext_error("cannot hash the password with %s",
                      pop3ext_scheme_name(s));
        rc = EX_SOFTWARE;

    } else {
        (void) EVP_EncodeBlock((u_char *) value, raw,
                               (int) (mdlen + POP3EXT_SSHA_SALT));
        rc = pop3ext_secret(s, value, secret, size);
    }

    EVP_MD_CTX_free(ctx);

    return rc;
}


/*
 * Dovecot's {CRAM-MD5}: the HMAC-MD5 key in the form the HMAC resumes
 * from, the MD5 state after the opad block, then after the ipad block,
 * each as four little-endian words in hex; a key longer than a block is
 * its MD5.
 *
 * OpenSSL 3.0 has no supported way to read a digest's intermediate state:
 * EVP_MD_CTX is opaque, EVP_MD_CTX_get0_md_data() gives nothing under
 * providers, and a serialisation API comes only with OpenSSL 4.  The
 * least bad choice is the low-level MD5_CTX, deprecated in 3.0 but
 * present in every 3.x: its A..D words are the state after each whole
 * block.  Better than a compression function of our own; the warning is
 * silenced for these calls only.
 */

static int
pop3ext_make_cram_md5(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size)
{
    int        rc;
    size_t     i, k;
    u_char     key[64], pad[64], out[32];
    char       value[2 * sizeof(out) + 1];
    MD5_CTX    md5;
    MD5_LONG   st[4];

    memset(key, 0, sizeof(key));

    if (len > sizeof(key)) {
        if (EVP_Digest(pass, len, key, NULL, EVP_md5(), NULL) != 1) {
            pop3ext_error("cannot hash the password with %s",
                          pop3ext_scheme_name(s));
            return EX_SOFTWARE;
        }

    } else {
        memcpy(key, pass, len);
    }

    rc = EX_OK;

    for (k = 0; k < 2; k++) {
        for (i = 0; i < sizeof(pad); i++) {
            pad[i] = key[i] ^ (k == 0 ? 0x5c : 0x36);
        }

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

        if (MD5_Init(&md5) != 1 || MD5_Update(&md5, pad, sizeof(pad)) != 1) {
            rc = EX_SOFTWARE;
        }

#pragma GCC diagnostic pop

        st[0] = md5.A;
        st[1] = md5.B;
        st[2] = md5.C;
        st[3] = md5.D;

        for (i = 0; i < 16; i++) {
            out[16 * k + i] = (u_char) (st[i / 4] >> (8 * (i % 4)));
        }
    }

    if (rc != EX_OK) {
        pop3ext_error("cannot hash the password with %s",
                      pop3ext_scheme_name(s));
        goto done;
    }

    for (i = 0; i < sizeof(out); i++) {
        snprintf(value + 2 * i, 3, "%02x", out[i]);
    }

    rc = pop3ext_secret(s, value, secret, size);

done:

    explicit_bzero(key, sizeof(key));
    explicit_bzero(pad, sizeof(pad));
    explicit_bzero(out, sizeof(out));
    explicit_bzero(&md5, sizeof(md5));
    explicit_bzero(st, sizeof(st));
    explicit_bzero(value, sizeof(value));

    return rc;
}


int
pop3ext_make_plain(const pop3ext_scheme_t *s, const char *pass, size_t len,
    char *secret, size_t size)
{
    (void) len;

    return pop3ext_secret(s, pass, secret, size);
}


/*
 * The shapes of imported values, as the module reads them.  Crypt:
 * "$ID$[rounds=N$]SALT$HASH" (bcrypt "$2b$NN$" and 53 characters) with
 * a HASH of s->len characters, and a setting libxcrypt knows.
 */

static int
pop3ext_valid_crypt(const pop3ext_scheme_t *s, const char *v)
{
    int          n;
    size_t       i, id;
    const char  *p, *h;

    for (p = v; *p != '\0'; p++) {
        if ((u_char) *p < 0x21 || (u_char) *p > 0x7e) {
            return 0;
        }
    }

    if (s->ids[0] != NULL) {
        for (i = 0; s->ids[i] != NULL; i++) {
            if (strncmp(v, s->ids[i], strlen(s->ids[i])) == 0) {
                break;
            }
        }

        if (s->ids[i] == NULL) {
            return 0;
        }

        id = strlen(s->ids[i]);

        if (strncmp(v, "$2", 2) == 0) {
            if (pop3ext_digits(v + id, NULL) != 2 || v[id + 2] != '$') {
                return 0;
            }

            h = v + id + 3;

        } else {
            h = strrchr(v, '$') + 1;

            /* a salt of one character at least */

            if ((size_t) (h - v) < id + 2) {
                return 0;
            }
        }

        if (strlen(h) != s->len
            || strspn(h, POP3EXT_B64_CRYPT) != s->len)
        {
            return 0;
        }
    }

    n = crypt_checksalt(v);

    return n == CRYPT_SALT_OK || n == CRYPT_SALT_METHOD_LEGACY;
}


/* "$argon2id$[v=19$]m=M,t=T,p=P$SALT$HASH", SALT and HASH unpadded base64 */

static int
pop3ext_valid_argon2id(const pop3ext_scheme_t *s, const char *v)
{
    size_t  n;

    (void) s;

    if (strncmp(v, "$argon2id$", 10) != 0) {
        return 0;
    }

    v += 10;

    if (strncmp(v, "v=", 2) == 0) {
        n = pop3ext_digits(v + 2, NULL);

        if (n == 0 || v[2 + n] != '$') {
            return 0;
        }

        v += 2 + n + 1;
    }

    if (strncmp(v, "m=", 2) != 0 || (n = pop3ext_digits(v + 2, NULL)) == 0) {
        return 0;
    }

    v += 2 + n;

    if (strncmp(v, ",t=", 3) != 0 || (n = pop3ext_digits(v + 3, NULL)) == 0) {
        return 0;
    }

    v += 3 + n;

    if (strncmp(v, ",p=", 3) != 0 || (n = pop3ext_digits(v + 3, NULL)) == 0) {
        return 0;
    }

    v += 3 + n;

    if (*v++ != '$' || (n = strspn(v, POP3EXT_B64)) == 0) {
        return 0;
    }

    v += n;

    if (*v++ != '$' || (n = strspn(v, POP3EXT_B64)) == 0) {
        return 0;
    }

    return v[n] == '\0';
}


/* "$1$SALT$ROUNDS$HEX", HEX of 20 octets */

static int
pop3ext_valid_pbkdf2(const pop3ext_scheme_t *s, const char *v)
{
    size_t          n;
    const char     *p;
    unsigned long   rounds;

    (void) s;

    if (strncmp(v, "$1$", 3) != 0) {
        return 0;
    }

    for (p = v + 3; *p != '$'; p++) {
        if ((u_char) *p < 0x21 || (u_char) *p > 0x7e) {
            return 0;
        }
    }

    if (p == v + 3) {
        return 0;
    }

    p++;

    n = pop3ext_digits(p, &rounds);

    if (n == 0 || p[n] != '$' || rounds == 0
        || rounds > POP3EXT_PBKDF2_MAX_ROUNDS)
    {
        return 0;
    }

    p += n + 1;

    return strlen(p) == 2 * POP3EXT_PBKDF2_HASH
           && strspn(p, POP3EXT_HEX) == 2 * POP3EXT_PBKDF2_HASH;
}


/* padded base64 of the digest and a salt of at least one octet */

static int
pop3ext_valid_ssha(const pop3ext_scheme_t *s, const char *v)
{
    size_t  len, n, pad;

    len = strlen(v);
    n = strspn(v, POP3EXT_B64);

    pad = len - n;

    if (len % 4 != 0 || pad > 2 || strspn(v + n, "=") != pad) {
        return 0;
    }

    n = len / 4 * 3;

    return n <= POP3EXT_SSHA_MAX && n - pad > (size_t) EVP_MD_size(s->md());
}


static int
pop3ext_valid_cram_md5(const pop3ext_scheme_t *s, const char *v)
{
    (void) s;

    return strlen(v) == POP3EXT_CRAM_LEN
           && strspn(v, POP3EXT_HEX) == POP3EXT_CRAM_LEN;
}


static int
pop3ext_valid_plain(const pop3ext_scheme_t *s, const char *v)
{
    (void) s;
    (void) v;

    return 1;
}


/* the length of the initial run of 1 to 9 digits, and its value */

static size_t
pop3ext_digits(const char *p, unsigned long *value)
{
    size_t          n;
    unsigned long   v;

    v = 0;

    for (n = 0; p[n] >= '0' && p[n] <= '9'; n++) {
        if (n == 9) {
            return 0;
        }

        v = v * 10 + (p[n] - '0');
    }

    if (value != NULL) {
        *value = v;
    }

    return n;
}


/*
 * --hash: the line is "{SCHEME}HASH" or HASH, made elsewhere, and is
 * stored as it is.  A "{SCHEME}" prefix selects the scheme unless
 * --scheme was given; a bare HASH takes the scheme given, else the one
 * its shape names.  The value must have the shape the module verifies,
 * so that a password given by mistake is not stored as a hash nobody can
 * log in with.
 */

int
pop3ext_import(const pop3ext_scheme_t *s, int given, const char *line,
    char *secret, size_t size)
{
    size_t                   i;
    const char              *p, *hash;
    const pop3ext_scheme_t  *t;

    hash = line;

    if (line[0] == '{' && (p = strchr(line, '}')) != NULL) {
        t = pop3ext_scheme(line + 1, p - line - 1, 1);

        if (t == NULL) {
            pop3ext_error("the module does not verify the scheme %.*s",
                          (int) (p - line + 1), line);
            return EX_DATAERR;
        }

        if (given && t != s) {
            pop3ext_error("the hash is {%s}, not {%s}",
                          pop3ext_scheme_name(t), pop3ext_scheme_name(s));
            return EX_DATAERR;
        }

        s = t;
        hash = p + 1;

    } else if (!given) {
        for (i = 0; i < P3X_SCHEME_N; i++) {
            t = &pop3ext_schemes[i];

            if ((pop3ext_scheme_flags(t) & P3X_SCHEME_DETECT)
                && t->valid(t, hash))
            {
                break;
            }
        }

        if (i == P3X_SCHEME_N) {
            pop3ext_error("cannot tell the scheme of this hash: give it as "
                          "{SCHEME}HASH or with --scheme");
            return EX_DATAERR;
        }

        s = t;
    }

    if (hash[0] == '\0') {
        pop3ext_error("empty hash");
        return EX_DATAERR;
    }

    if (!s->valid(s, hash)) {
        pop3ext_error("this is not a valid %s hash", pop3ext_scheme_name(s));
        return EX_DATAERR;
    }

    return pop3ext_secret(s, hash, secret, size);
}

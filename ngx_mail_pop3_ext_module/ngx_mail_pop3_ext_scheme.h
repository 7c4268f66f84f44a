
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The password schemes of stored secrets, "{SCHEME}value" in Dovecot's
 * notation: their names, the prefix a value must start with, and what
 * each can do.  The single table shared by the module (which verifies
 * secrets, ngx_mail_pop3_ext_auth.c) and pop3ext (which makes and imports
 * them, cli/pop3ext_scheme.c); how a scheme is computed stays with each.
 * Pure C: no nginx types, no allocation.
 */


#ifndef _NGX_MAIL_POP3_EXT_SCHEME_H_INCLUDED_
#define _NGX_MAIL_POP3_EXT_SCHEME_H_INCLUDED_


#include <stddef.h>


/*
 * The order is pop3ext's: the first is its default, and --help lists
 * them in this order.  Add new schemes before P3X_SCHEME_N.
 */

typedef enum {
    P3X_SCHEME_SHA512_CRYPT = 0,
    P3X_SCHEME_SHA256_CRYPT,
    P3X_SCHEME_BLF_CRYPT,
    P3X_SCHEME_ARGON2ID,
    P3X_SCHEME_PBKDF2,
    P3X_SCHEME_SSHA512,
    P3X_SCHEME_SSHA256,
    P3X_SCHEME_CRAM_MD5,
    P3X_SCHEME_PLAIN,
    P3X_SCHEME_MD5_CRYPT,
    P3X_SCHEME_CRYPT,
    P3X_SCHEME_N
} p3x_scheme_id_e;


/* what a scheme can do */

/* verifies a password: USER/PASS, AUTH PLAIN, AUTH LOGIN */
#define P3X_METHOD_PASSWORD    0x01
/* serves APOP, which needs the password itself */
#define P3X_METHOD_APOP        0x02
/* serves AUTH CRAM-MD5, which needs the password or its HMAC contexts */
#define P3X_METHOD_CRAM_MD5    0x04
/* strong enough for pop3ext to make new hashes; else imported only */
#define P3X_SCHEME_MAKE        0x08
/* a bare value (no "{SCHEME}") of its shape names it (pop3ext --hash) */
#define P3X_SCHEME_DETECT      0x10
/* a crypt(3) string, verified by crypt_r() */
#define P3X_SCHEME_CRYPT_R     0x20


typedef struct {
    p3x_scheme_id_e     id;
    const char         *name;       /* canonical, stored as "{NAME}" */
    size_t              len;
    /*
     * What the value must start with: the label must say what the crypt(3)
     * string is, so that a weak hash cannot pass for a strong one.
     */
    const char         *prefix;
    size_t              prefix_len;
    unsigned            flags;
} p3x_scheme_t;


#define p3x_scheme_entry(id, name, prefix, flags)                             \
    { id, name, sizeof(name) - 1, prefix, sizeof(prefix) - 1, flags }


/*
 * The table, P3X_SCHEME_N entries indexed by id.  A function rather than
 * an array in the header, so that a file that includes the header without
 * using the table has no unused copy of it.
 */

static inline const p3x_scheme_t *
p3x_scheme_table(void)
{
    static const p3x_scheme_t  schemes[P3X_SCHEME_N] = {

        p3x_scheme_entry(P3X_SCHEME_SHA512_CRYPT, "SHA512-CRYPT", "$6$",
                         P3X_METHOD_PASSWORD|P3X_SCHEME_MAKE
                         |P3X_SCHEME_DETECT|P3X_SCHEME_CRYPT_R),

        p3x_scheme_entry(P3X_SCHEME_SHA256_CRYPT, "SHA256-CRYPT", "$5$",
                         P3X_METHOD_PASSWORD|P3X_SCHEME_MAKE
                         |P3X_SCHEME_DETECT|P3X_SCHEME_CRYPT_R),

        /* "$2b$", "$2y$" and "$2a$" */
        p3x_scheme_entry(P3X_SCHEME_BLF_CRYPT, "BLF-CRYPT", "$2",
                         P3X_METHOD_PASSWORD|P3X_SCHEME_MAKE
                         |P3X_SCHEME_DETECT|P3X_SCHEME_CRYPT_R),

        /* verified only by a module built with libargon2 */
        p3x_scheme_entry(P3X_SCHEME_ARGON2ID, "ARGON2ID", "$argon2id$",
                         P3X_METHOD_PASSWORD|P3X_SCHEME_MAKE
                         |P3X_SCHEME_DETECT),

        /* Dovecot's "$1$SALT$ROUNDS$HEX" */
        p3x_scheme_entry(P3X_SCHEME_PBKDF2, "PBKDF2", "",
                         P3X_METHOD_PASSWORD|P3X_SCHEME_MAKE
                         |P3X_SCHEME_DETECT),

        p3x_scheme_entry(P3X_SCHEME_SSHA512, "SSHA512", "",
                         P3X_METHOD_PASSWORD|P3X_SCHEME_MAKE),

        p3x_scheme_entry(P3X_SCHEME_SSHA256, "SSHA256", "",
                         P3X_METHOD_PASSWORD|P3X_SCHEME_MAKE),

        /* the HMAC-MD5 contexts: a password equivalent */
        p3x_scheme_entry(P3X_SCHEME_CRAM_MD5, "CRAM-MD5", "",
                         P3X_METHOD_PASSWORD|P3X_METHOD_CRAM_MD5
                         |P3X_SCHEME_MAKE),

        /* the password itself */
        p3x_scheme_entry(P3X_SCHEME_PLAIN, "PLAIN", "",
                         P3X_METHOD_PASSWORD|P3X_METHOD_APOP
                         |P3X_METHOD_CRAM_MD5|P3X_SCHEME_MAKE),

        /* weak: verified, so that they migrate, but never made */

        p3x_scheme_entry(P3X_SCHEME_MD5_CRYPT, "MD5-CRYPT", "$1$",
                         P3X_METHOD_PASSWORD|P3X_SCHEME_DETECT
                         |P3X_SCHEME_CRYPT_R),

        /* any hash the system's crypt(3) verifies; a bare value is one */
        p3x_scheme_entry(P3X_SCHEME_CRYPT, "CRYPT", "",
                         P3X_METHOD_PASSWORD|P3X_SCHEME_CRYPT_R)
    };

    return schemes;
}


/*
 * The scheme of a name, compared without regard to ASCII case, or NULL.
 * With aliases, also the other names Dovecot gives to some of them
 * (pop3ext --hash stores the canonical name; the module accepts only
 * canonical names).
 */

static inline const p3x_scheme_t *
p3x_scheme_find(const char *name, size_t len, int aliases)
{
    size_t                i, k;
    unsigned char         a, b;
    const char           *n;
    const p3x_scheme_t   *t;

    static const struct {
        const char       *name;
        p3x_scheme_id_e   id;
    } alias[] = {
        { "CLEAR", P3X_SCHEME_PLAIN },
        { "CLEARTEXT", P3X_SCHEME_PLAIN },
        { "DES-CRYPT", P3X_SCHEME_CRYPT }
    };

    t = p3x_scheme_table();

    for (i = 0; i < P3X_SCHEME_N + (aliases ? 3 : 0); i++) {
        n = (i < P3X_SCHEME_N) ? t[i].name : alias[i - P3X_SCHEME_N].name;

        for (k = 0; k < len && n[k] != '\0'; k++) {
            a = (unsigned char) name[k];
            b = (unsigned char) n[k];

            if (a >= 'a' && a <= 'z') {
                a -= 'a' - 'A';
            }

            if (a != b) {
                break;
            }
        }

        if (k == len && n[k] == '\0') {
            return (i < P3X_SCHEME_N) ? &t[i]
                                      : &t[alias[i - P3X_SCHEME_N].id];
        }
    }

    return NULL;
}


#endif /* _NGX_MAIL_POP3_EXT_SCHEME_H_INCLUDED_ */

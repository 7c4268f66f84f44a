
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext import: what the command (pop3ext_import.c), its Maildir source
 * (pop3ext_maildir.c) and its POP3 client (pop3ext_pop3.c) share.
 *
 * A source is read into a list of messages, each with the UIDL its POP3
 * clients know, in the order they know them; the command then fetches
 * each message and stores it under that UIDL.
 */


#ifndef _POP3EXT_IMPORT_H_INCLUDED_
#define _POP3EXT_IMPORT_H_INCLUDED_


#include "pop3ext.h"


/* a reply line of a POP3 server, a UIDL listing line (RFC 1939: 512) */
#define POP3EXT_POP3_LINE         1024
#define POP3EXT_POP3_BUF          65536
#define POP3EXT_POP3_TIMEOUT      60000       /* ms, for any one wait */
#define POP3EXT_POP3_PORT         110
#define POP3EXT_POP3S_PORT        995

/* the UIDL format Dovecot uses by default (pop3_uidl_format) */
#define POP3EXT_UIDL_FORMAT       "%08Xu%08Xv"

/* a header is searched for X-UIDL, Received and Date this far at most */
#define POP3EXT_HEADER_MAX        (256 * 1024)


/* one message of a source */

typedef struct pop3ext_import_msg_s  pop3ext_import_msg_t;

struct pop3ext_import_msg_s {
    char                *uidl;       /* malloc()ed, NUL-terminated */
    char                *file;       /* Maildir: "cur/NAME", malloc()ed */
    unsigned             num;        /* POP3: the message number */
    unsigned             uid;        /* Maildir: the IMAP UID */
    unsigned             order;      /* Maildir: POP3 order, "O" field */
    unsigned long long   size;       /* from LIST or stat(2), 0: unknown */
    unsigned long long   ms;         /* delivery time, 0: from the header */
    pop3ext_import_msg_t  *first;    /* an earlier one with this UIDL */
};


typedef struct {
    pop3ext_import_msg_t  *msgs;
    unsigned               nmsgs;
    unsigned               nalloc;
} pop3ext_import_list_t;


/* the variables of pop3_uidl_format, in the order "vumfg" */
#define POP3EXT_VAR_V             0x01
#define POP3EXT_VAR_U             0x02
#define POP3EXT_VAR_M             0x04
#define POP3EXT_VAR_F             0x08
#define POP3EXT_VAR_G             0x10


/* a Maildir and how its UIDLs are made */

typedef struct {
    const char          *dir;
    const char          *uidlist;    /* NULL: DIR/dovecot-uidlist */
    const char          *format;     /* pop3_uidl_format */
    unsigned             vars;       /* POP3EXT_VAR_*: what it uses */
    unsigned             reuse_xuidl:1;    /* pop3_reuse_xuidl */
    unsigned             rename_dups:1;    /* pop3_uidl_duplicates=rename */
} pop3ext_maildir_t;


/* a connection to a POP3 server */

typedef struct {
    char                 host[POP3EXT_HOST_MAX];
    unsigned             port;
    char                 login[POP3EXT_LINE_MAX + 1];
    char                 name[POP3EXT_HOST_MAX + 16];  /* for messages */
    const char          *tls_ca;
    unsigned             implicit_tls:1;   /* pop3s:// */
    unsigned             insecure:1;       /* no certificate check */
    unsigned             capa_stls:1;
    unsigned             capa_user:1;
    unsigned             capa_plain:1;     /* SASL PLAIN */
    unsigned             capa_known:1;     /* CAPA answered */
    unsigned             logged_in:1;
    unsigned             broken:1;         /* out of step: no QUIT */

    int                  fd;
    SSL_CTX             *ssl_ctx;
    SSL                 *ssl;

    u_char              *buf;        /* POP3EXT_POP3_BUF octets */
    size_t               pos;        /* the first unread octet */
    size_t               end;        /* past the last octet read */
} pop3ext_pop3_t;


/* pop3ext_maildir.c */
int pop3ext_maildir_read(pop3ext_maildir_t *md, pop3ext_import_list_t *list);
int pop3ext_maildir_fetch(pop3ext_maildir_t *md, pop3ext_import_msg_t *m,
    size_t max, u_char **msg, size_t *len);
int pop3ext_uidl_format_check(const char *format, unsigned *vars);
const u_char *pop3ext_header_next(const u_char *p, const u_char *end,
    const u_char **name, size_t *name_len, const u_char **value,
    size_t *value_len);

/* pop3ext_pop3.c */
int pop3ext_pop3_url(pop3ext_pop3_t *p, const char *url);
int pop3ext_pop3_open(pop3ext_pop3_t *p, const char *password, size_t len);
int pop3ext_pop3_uidl(pop3ext_pop3_t *p, pop3ext_import_list_t *list);
int pop3ext_pop3_retr(pop3ext_pop3_t *p, pop3ext_import_msg_t *m,
    size_t max, u_char **msg, size_t *len);
void pop3ext_pop3_close(pop3ext_pop3_t *p);

/* pop3ext_import.c */
pop3ext_import_msg_t *pop3ext_import_add(pop3ext_import_list_t *list);


#endif /* _POP3EXT_IMPORT_H_INCLUDED_ */

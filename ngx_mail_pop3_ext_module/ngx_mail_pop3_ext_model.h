
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The mailbox data model in Redis: key names, the server-side scripts and
 * the name rules.  This header is the single definition shared by the nginx
 * module and the pop3ext command-line tool; it depends on nothing but C, so
 * that any tool can include it.  docs/data-model.md explains it in prose.
 */


#ifndef _NGX_MAIL_POP3_EXT_MODEL_H_INCLUDED_
#define _NGX_MAIL_POP3_EXT_MODEL_H_INCLUDED_


#include <stddef.h>


/*
 * Keys.  Every key of one mailbox carries the mailbox name as its Redis
 * Cluster hash tag, so that the scripts below, which touch several keys of
 * one mailbox, run on one node.  Every key a script touches is one of its
 * KEYS, message bodies included, so that a script is routed right and
 * stays correct while its slot migrates.
 *
 *   pop3:user:{NAME}           hash    secret, mailbox, disabled, expire
 *   pop3:mbox:{MBOX}:index     list    "UID SIZE", oldest first
 *   pop3:mbox:{MBOX}:msg:UID   string  the message, CRLF lines, unstuffed
 *   pop3:mbox:{MBOX}:dlv:ID    string  the UID a delivery id was stored
 *                                      as, for P3X_DELIVERY_TTL ms
 *   pop3:mbox:{MBOX}:meta      hash    messages, octets (usage, kept by
 *                                      DELIVER, COMMIT and EXPUNGE),
 *                                      quota_messages, quota_octets
 *                                      (limits; absent: the server's
 *                                      default; 0: none)
 *   pop3:mbox:{MBOX}:time      hash    UID -> delivery time, ms since the
 *                                      epoch (the writer's clock, or the
 *                                      original one for imported mail)
 *   pop3:mbox:{MBOX}:lock      string  session token, with a TTL
 *   pop3:mbox:{MBOX}:owner     string  who holds the lock (P3X_OWNER_*
 *                                      fields), with the lock's TTL
 *   pop3:mbox:{MBOX}:last      string  a login within LOGIN-DELAY, TTL
 *   pop3:mbox:{MBOX}:dele      set     "UID SIZE" entries marked by DELE
 *   pop3:mbox:{MBOX}:gone:TOKEN string  a lock request given up, with a TTL
 *   pop3:mbox:{MBOX}:stage:TOKEN string a body being received over LMTP,
 *                                      with a TTL; STORE renames it to
 *                                      msg:UID
 *
 * Abuse resistance, shared by every host (see docs/security.md):
 *
 *   pop3:fail:user:{NAME}      string  login attempts of a user not yet
 *                                      known to have succeeded, TTL
 *   pop3:fail:addr:{ADDR}      string  the same per client address, TTL
 *   pop3:conn:user:{NAME}      zset    live sessions of a user: member a
 *                                      session id, score its expiry (ms)
 *   pop3:conn:addr:{ADDR}      zset    live connections from an address
 *
 * A user's failure counter shares the user record's hash tag, so that one
 * script reads both.
 */

#define P3X_USER_PREFIX        "pop3:user:{"
#define P3X_USER_SUFFIX        "}"
#define P3X_MBOX_PREFIX        "pop3:mbox:{"
#define P3X_INDEX_SUFFIX       "}:index"
#define P3X_MSG_SUFFIX         "}:msg:"
#define P3X_DLV_SUFFIX         "}:dlv:"
#define P3X_META_SUFFIX        "}:meta"
#define P3X_TIME_SUFFIX        "}:time"
#define P3X_LOCK_SUFFIX        "}:lock"
#define P3X_OWNER_SUFFIX       "}:owner"
#define P3X_LAST_SUFFIX        "}:last"
#define P3X_DELE_SUFFIX        "}:dele"
#define P3X_GONE_SUFFIX        "}:gone:"
#define P3X_STAGE_SUFFIX       "}:stage:"

#define P3X_FAIL_USER_PREFIX   "pop3:fail:user:{"
#define P3X_FAIL_ADDR_PREFIX   "pop3:fail:addr:{"
#define P3X_CONN_USER_PREFIX   "pop3:conn:user:{"
#define P3X_CONN_ADDR_PREFIX   "pop3:conn:addr:{"
#define P3X_TAG_CLOSE          "}"

#define P3X_FIELD_SECRET       "secret"
#define P3X_FIELD_MAILBOX      "mailbox"
#define P3X_FIELD_DISABLED     "disabled"
#define P3X_FIELD_EXPIRE       "expire"

/*
 * A user's retention (RFC 2449, 6.7 EXPIRE), in the user record: the
 * days a message is kept at least after its delivery, 0 to
 * P3X_EXPIRE_DAYS_MAX in decimal, or "never"; absent: the server's
 * (pop3_ext_expire).  It lives with the user, not the mailbox, because
 * it is what the user is promised: AUTHINFO returns it with the login's
 * other fields, so announcing and enforcing it costs a login nothing.
 * Users that share a mailbox keep its messages for the longest of their
 * retentions (pop3ext expunge); EXPIRE 0 removes at QUIT what the session
 * retrieved.
 */
#define P3X_EXPIRE_NEVER       "never"
#define P3X_EXPIRE_DAYS_MAX    36500
#define P3X_DAY_MS             86400000ULL

/* meta fields */
#define P3X_META_MESSAGES      "messages"
#define P3X_META_OCTETS        "octets"
#define P3X_META_QUOTA_MESSAGES "quota_messages"
#define P3X_META_QUOTA_OCTETS  "quota_octets"

/*
 * The owner of a lock, for "pop3ext who": space-separated fields
 * "host=H pid=P client=ADDR since=MS user=NAME", in this order; a value
 * has no space.
 */

/* the audit trail of changes made with pop3ext: a stream */
#define P3X_AUDIT_KEY          "pop3:audit"
#define P3X_AUDIT_MAXLEN       100000

#define P3X_NAME_MAX           255
#define P3X_UID_MAX            70
#define P3X_TOKEN_LEN          32

/* a delivery id is remembered a week: longer than MTAs retry (Postfix 5d) */
#define P3X_DELIVERY_TTL       604800000

/* the hex digits of the delivery id's SHA-256 in a dlv key */
#define P3X_DLV_ID_LEN         64

/*
 * A body staged over LMTP lives an hour after its last chunk: a session
 * that ends without STORE deletes it at once; the TTL is for a writer
 * that died.  A staged body that expired under a (very) slow transfer is
 * caught by STORE's length check: a temporary failure, never a short
 * message.
 */
#define P3X_STAGE_TTL          3600000

/* the delivery id of an LMTP delivery: this prefix and the hex SHA-256
   of the body as stored (Return-Path line included) */
#define P3X_LMTP_ID_PREFIX     "lmtp-sha256:"


/*
 * A user or mailbox name: 1..255 octets, no control characters, no space,
 * no DEL and no braces (a brace would change the hash tag).  Octets above
 * 0x7f are allowed for UTF-8 names.
 */

static inline int
p3x_valid_name(const unsigned char *p, size_t len)
{
    size_t  i;

    if (len == 0 || len > P3X_NAME_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (p[i] <= 0x20 || p[i] == 0x7f || p[i] == '{' || p[i] == '}') {
            return 0;
        }
    }

    return 1;
}


/* RFC 1939, 7: a UID is 1 to 70 octets of 0x21..0x7e */

static inline int
p3x_valid_uid(const unsigned char *p, size_t len)
{
    size_t  i;

    if (len == 0 || len > P3X_UID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (p[i] < 0x21 || p[i] > 0x7e) {
            return 0;
        }
    }

    return 1;
}


/*
 * The UID of a new message: 24 lowercase hex digits, the writer's clock
 * in milliseconds (48 bits) and 48 random bits from the writer.  Nothing
 * in it comes from a Redis counter, so a Redis that loses its last writes
 * (a snapshot restored, an AOF "everysec" crash, a failover) cannot hand
 * out again a UID that a client has already seen: a "leave mail on
 * server" client would skip the new message for good.  UIDs written by
 * 0.1 ("UIDVALIDITY.SEQ") stay valid; imported UIDs keep their own form.
 * buf needs P3X_UID_NEW_LEN octets; no NUL is written.
 */

#define P3X_UID_NEW_LEN        24

static inline void
p3x_uid_make(unsigned char *buf, unsigned long long ms,
    const unsigned char rnd[6])
{
    static const char  hex[] = "0123456789abcdef";

    int                 i;
    unsigned long long  r;

    r = 0;

    for (i = 0; i < 6; i++) {
        r = (r << 8) | rnd[i];
    }

    for (i = 11; i >= 0; i--) {
        buf[i] = hex[ms & 0xf];
        ms >>= 4;
        buf[12 + i] = hex[r & 0xf];
        r >>= 4;
    }
}


/*
 * Redis Cluster's slot of a key: CRC16 (XMODEM: polynomial 0x1021, no
 * reflection, initial value 0) of the hash tag, the text between the
 * first "{" and the next "}" if that text is not empty, else of the whole
 * key; modulo 16384.  Every key of a mailbox has the mailbox's tag, so a
 * mailbox is one slot.
 */

#define P3X_SLOTS              16384

static inline unsigned
p3x_key_slot(const unsigned char *key, size_t len)
{
    size_t    i, s, e;
    unsigned  crc, k;

    for (s = 0; s < len && key[s] != '{'; s++) {
        /* void */
    }

    if (s < len) {
        for (e = s + 1; e < len && key[e] != '}'; e++) {
            /* void */
        }

        if (e < len && e > s + 1) {
            key += s + 1;
            len = e - s - 1;
        }
    }

    crc = 0;

    for (i = 0; i < len; i++) {
        crc ^= (unsigned) key[i] << 8;

        for (k = 0; k < 8; k++) {
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) : (crc << 1);
            crc &= 0xffff;
        }
    }

    return crc & (P3X_SLOTS - 1);
}


/*
 * DELIVER: store one message and append it to the index, at most once,
 * within the mailbox's quota.
 *   KEYS[1] index, KEYS[2] the body "pop3:mbox:{MBOX}:msg:UID",
 *   KEYS[3] meta, KEYS[4] time,
 *   KEYS[5] (optional) "pop3:mbox:{MBOX}:dlv:ID", the delivery id
 *   ARGV[1] the message, ARGV[2] UID, ARGV[3] the id's lifetime in ms,
 *   ARGV[4] the delivery time in ms since the epoch, ARGV[5] and ARGV[6]
 *   the server's default quota in octets and in messages (0: none)
 *   returns { UID, 1 } when stored, { the earlier UID, 0 } when this
 *   delivery id was stored before (its lifetime renewed, so that a WAIT
 *   after a retry covers the first write too); the errors "WRONGTYPE",
 *   "BADUID", "BADBODY", "OVERQUOTA messages", "OVERQUOTA octets" and
 *   "EXISTS" (the UID is taken: make another, try again)
 *
 * The writer chooses the UID (p3x_uid_make()), so the body's key is known
 * before the script runs and can be one of its KEYS.  The body is written
 * with NX: a message is never overwritten.  Retrying a delivery whose
 * reply was lost, with the same id, stores nothing twice.  The body must
 * already obey the invariants (CRLF line ends, ending in CRLF, or empty):
 * one that does not is refused, not repaired.  The usage in meta is kept
 * here, atomically, so parallel deliveries never overshoot a quota; a
 * mailbox of 0.2 has its usage counted from its index once.  The checks
 * come first because a script is not rolled back.
 */

#define P3X_SCRIPT_DELIVER                                                    \
    "if KEYS[5] then\n"                                                       \
    "  local u = redis.call('GET', KEYS[5])\n"                                \
    "  if u then\n"                                                           \
    "    redis.call('PEXPIRE', KEYS[5], ARGV[3])\n"                           \
    "    return { u, 0 }\n"                                                   \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "local t = redis.call('TYPE', KEYS[1])['ok']\n"                           \
    "if t ~= 'none' and t ~= 'list' then\n"                                   \
    "  return redis.error_reply('WRONGTYPE index is not a list')\n"           \
    "end\n"                                                                   \
    "local uid = ARGV[2]\n"                                                   \
    "if #uid > 70 or not string.find(uid, '^[\\33-\\126]+$')\n"               \
    "   or KEYS[2] ~= string.sub(KEYS[1], 1, -6) .. 'msg:' .. uid then\n"     \
    "  return redis.error_reply('BADUID invalid UID or body key')\n"          \
    "end\n"                                                                   \
    "local m = ARGV[1]\n"                                                     \
    "if #m > 0 and (string.sub(m, -2) ~= '\\r\\n'\n"                          \
    "   or string.byte(m, 1) == 10 or string.find(m, '[^\\r]\\n')\n"          \
    "   or string.find(m, '\\r[^\\n]')) then\n"                               \
    "  return redis.error_reply('BADBODY line ends must be CRLF')\n"          \
    "end\n"                                                                   \
    "local u = redis.call('HMGET', KEYS[3], 'messages', 'octets',\n"          \
    "                     'quota_messages', 'quota_octets')\n"                \
    "local nm, no = tonumber(u[1]), tonumber(u[2])\n"                         \
    "if not nm or not no then\n"                                              \
    "  nm, no = 0, 0\n"                                                       \
    "  for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do\n"         \
    "    nm = nm + 1\n"                                                       \
    "    no = no + (tonumber(string.match(e, ' (%d+)$')) or 0)\n"             \
    "  end\n"                                                                 \
    "  redis.call('HSET', KEYS[3], 'messages', nm, 'octets', no)\n"           \
    "end\n"                                                                   \
    "local qm = tonumber(u[3] or ARGV[6] or '0') or 0\n"                      \
    "local qo = tonumber(u[4] or ARGV[5] or '0') or 0\n"                      \
    "if qm > 0 and nm + 1 > qm then\n"                                        \
    "  return redis.error_reply('OVERQUOTA messages')\n"                      \
    "end\n"                                                                   \
    "if qo > 0 and no + #m > qo then\n"                                       \
    "  return redis.error_reply('OVERQUOTA octets')\n"                        \
    "end\n"                                                                   \
    "if not redis.call('SET', KEYS[2], m, 'NX') then\n"                       \
    "  return redis.error_reply('EXISTS UID in use')\n"                       \
    "end\n"                                                                   \
    "redis.call('RPUSH', KEYS[1], uid .. ' ' .. #m)\n"                        \
    "redis.call('HINCRBY', KEYS[3], 'messages', 1)\n"                         \
    "redis.call('HINCRBY', KEYS[3], 'octets', #m)\n"                          \
    "redis.call('HSET', KEYS[4], uid, ARGV[4])\n"                             \
    "if KEYS[5] then\n"                                                       \
    "  redis.call('SET', KEYS[5], uid, 'PX', ARGV[3])\n"                      \
    "end\n"                                                                   \
    "return { uid, 1 }\n"


/*
 * STAGE: one chunk of a body that arrives over LMTP, written at its
 * offset into the staging key of one mailbox.
 *   KEYS[1] "pop3:mbox:{MBOX}:stage:TOKEN"
 *   ARGV[1] the offset, ARGV[2] the octets, ARGV[3] the key's TTL in ms
 *   returns the length written so far; the error "STAGED" when the key
 *   is shorter than the offset (it expired, or the session deleted it)
 *
 * SETRANGE at an offset, not APPEND, so that sending a chunk twice (a
 * connection lost before the reply) writes the same octets again: the
 * Redis client may then send it again.  A key shorter than the offset
 * is never padded with zeros: the body would be wrong.
 */

#define P3X_SCRIPT_STAGE                                                      \
    "local off = tonumber(ARGV[1])\n"                                         \
    "if redis.call('STRLEN', KEYS[1]) < off then\n"                           \
    "  return redis.error_reply('STAGED staged body lost')\n"                 \
    "end\n"                                                                   \
    "redis.call('SETRANGE', KEYS[1], off, ARGV[2])\n"                         \
    "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"                               \
    "return off + #ARGV[2]\n"


/*
 * STORE: DELIVER for a body staged with STAGE: the staged body becomes
 * the message, with the checks, errors and results of DELIVER.
 *   KEYS[1] index, KEYS[2] the body "pop3:mbox:{MBOX}:msg:UID",
 *   KEYS[3] meta, KEYS[4] time, KEYS[5] the staging key
 *   "pop3:mbox:{MBOX}:stage:TOKEN", KEYS[6] the delivery id's key
 *   "pop3:mbox:{MBOX}:dlv:ID"
 *   ARGV[1] the body's length, ARGV[2] UID, ARGV[3] the id's lifetime in
 *   ms, ARGV[4] the delivery time in ms since the epoch, ARGV[5] and
 *   ARGV[6] the server's default quota in octets and in messages
 *   returns { UID, 1 } when stored, { the earlier UID, 0 } when the
 *   delivery id was stored before; the errors of DELIVER, and "STAGED"
 *   when the staged body is missing or not ARGV[1] octets long
 *
 * All checks come before the first write, so a recipient gets all or
 * nothing.  The body is renamed (both keys are in one slot), so a big
 * message costs no copy, and made persistent (RENAME keeps the staging
 * TTL).  The line ends were normalised by the writer, which is the only
 * one that stages: scanning a big body here would stall Redis, so only
 * its ends are checked.  On EXISTS the staged body stays, for the retry
 * with another UID; on a stored id or a quota refusal it goes.
 */

#define P3X_SCRIPT_STORE                                                      \
    "local u = redis.call('GET', KEYS[6])\n"                                  \
    "if u then\n"                                                             \
    "  redis.call('PEXPIRE', KEYS[6], ARGV[3])\n"                             \
    "  redis.call('DEL', KEYS[5])\n"                                          \
    "  return { u, 0 }\n"                                                     \
    "end\n"                                                                   \
    "local t = redis.call('TYPE', KEYS[1])['ok']\n"                           \
    "if t ~= 'none' and t ~= 'list' then\n"                                   \
    "  return redis.error_reply('WRONGTYPE index is not a list')\n"           \
    "end\n"                                                                   \
    "local uid = ARGV[2]\n"                                                   \
    "local pre = string.sub(KEYS[1], 1, -6)\n"                                \
    "if #uid > 70 or not string.find(uid, '^[\\33-\\126]+$')\n"               \
    "   or KEYS[2] ~= pre .. 'msg:' .. uid\n"                                 \
    "   or string.sub(KEYS[5], 1, #pre + 6) ~= pre .. 'stage:' then\n"        \
    "  return redis.error_reply('BADUID invalid UID or body key')\n"          \
    "end\n"                                                                   \
    "local len = tonumber(ARGV[1])\n"                                         \
    "if redis.call('STRLEN', KEYS[5]) ~= len then\n"                          \
    "  return redis.error_reply('STAGED staged body incomplete')\n"           \
    "end\n"                                                                   \
    "if len > 0 and (redis.call('GETRANGE', KEYS[5], -2, -1) ~= '\\r\\n'\n"   \
    "   or redis.call('GETRANGE', KEYS[5], 0, 0) == '\\n') then\n"            \
    "  return redis.error_reply('BADBODY line ends must be CRLF')\n"          \
    "end\n"                                                                   \
    "local q = redis.call('HMGET', KEYS[3], 'messages', 'octets',\n"          \
    "                     'quota_messages', 'quota_octets')\n"                \
    "local nm, no = tonumber(q[1]), tonumber(q[2])\n"                         \
    "if not nm or not no then\n"                                              \
    "  nm, no = 0, 0\n"                                                       \
    "  for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do\n"         \
    "    nm = nm + 1\n"                                                       \
    "    no = no + (tonumber(string.match(e, ' (%d+)$')) or 0)\n"             \
    "  end\n"                                                                 \
    "  redis.call('HSET', KEYS[3], 'messages', nm, 'octets', no)\n"           \
    "end\n"                                                                   \
    "local qm = tonumber(q[3] or ARGV[6] or '0') or 0\n"                      \
    "local qo = tonumber(q[4] or ARGV[5] or '0') or 0\n"                      \
    "if qm > 0 and nm + 1 > qm then\n"                                        \
    "  redis.call('DEL', KEYS[5])\n"                                          \
    "  return redis.error_reply('OVERQUOTA messages')\n"                      \
    "end\n"                                                                   \
    "if qo > 0 and no + len > qo then\n"                                      \
    "  redis.call('DEL', KEYS[5])\n"                                          \
    "  return redis.error_reply('OVERQUOTA octets')\n"                        \
    "end\n"                                                                   \
    "if redis.call('EXISTS', KEYS[2]) == 1 then\n"                            \
    "  return redis.error_reply('EXISTS UID in use')\n"                       \
    "end\n"                                                                   \
    "if len > 0 then\n"                                                       \
    "  redis.call('RENAME', KEYS[5], KEYS[2])\n"                              \
    "  redis.call('PERSIST', KEYS[2])\n"                                      \
    "else\n"                                                                  \
    "  redis.call('SET', KEYS[2], '')\n"                                      \
    "end\n"                                                                   \
    "redis.call('RPUSH', KEYS[1], uid .. ' ' .. len)\n"                       \
    "redis.call('HINCRBY', KEYS[3], 'messages', 1)\n"                         \
    "redis.call('HINCRBY', KEYS[3], 'octets', len)\n"                         \
    "redis.call('HSET', KEYS[4], uid, ARGV[4])\n"                             \
    "redis.call('SET', KEYS[6], uid, 'PX', ARGV[3])\n"                        \
    "return { uid, 1 }\n"



/*
 * LOCK: take the maildrop at login and read the start of its index in one
 * round trip.
 *   KEYS[1] lock, KEYS[2] dele, KEYS[3] index, KEYS[4] gone:TOKEN,
 *   KEYS[5] owner, KEYS[6] last
 *   ARGV[1] token, ARGV[2] TTL in milliseconds, ARGV[3] how many entries,
 *   ARGV[4] the owner's fields, ARGV[5] LOGIN-DELAY in ms (0: none)
 *   returns { the number of messages N, the first ARGV[3] entries }, or
 *   the error "IN-USE", "GONE" or "LOGIN-DELAY <ms left>"
 *
 * The session reads entries past ARGV[3] with LRANGE: while it holds the
 * lock the first N entries cannot change (deliveries only append), and a
 * big maildrop does not stall Redis in one long script.
 *
 * Markers left by a session that died are dropped: only a committed
 * UPDATE deletes.  A session that gave up waiting for this script (Redis
 * stalled) has run RELEASE first, which left gone:TOKEN: the late script
 * then takes nothing, so no lock outlives its session.  With LOGIN-DELAY
 * (RFC 2449, 6.5), a login less than ARGV[5] ms after the last one of
 * this maildrop, on any host, is refused.
 */

#define P3X_SCRIPT_LOCK                                                       \
    "if redis.call('DEL', KEYS[4]) == 1 then\n"                               \
    "  return redis.error_reply('GONE session gave up')\n"                    \
    "end\n"                                                                   \
    "if tonumber(ARGV[5]) > 0 then\n"                                         \
    "  local left = redis.call('PTTL', KEYS[6])\n"                            \
    "  if left > 0 then\n"                                                    \
    "    return redis.error_reply('LOGIN-DELAY ' .. left)\n"                  \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"  \
    "  return redis.error_reply('IN-USE maildrop is locked')\n"               \
    "end\n"                                                                   \
    "redis.call('DEL', KEYS[2])\n"                                            \
    "redis.call('SET', KEYS[5], ARGV[4], 'PX', ARGV[2])\n"                    \
    "if tonumber(ARGV[5]) > 0 then\n"                                         \
    "  redis.call('SET', KEYS[6], '1', 'PX', ARGV[5])\n"                      \
    "end\n"                                                                   \
    "return { redis.call('LLEN', KEYS[3]),\n"                                 \
    "         redis.call('LRANGE', KEYS[3], 0, tonumber(ARGV[3]) - 1) }\n"



/*
 * REFRESH: extend the lock of a live session, and its owner record.
 *   KEYS[1] lock, KEYS[2] owner; ARGV[1] token, ARGV[2] TTL in ms
 *   returns 1, or the error "LOCKLOST" (the lock expired, or pop3ext
 *   kick took it)
 */

#define P3X_SCRIPT_REFRESH                                                    \
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"                         \
    "  return redis.error_reply('LOCKLOST maildrop lock lost')\n"             \
    "end\n"                                                                   \
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"                               \
    "redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"                               \
    "return 1\n"



/*
 * MARK: DELE (ARGV[2] is the "UID SIZE" entry) or, with no ARGV[2], RSET.
 *   KEYS[1] lock, KEYS[2] dele; ARGV[1] token
 *   returns 1, or the error "LOCKLOST"
 */

#define P3X_SCRIPT_MARK                                                       \
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"                         \
    "  return redis.error_reply('LOCKLOST maildrop lock lost')\n"             \
    "end\n"                                                                   \
    "if ARGV[2] then\n"                                                       \
    "  redis.call('SADD', KEYS[2], ARGV[2])\n"                                \
    "else\n"                                                                  \
    "  redis.call('DEL', KEYS[2])\n"                                          \
    "end\n"                                                                   \
    "return 1\n"


/*
 * MARKS: the entries marked now, for a session that no longer knows
 * (a DELE or RSET whose reply did not come in time).
 *   KEYS[1] lock, KEYS[2] dele; ARGV[1] token
 *   returns the "UID SIZE" entries, or the error "LOCKLOST"
 */

#define P3X_SCRIPT_MARKS                                                      \
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"                         \
    "  return redis.error_reply('LOCKLOST maildrop lock lost')\n"             \
    "end\n"                                                                   \
    "return redis.call('SMEMBERS', KEYS[2])\n"


/*
 * COMMIT: the UPDATE state, atomically.  The token is checked inside the
 * script (fencing), so a session whose lock expired cannot delete.
 *   KEYS[1] lock, KEYS[2] dele, KEYS[3] index, KEYS[4] meta, KEYS[5]
 *   time, KEYS[6] owner, KEYS[6 + i] the body of the entry ARGV[1 + i]
 *   ARGV[1] token, ARGV[2..] the "UID SIZE" entries the session deleted;
 *   an entry written "!UID SIZE" goes whether marked or not (EXPIRE 0:
 *   a message retrieved in this session)
 *   returns { messages removed, their octets }, or the error "LOCKLOST"
 *
 * Only entries both marked in dele and named by the session go: a DELE
 * whose reply was lost (the client saw -ERR) is not applied.  A few are
 * removed with LREM; many by one pass that rebuilds the index, which
 * keeps a large commit O(N).  The usage in meta follows, if it is kept.
 */

#define P3X_SCRIPT_COMMIT                                                     \
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"                         \
    "  return redis.error_reply('LOCKLOST maildrop lock lost')\n"             \
    "end\n"                                                                   \
    "local d, b, u, o = {}, {}, {}, 0\n"                                      \
    "for i = 2, #ARGV do\n"                                                   \
    "  local e = ARGV[i]\n"                                                   \
    "  local force = string.sub(e, 1, 1) == '!'\n"                            \
    "  if force then e = string.sub(e, 2) end\n"                              \
    "  if force or redis.call('SISMEMBER', KEYS[2], e) == 1 then\n"           \
    "    d[#d + 1] = e\n"                                                     \
    "    b[#b + 1] = KEYS[i + 5]\n"                                           \
    "    u[#u + 1] = string.match(e, '^(%S+)')\n"                             \
    "    o = o + tonumber(string.match(e, ' (%d+)$'))\n"                      \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "if #d > 0 and #d <= 16 then\n"                                           \
    "  for _, e in ipairs(d) do\n"                                            \
    "    redis.call('LREM', KEYS[3], 1, e)\n"                                 \
    "  end\n"                                                                 \
    "elseif #d > 16 then\n"                                                   \
    "  local gone = {}\n"                                                     \
    "  for _, e in ipairs(d) do gone[e] = true end\n"                         \
    "  local all = redis.call('LRANGE', KEYS[3], 0, -1)\n"                    \
    "  local keep = {}\n"                                                     \
    "  for _, e in ipairs(all) do\n"                                          \
    "    if not gone[e] then keep[#keep + 1] = e end\n"                       \
    "  end\n"                                                                 \
    "  redis.call('DEL', KEYS[3])\n"                                          \
    "  for i = 1, #keep, 1000 do\n"                                           \
    "    redis.call('RPUSH', KEYS[3],\n"                                       \
    "               unpack(keep, i, math.min(i + 999, #keep)))\n"              \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "for i = 1, #b, 1000 do\n"                                                \
    "  redis.call('UNLINK', unpack(b, i, math.min(i + 999, #b)))\n"           \
    "  redis.call('HDEL', KEYS[5], unpack(u, i, math.min(i + 999, #u)))\n"    \
    "end\n"                                                                   \
    "if #d > 0 and redis.call('HEXISTS', KEYS[4], 'messages') == 1 then\n"    \
    "  redis.call('HINCRBY', KEYS[4], 'messages', -#d)\n"                     \
    "  redis.call('HINCRBY', KEYS[4], 'octets', -o)\n"                        \
    "end\n"                                                                   \
    "redis.call('DEL', KEYS[2], KEYS[1], KEYS[6])\n"                          \
    "return { #d, o }\n"



/*
 * RELEASE: give the maildrop up without UPDATE (RFC 1939: a session that
 * ends otherwise than by QUIT deletes nothing).
 *   KEYS[1] lock, KEYS[2] dele, KEYS[3] gone:TOKEN, KEYS[4] owner
 *   ARGV[1] token, ARGV[2] TTL in milliseconds
 *   returns 1 if the lock was ours, else 0
 *
 * When the lock is not ours, our LOCK may still be on its way (it timed
 * out, or the client left during login): gone:TOKEN makes it void.
 */

#define P3X_SCRIPT_RELEASE                                                    \
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"                         \
    "  redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])\n"                        \
    "  return 1\n"                                                            \
    "end\n"                                                                   \
    "redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])\n"                        \
    "return 0\n"



/*
 * AUTHINFO: what a login needs to know about a user, in one round trip.
 *   KEYS[1] user record, KEYS[2] the user's failure counter
 *   ARGV[1] (a login only) the counter's lifetime in milliseconds
 *   returns { secret, mailbox, disabled, failures, expire } (nil for
 *   absent)
 *
 * A login counts its attempt against an existing, enabled user before
 * the check (see FAIL), and gets the count with this attempt in it: a
 * disabled user is counted as little as an unknown name, so that the
 * counts tell neither apart.  pop3ext user show passes no ARGV: it only
 * reads.
 */

#define P3X_SCRIPT_AUTHINFO                                                   \
    "local r = redis.call('HMGET', KEYS[1], 'secret', 'mailbox',\n"           \
    "                     'disabled',\n"                                       \
    "                     'expire')\n"                                        \
    "local expire = r[4]\n"                                                   \
    "if ARGV[1] and r[1] and (not r[3] or r[3] == '' or r[3] == '0') then\n"  \
    "  r[4] = redis.call('INCR', KEYS[2])\n"                                  \
    "  redis.call('PEXPIRE', KEYS[2], ARGV[1])\n"                             \
    "else\n"                                                                  \
    "  r[4] = redis.call('GET', KEYS[2])\n"                                   \
    "end\n"                                                                   \
    "r[5] = expire\n"                                                         \
    "return r\n"



/*
 * FAIL: count a login attempt, before its credentials are checked.
 *   KEYS[1] a failure counter; ARGV[1] its lifetime in milliseconds
 *   returns the count within the lifetime, this attempt included
 *
 * Counting first means that however many attempts run at once, or
 * however soon their connections close, no more credentials are checked
 * than the block allows.  An attempt that succeeds is taken back
 * (REFUND), so only failures stay counted: any number of good logins
 * from one address (a NAT, a webmail host) never blocks it.
 */

#define P3X_SCRIPT_FAIL                                                       \
    "local n = redis.call('INCR', KEYS[1])\n"                                 \
    "redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"                               \
    "return n\n"


/*
 * REFUND: take back the count of an attempt that succeeded.
 *   KEYS[1] a failure counter
 *   returns the count left
 */

#define P3X_SCRIPT_REFUND                                                     \
    "local n = tonumber(redis.call('GET', KEYS[1]) or '0')\n"                 \
    "if n > 1 then\n"                                                         \
    "  return redis.call('DECR', KEYS[1])\n"                                  \
    "end\n"                                                                   \
    "redis.call('DEL', KEYS[1])\n"                                            \
    "return 0\n"


/*
 * CONN: hold (or renew) a connection slot in a counting semaphore.
 *   KEYS[1] the slot set; ARGV[1] session id, ARGV[2] lifetime in
 *   milliseconds, ARGV[3] the limit, ARGV[4] "renew" to extend a slot
 *   the session holds and never take a new one
 *   returns 1 when the session holds a slot, 0 when all are taken (or,
 *   for a renewal, when the slot is gone)
 *
 * Slots of hosts that died expire by their score; live sessions renew
 * theirs, and ZREM gives a slot back.  A renewal that arrives after the
 * release (a retry, a late reply) cannot bring the slot back.
 */

#define P3X_SCRIPT_CONN                                                       \
    "local t = redis.call('TIME')\n"                                          \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"                  \
    "local held = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"                   \
    "if ARGV[4] == 'renew' and not held then\n"                               \
    "  return 0\n"                                                            \
    "end\n"                                                                   \
    "if not held and "                                                        \
       "redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then\n"             \
    "  return 0\n"                                                            \
    "end\n"                                                                   \
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\n"         \
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"                               \
    "return 1\n"


/*
 * KICK: end the session that holds a maildrop (pop3ext kick).  The lock
 * goes; the session finds it lost at its next refresh or command and
 * ends with -ERR [SYS/TEMP], deleting nothing.
 *   KEYS[1] lock, KEYS[2] dele, KEYS[3] owner
 *   returns the owner's fields, or nil when nobody held it
 */

#define P3X_SCRIPT_KICK                                                       \
    "local who = redis.call('GET', KEYS[3])\n"                                \
    "if redis.call('DEL', KEYS[1]) == 0 then\n"                               \
    "  who = false\n"                                                         \
    "end\n"                                                                   \
    "redis.call('DEL', KEYS[2], KEYS[3])\n"                                   \
    "return who\n"


/*
 * EXPUNGE: remove messages outside a session (pop3ext expunge: retention,
 * EXPIRE); refused while a session holds the maildrop, so that message
 * numbers never change under a client.
 *   KEYS[1] lock, KEYS[2] index, KEYS[3] meta, KEYS[4] time,
 *   KEYS[4 + i] the body of the entry ARGV[i]
 *   ARGV[1..] the "UID SIZE" entries to remove
 *   returns { messages removed, their octets }, or the error "IN-USE"
 */

#define P3X_SCRIPT_EXPUNGE                                                    \
    "if redis.call('EXISTS', KEYS[1]) == 1 then\n"                            \
    "  return redis.error_reply('IN-USE maildrop is locked')\n"               \
    "end\n"                                                                   \
    "local gone, b, u, n, o = {}, {}, {}, 0, 0\n"                             \
    "for i = 1, #ARGV do\n"                                                   \
    "  gone[ARGV[i]] = i\n"                                                   \
    "end\n"                                                                   \
    "local keep = {}\n"                                                       \
    "for _, e in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do\n"           \
    "  local i = gone[e]\n"                                                   \
    "  if i then\n"                                                           \
    "    n = n + 1\n"                                                         \
    "    o = o + tonumber(string.match(e, ' (%d+)$'))\n"                      \
    "    b[#b + 1] = KEYS[4 + i]\n"                                           \
    "    u[#u + 1] = string.match(e, '^(%S+)')\n"                             \
    "    gone[e] = nil\n"                                                     \
    "  else\n"                                                                \
    "    keep[#keep + 1] = e\n"                                               \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "if n > 0 then\n"                                                         \
    "  redis.call('DEL', KEYS[2])\n"                                          \
    "  for i = 1, #keep, 1000 do\n"                                           \
    "    redis.call('RPUSH', KEYS[2],\n"                                      \
    "               unpack(keep, i, math.min(i + 999, #keep)))\n"              \
    "  end\n"                                                                 \
    "  for i = 1, #b, 1000 do\n"                                              \
    "    redis.call('UNLINK', unpack(b, i, math.min(i + 999, #b)))\n"         \
    "    redis.call('HDEL', KEYS[4], unpack(u, i, math.min(i + 999, #u)))\n"  \
    "  end\n"                                                                 \
    "  if redis.call('HEXISTS', KEYS[3], 'messages') == 1 then\n"             \
    "    redis.call('HINCRBY', KEYS[3], 'messages', -n)\n"                    \
    "    redis.call('HINCRBY', KEYS[3], 'octets', -o)\n"                      \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "return { n, o }\n"


/*
 * USAGE: count a mailbox's usage again from its index (pop3ext quota
 * recalc).
 *   KEYS[1] index, KEYS[2] meta
 *   returns { messages, octets }
 */

#define P3X_SCRIPT_USAGE                                                      \
    "local n, o = 0, 0\n"                                                     \
    "for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do\n"           \
    "  n = n + 1\n"                                                           \
    "  o = o + (tonumber(string.match(e, ' (%d+)$')) or 0)\n"                 \
    "end\n"                                                                   \
    "redis.call('HSET', KEYS[2], 'messages', n, 'octets', o)\n"               \
    "return { n, o }\n"


#endif /* _NGX_MAIL_POP3_EXT_MODEL_H_INCLUDED_ */

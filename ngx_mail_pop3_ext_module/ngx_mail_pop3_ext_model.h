
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
 * one mailbox, run on one node.
 *
 *   pop3:user:{NAME}           hash    secret, mailbox, disabled
 *   pop3:mbox:{MBOX}:index     list    "UID SIZE", oldest first
 *   pop3:mbox:{MBOX}:msg:UID   string  the message, CRLF lines, unstuffed
 *   pop3:mbox:{MBOX}:meta      hash    uidvalidity, uidseq
 *   pop3:mbox:{MBOX}:lock      string  session token, with a TTL
 *   pop3:mbox:{MBOX}:dele      set     "UID SIZE" entries marked by DELE
 *   pop3:mbox:{MBOX}:gone:TOKEN string  a lock request given up, with a TTL
 *
 * Abuse resistance, shared by every host (see docs/security.md):
 *
 *   pop3:fail:user:{NAME}      string  failed logins of a user, with a TTL
 *   pop3:fail:addr:{ADDR}      string  failed logins from an address, TTL
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
#define P3X_META_SUFFIX        "}:meta"
#define P3X_LOCK_SUFFIX        "}:lock"
#define P3X_DELE_SUFFIX        "}:dele"
#define P3X_GONE_SUFFIX        "}:gone:"

#define P3X_FAIL_USER_PREFIX   "pop3:fail:user:{"
#define P3X_FAIL_ADDR_PREFIX   "pop3:fail:addr:{"
#define P3X_CONN_USER_PREFIX   "pop3:conn:user:{"
#define P3X_CONN_ADDR_PREFIX   "pop3:conn:addr:{"
#define P3X_TAG_CLOSE          "}"

#define P3X_FIELD_SECRET       "secret"
#define P3X_FIELD_MAILBOX      "mailbox"
#define P3X_FIELD_DISABLED     "disabled"

#define P3X_NAME_MAX           255
#define P3X_UID_MAX            70
#define P3X_TOKEN_LEN          32


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


/*
 * DELIVER
 *   KEYS[1] meta, KEYS[2] index
 *   ARGV[1] message (CRLF line ends, ending in CRLF), ARGV[2] key prefix
 *   of message bodies ("pop3:mbox:{MBOX}:msg:")
 *   returns the new UID
 *
 * The UID is "UIDVALIDITY.SEQ": UIDVALIDITY is the creation time of the
 * mailbox in milliseconds, in hex; SEQ (the last one used is "uidseq")
 * counts up in decimal and never repeats within a mailbox, and a mailbox
 * created anew gets a new UIDVALIDITY, so a UID is not reused.  Message
 * keys are built from the prefix; they share the mailbox hash tag, hence
 * the slot.  The type check comes first because a script is not rolled
 * back: no body is written unless the index can take it.
 */

#define P3X_SCRIPT_DELIVER                                                    \
    "local t = redis.call('TYPE', KEYS[2])['ok']\n"                           \
    "if t ~= 'none' and t ~= 'list' then\n"                                   \
    "  return redis.error_reply('WRONGTYPE index is not a list')\n"           \
    "end\n"                                                                   \
    "local v = redis.call('HGET', KEYS[1], 'uidvalidity')\n"                  \
    "if not v then\n"                                                         \
    "  local c = redis.call('TIME')\n"                                        \
    "  v = string.format('%x', tonumber(c[1]) * 1000 + "                      \
                               "math.floor(tonumber(c[2]) / 1000))\n"         \
    "  redis.call('HSET', KEYS[1], 'uidvalidity', v)\n"                       \
    "end\n"                                                                   \
    "local n = redis.call('HINCRBY', KEYS[1], 'uidseq', 1)\n"                 \
    "local uid = v .. '.' .. n\n"                                             \
    "redis.call('SET', ARGV[2] .. uid, ARGV[1])\n"                            \
    "redis.call('RPUSH', KEYS[2], uid .. ' ' .. string.len(ARGV[1]))\n"       \
    "return uid\n"


/*
 * LOCK: take the maildrop at login and read the start of its index in one
 * round trip.
 *   KEYS[1] lock, KEYS[2] dele, KEYS[3] index, KEYS[4] gone:TOKEN
 *   ARGV[1] token, ARGV[2] TTL in milliseconds, ARGV[3] how many entries
 *   returns { the number of messages N, the first ARGV[3] entries }, or
 *   the error "IN-USE" or "GONE"
 *
 * The session reads entries past ARGV[3] with LRANGE: while it holds the
 * lock the first N entries cannot change (deliveries only append), and a
 * big maildrop does not stall Redis in one long script.
 *
 * Markers left by a session that died are dropped: only a committed
 * UPDATE deletes.  A session that gave up waiting for this script (Redis
 * stalled) has run RELEASE first, which left gone:TOKEN: the late script
 * then takes nothing, so no lock outlives its session.
 */

#define P3X_SCRIPT_LOCK                                                       \
    "if redis.call('DEL', KEYS[4]) == 1 then\n"                               \
    "  return redis.error_reply('GONE session gave up')\n"                    \
    "end\n"                                                                   \
    "if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"  \
    "  return redis.error_reply('IN-USE maildrop is locked')\n"               \
    "end\n"                                                                   \
    "redis.call('DEL', KEYS[2])\n"                                            \
    "return { redis.call('LLEN', KEYS[3]), "                                  \
             "redis.call('LRANGE', KEYS[3], 0, tonumber(ARGV[3]) - 1) }\n"


/*
 * REFRESH: extend the lock of a live session.
 *   KEYS[1] lock; ARGV[1] token, ARGV[2] TTL in milliseconds
 *   returns 1, or the error "LOCKLOST"
 */

#define P3X_SCRIPT_REFRESH                                                    \
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"                         \
    "  return redis.error_reply('LOCKLOST maildrop lock lost')\n"             \
    "end\n"                                                                   \
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"                               \
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
 * COMMIT: the UPDATE state, atomically.  The token is checked inside the
 * script (fencing), so a session whose lock expired cannot delete.
 *   KEYS[1] lock, KEYS[2] dele, KEYS[3] index
 *   ARGV[1] token, ARGV[2] key prefix of message bodies,
 *   ARGV[3..] the "UID SIZE" entries the session deleted
 *   returns the number of messages deleted, or the error "LOCKLOST"
 *
 * Only entries both marked in dele and named by the session go: a DELE
 * whose reply was lost (the client saw -ERR) is not applied.  A few are
 * removed with LREM; many by one pass that rebuilds the index, which
 * keeps a large commit O(N).
 */

#define P3X_SCRIPT_COMMIT                                                     \
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"                         \
    "  return redis.error_reply('LOCKLOST maildrop lock lost')\n"             \
    "end\n"                                                                   \
    "local d = {}\n"                                                          \
    "for i = 3, #ARGV do\n"                                                   \
    "  if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 1 then\n"              \
    "    d[#d + 1] = ARGV[i]\n"                                               \
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
    "    redis.call('RPUSH', KEYS[3], "                                       \
                    "unpack(keep, i, math.min(i + 999, #keep)))\n"            \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "for _, e in ipairs(d) do\n"                                              \
    "  local uid = string.match(e, '^(%S+)')\n"                               \
    "  redis.call('UNLINK', ARGV[2] .. uid)\n"                                \
    "end\n"                                                                   \
    "redis.call('DEL', KEYS[2], KEYS[1])\n"                                   \
    "return #d\n"


/*
 * RELEASE: give the maildrop up without UPDATE (RFC 1939: a session that
 * ends otherwise than by QUIT deletes nothing).
 *   KEYS[1] lock, KEYS[2] dele, KEYS[3] gone:TOKEN
 *   ARGV[1] token, ARGV[2] TTL in milliseconds
 *   returns 1 if the lock was ours, else 0
 *
 * When the lock is not ours, our LOCK may still be on its way (it timed
 * out, or the client left during login): gone:TOKEN makes it void.
 */

#define P3X_SCRIPT_RELEASE                                                    \
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"                         \
    "  redis.call('DEL', KEYS[1], KEYS[2])\n"                                 \
    "  return 1\n"                                                            \
    "end\n"                                                                   \
    "redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])\n"                        \
    "return 0\n"


/*
 * AUTHINFO: what a login needs to know about a user, in one round trip.
 * pop3ext user show runs it too: it only reads.
 *   KEYS[1] user record, KEYS[2] the user's failure counter
 *   returns { secret, mailbox, disabled, failures } (nil for absent)
 */

#define P3X_SCRIPT_AUTHINFO                                                   \
    "local r = redis.call('HMGET', KEYS[1], 'secret', 'mailbox', "            \
                                           "'disabled')\n"                    \
    "r[4] = redis.call('GET', KEYS[2])\n"                                     \
    "return r\n"


/*
 * FAIL: count a failed (or refused) login.
 *   KEYS[1] a failure counter; ARGV[1] its lifetime in milliseconds
 *   returns the count within the lifetime, which each failure renews
 *
 * Only failures count: any number of good logins from one address (a
 * NAT, a webmail host) never blocks it.
 */

#define P3X_SCRIPT_FAIL                                                       \
    "local n = redis.call('INCR', KEYS[1])\n"                                 \
    "redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"                               \
    "return n\n"


/*
 * CONN: hold (or renew) a connection slot in a counting semaphore.
 *   KEYS[1] the slot set; ARGV[1] session id, ARGV[2] lifetime in
 *   milliseconds, ARGV[3] the limit
 *   returns 1 when the session holds a slot, 0 when all are taken
 *
 * Slots of hosts that died expire by their score; live sessions renew
 * theirs, and ZREM gives a slot back.
 */

#define P3X_SCRIPT_CONN                                                       \
    "local t = redis.call('TIME')\n"                                          \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"                  \
    "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and "                      \
       "redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then\n"             \
    "  return 0\n"                                                            \
    "end\n"                                                                   \
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\n"         \
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"                               \
    "return 1\n"


#endif /* _NGX_MAIL_POP3_EXT_MODEL_H_INCLUDED_ */

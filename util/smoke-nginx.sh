#!/bin/sh
# A smoke test of one nginx binary with the module: its own Redis and
# nginx on free loopback ports, a user and a message stored with pop3ext,
# then with curl a login and RETR over plain POP3, over STLS and over
# POP3S.  Called by util/test-nginx.sh; runs alone as well:
#
#   util/smoke-nginx.sh NGINX [MAIL_MODULE_SO MODULE_SO]
#
# Without the two .so paths (or with empty ones), the nginx is taken to
# have the mail core and the module built in (--add-module), and the
# configuration loads nothing.  The temporary directory is removed when
# the test passes and kept, with its logs, when it fails.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
nginx=${1:?usage: $0 NGINX [MAIL_MODULE_SO MODULE_SO]}
mail_module=${2:-}
module=${3:-}
pop3ext=${TEST_NGINX_CLI:-$top/build/pop3ext}
redis_server=${TEST_NGINX_REDIS:-redis-server}

for prog in curl openssl perl redis-cli "$redis_server"; do
    command -v "$prog" >/dev/null 2>&1 || {
        echo "smoke: $prog not found (util/deps.sh build run test)" >&2
        exit 1
    }
done
[ -x "$pop3ext" ] || { echo "smoke: no $pop3ext, run make" >&2; exit 1; }

d=$(mktemp -d "${TMPDIR:-/tmp}/p3x-smoke-XXXXXXXX")
nginx_pid=
rport=
ok=0

finish() {
    if [ -n "$nginx_pid" ]; then
        kill -QUIT "$nginx_pid" 2>/dev/null || true
        wait "$nginx_pid" 2>/dev/null || true
    fi
    if [ -n "$rport" ]; then
        redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
    fi
    if [ "$ok" = 1 ]; then
        rm -rf "$d"
    else
        echo "smoke: FAILED; error log:" >&2
        tail -n 20 "$d/error.log" >&2 2>/dev/null || true
        echo "smoke: files kept in $d" >&2
    fi
}
trap finish EXIT
trap 'exit 1' INT TERM HUP

free_port() {
    perl -MIO::Socket::INET -e \
        'print IO::Socket::INET->new(Listen => 1,
             LocalAddr => "127.0.0.1:0")->sockport, "\n"'
}

rport=$(free_port)
port=$(free_port)
sport=$(free_port)

"$redis_server" --bind 127.0.0.1 --port "$rport" --dir "$d" --save '' \
    --appendonly no --daemonize yes --logfile "$d/redis.log" \
    --pidfile "$d/redis.pid" >/dev/null
i=0
until redis-cli -p "$rport" ping >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -gt 50 ] && { echo "smoke: redis did not start" >&2; exit 1; }
    sleep 0.1
done

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$d/key.pem" -out "$d/cert.pem" >/dev/null 2>&1

{
    [ -n "$mail_module" ] && echo "load_module $mail_module;"
    [ -n "$module" ] && echo "load_module $module;"
    cat <<CONF
daemon off;
pid $d/nginx.pid;
error_log $d/error.log info;
worker_processes 1;

events {
}

mail {
    auth_http  127.0.0.1:1/unused;

    ssl_certificate      $d/cert.pem;
    ssl_certificate_key  $d/key.pem;

    pop3_ext_redis  127.0.0.1:$rport;

    server {
        listen    127.0.0.1:$port;
        protocol  pop3_ext;
        starttls  on;
    }

    server {
        listen    127.0.0.1:$sport ssl;
        protocol  pop3_ext;
    }
}
CONF
} > "$d/nginx.conf"

"$nginx" -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" \
    > "$d/stderr" 2>&1 &
nginx_pid=$!

i=0
until [ -s "$d/nginx.pid" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$nginx_pid" 2>/dev/null; then
        echo "smoke: nginx did not start" >&2
        cat "$d/stderr" >&2
        exit 1
    fi
    sleep 0.1
done

export POP3EXT_REDIS="127.0.0.1:$rport"
echo 'smoke-secret' | "$pop3ext" user add smoke
printf 'From: smoke@localhost\nSubject: smoke\n\nline one\n.dot line\n' \
    > "$d/message"
"$pop3ext" deliver smoke < "$d/message"

fail=0

check() {
    what=$1
    shift
    if curl -s --max-time 10 -u smoke:smoke-secret "$@" > "$d/got" \
       && tr -d '\r' < "$d/got" | cmp -s - "$d/message"
    then
        echo "smoke: ok - $what"
    else
        echo "smoke: not ok - $what" >&2
        fail=1
    fi
}

check "POP3 login and RETR" "pop3://127.0.0.1:$port/1"
check "STLS, login and RETR" --ssl-reqd -k "pop3://127.0.0.1:$port/1"
check "POP3S login and RETR" -k "pop3s://127.0.0.1:$sport/1"

if curl -s --max-time 10 -u smoke:wrong "pop3://127.0.0.1:$port/1" \
    > /dev/null
then
    echo "smoke: not ok - a wrong password is refused" >&2
    fail=1
else
    echo "smoke: ok - a wrong password is refused"
fi

if grep -E '\[(alert|crit|emerg)\]' "$d/error.log" >&2; then
    echo "smoke: not ok - the error log is clean" >&2
    fail=1
fi

[ "$fail" = 0 ] || exit 1
ok=1

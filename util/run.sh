#!/bin/sh
# Serve POP3 on 127.0.0.1:1110 from this checkout: a local Redis (data in
# var/redis, append-only file on, so mail survives a restart) and nginx in
# the foreground.  Ctrl-C stops both.  Called by `make run`.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
var=$top/var
nginx=${NGINX:-/usr/sbin/nginx}
mail_module=${MAIL_MODULE:-/usr/lib/nginx/modules/ngx_mail_module.so}
pop3ext=$top/build/pop3ext
port=${POP3_PORT:-1110}
tls_port=${POP3S_PORT:-1995}

mkdir -p "$var/redis" "$var/nginx/logs" "$var/tls"

# a self-signed certificate for POP3S and STLS, made on the first run
if [ ! -f "$var/tls/cert.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$var/tls/key.pem" -out "$var/tls/cert.pem" 2>/dev/null
    chmod 600 "$var/tls/key.pem"
fi

# The module's default Redis is 127.0.0.1:6379; if another server holds
# that port, ours takes 16379 and both sides are told so.
rport=6379
if redis-cli -p 6379 ping >/dev/null 2>&1 \
   && [ ! -f "$var/redis/redis.pid" ]
then
    rport=16379
fi
raddr=127.0.0.1:$rport
export POP3EXT_REDIS=$raddr

redis_pid=""
nginx_pid=""

stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping nginx and redis"
    [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null || true
    [ -n "$nginx_pid" ] && wait "$nginx_pid" 2>/dev/null || true
    redis-cli -p "$rport" shutdown >/dev/null 2>&1 || true
    exit 0
}
trap stop INT TERM EXIT

redis-server --bind 127.0.0.1 --port "$rport" --dir "$var/redis" \
    --appendonly yes --appendfsync everysec --save '' \
    --pidfile "$var/redis/redis.pid" --logfile "$var/redis/redis.log" \
    --daemonize yes

i=0
until redis-cli -p "$rport" ping >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -gt 50 ] && { echo "redis did not start: $var/redis/redis.log"; exit 1; }
    sleep 0.1
done

cat > "$var/nginx/nginx.conf" <<CONF
load_module $mail_module;
load_module $top/build/ngx_mail_pop3_ext_module.so;

worker_processes  2;
daemon            off;
pid               $var/nginx/nginx.pid;
error_log         stderr notice;

events {
    worker_connections  1024;
}

mail {
    # required by nginx's mail core; this module never contacts it
    auth_http  127.0.0.1:1/unused;

    ssl_certificate      $var/tls/cert.pem;
    ssl_certificate_key  $var/tls/key.pem;
    ssl_protocols        TLSv1.2 TLSv1.3;    # nginx 1.22 offers no 1.3 unasked

    pop3_ext_redis  $raddr;

    server {
        listen    127.0.0.1:$port;
        protocol  pop3_ext;
        starttls  on;
    }

    server {
        listen    127.0.0.1:$tls_port ssl;
        protocol  pop3_ext;
    }
}
CONF

"$nginx" -t -q -p "$var/nginx" -c "$var/nginx/nginx.conf"

# the demo mailbox: created once, kept across runs
if ! "$pop3ext" stat demo >/dev/null 2>&1; then
    echo demo | "$pop3ext" user add demo
    printf 'From: pop3ext <postmaster@localhost>\nTo: demo@localhost\nSubject: Welcome\nDate: %s\n\nThis message was delivered by pop3ext into Redis and is served\nby nginx. Delete it with DELE 1 and QUIT.\n' \
        "$(date -R)" | "$pop3ext" deliver demo
fi

cat <<MSG

  POP3 is served on 127.0.0.1:$port (STLS too), POP3S on 127.0.0.1:$tls_port
  (self-signed certificate in var/tls); Redis $raddr, data in var/redis.

  Log in:     user demo, password demo
              curl -s pop3://demo:demo@127.0.0.1:$port/1
              curl -sk pop3s://demo:demo@127.0.0.1:$tls_port/1
              python3 -c 'import poplib; p = poplib.POP3("127.0.0.1", $port); p.user("demo"); p.pass_("demo"); print(p.stat())'
  Deliver:    echo 'Subject: hi' | POP3EXT_REDIS=$raddr build/pop3ext deliver demo
  Add a user: echo SECRET | POP3EXT_REDIS=$raddr build/pop3ext user add NAME

  Ctrl-C stops nginx and Redis.

MSG

"$nginx" -p "$var/nginx" -c "$var/nginx/nginx.conf" &
nginx_pid=$!
wait "$nginx_pid" || true

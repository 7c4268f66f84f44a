#!/bin/sh
# Build nginx from a source tree with this module in it, then test that
# nginx: a smoke test (a POP3 login, RETR over plain POP3, STLS and POP3S),
# then the t/ suite.  For what CI cannot do: CI has no nginx sources.
#
#   util/test-nginx.sh NGINX_SRC [static|dynamic]
#   make test-nginx NGINX_SRC=/path/to/nginx [NGINX_MODULE_TYPE=dynamic]
#
# NGINX_SRC is an nginx release tarball unpacked, or a checkout of nginx's
# repository (whose configure is auto/configure).  It is not written to:
# the tree is copied into the build directory, since configure writes a
# Makefile beside itself, and everything built goes there (--builddir).
#
#   static   --with-mail --with-mail_ssl_module --with-threads
#            --add-module=<this repository>                 (the default)
#   dynamic  --with-mail=dynamic --with-mail_ssl_module --with-threads
#            --add-dynamic-module=<this repository>; the tests load
#            objs/ngx_mail_module.so, then the module, both from the build
#
# Environment:
#   NGINX_BUILD_DIR      default build/nginx-VERSION-TYPE in this repository
#   NGINX_CONFIGURE_OPTS more configure options, split at spaces, e.g.
#                        --with-debug
#   NGINX_CC_OPT         --with-cc-opt, e.g. "-O0 -fsanitize=address"
#   NGINX_LD_OPT         --with-ld-opt
#   NGINX_TEST           suite (default: smoke test, then the suite),
#                        smoke (the smoke test only), none (build only)
#   PROVE_JOBS           parallel test files (default 2)
#   MAKE_JOBS            parallel compiles (default 2)
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    echo "usage: $0 NGINX_SRC [static|dynamic]" >&2
    exit 64
}

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ -z "$1" ]; then
    usage
fi
src=$(cd "$1" && pwd) || exit 66
type=${2:-static}
case "$type" in static|dynamic) ;; *) usage ;; esac

if [ ! -f "$src/src/core/nginx.h" ]; then
    echo "$0: $src is not an nginx source tree (no src/core/nginx.h)" >&2
    exit 66
fi
if [ -x "$src/configure" ]; then
    configure=./configure
elif [ -f "$src/auto/configure" ]; then
    configure=auto/configure
else
    echo "$0: no configure script in $src" >&2
    exit 66
fi

version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' \
          "$src/src/core/nginx.h")
out=${NGINX_BUILD_DIR:-$top/build/nginx-$version-$type}
case "$out" in /*) ;; *) out=$(pwd)/$out ;; esac
tree=$out/nginx-src
objs=$out/objs
jobs=${MAKE_JOBS:-2}
test=${NGINX_TEST:-suite}
extra=${NGINX_CONFIGURE_OPTS:-}

if [ "$type" = static ]; then
    mail="--with-mail"
    add="--add-module=$top"
else
    mail="--with-mail=dynamic"
    add="--add-dynamic-module=$top"
fi

# the configure line, as one string, to log it and to know when it changed
# shellcheck disable=SC2086
set -- $mail --with-mail_ssl_module --with-threads "$add" \
    --prefix="$out/prefix" --builddir="$objs" $extra
[ -n "${NGINX_CC_OPT:-}" ] && set -- "$@" --with-cc-opt="$NGINX_CC_OPT"
[ -n "${NGINX_LD_OPT:-}" ] && set -- "$@" --with-ld-opt="$NGINX_LD_OPT"

mkdir -p "$out"
stamp=$out/.configured
ngx_id=$(printf '%s\n' "$src" "$*" | cat - "$top/config" \
         "$src/src/core/nginx.h" | cksum)

echo "nginx $version ($src), module $type, in $out"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$ngx_id" ]; then
    rm -rf "$tree" "$objs" "$stamp"
    mkdir -p "$tree"
    # the tree without what a build of its own left in it
    (cd "$src" && tar -cf - --exclude=./objs --exclude=./Makefile .) \
        | (cd "$tree" && tar -xf -)
    echo "configure: $configure $*"
    (cd "$tree" && $configure "$@") > "$out/configure.log" 2>&1 || {
        tail -n 30 "$out/configure.log"
        echo "$0: configure failed, see $out/configure.log" >&2
        exit 1
    }
    echo "$ngx_id" > "$stamp"
fi

echo "make -j$jobs (log: $out/make.log)"
make -C "$tree" -j"$jobs" > "$out/make.log" 2>&1 || {
    grep -E 'error|warning' "$out/make.log" | head -n 40
    echo "$0: build failed, see $out/make.log" >&2
    exit 1
}

"$objs/nginx" -V 2>&1 | sed 's/^/  /'

if [ "$type" = static ]; then
    module=
    mail_module=
else
    module=$objs/ngx_mail_pop3_ext_module.so
    mail_module=$objs/ngx_mail_module.so
fi

[ "$test" = none ] && exit 0

# pop3ext, for the smoke test and the suite
make -C "$top" -s build/pop3ext

"$top/util/smoke-nginx.sh" "$objs/nginx" "$mail_module" "$module"

[ "$test" = smoke ] && exit 0

# The harness writes no load_module lines when TEST_NGINX_MODULE is set
# and empty: a static build has the mail core and the module inside.  A
# harness from before that would load Debian's mail core into this nginx
# and fail every file: ask it what it writes first.

if [ "$type" = static ] \
   && TEST_NGINX_MODULE='' TEST_NGINX_MAIL_MODULE='' perl -I"$top/t/lib" \
      -MTest::Nginx -e 'my $t = Test::Nginx->new();
                        print $t->expand($t->pop3_conf());' \
      | grep -q '^ *load_module'
then
    echo "$0: t/lib/Test/Nginx.pm writes load_module lines even with" \
         "TEST_NGINX_MODULE empty: it cannot test a static build yet" \
         "(the build and the smoke test passed)" >&2
    exit 1
fi

export TEST_NGINX_BINARY="$objs/nginx"
export TEST_NGINX_MODULE="$module"
export TEST_NGINX_MAIL_MODULE="$mail_module"

cd "$top"
prove -j"${PROVE_JOBS:-2}" -r t/

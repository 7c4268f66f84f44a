#!/bin/sh
# Build the module as a dynamic module for the nginx installed on this
# machine, from the configure scripts and headers that nginx-dev ships
# (Debian), or from an nginx source tree given as NGX_SRC.
#
#   util/build.sh [BUILD_DIR]        (default: ./build)
#   NGX_CC_OPT="-fsanitize=address,undefined" util/build.sh build-asan
set -e

top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build}
case "$out" in /*) ;; *) out=$top/$out ;; esac
src=${NGX_SRC:-/usr/share/nginx/src}
cc_opt="-g -O2 -fPIC -Wall -Werror ${NGX_CC_OPT:-}"
ld_opt="-fPIC ${NGX_LD_OPT:-}"

mkdir -p "$out"
stamp="$out/.configured"
tree="$out/nginx-src"

# configure again when the config file or the nginx it targets changed
# (a module built against other headers would not load)
ngx_id=$(cat "$src/src/core/nginx.h" "$src/conf_flags" 2>/dev/null | cksum)

if [ ! -f "$stamp" ] || [ "$top/config" -nt "$stamp" ] \
   || [ "$(cat "$stamp")" != "$ngx_id" ]
then
    rm -rf "$tree"
    cp -r "$src" "$tree"
    cd "$tree"
    NGX_CONF_FLAGS=""
    if [ -f ./conf_flags ]; then
        # Debian's file sets NGX_CONF_FLAGS as a bash array
        flags=$(bash -c '. ./conf_flags; printf "%s\n" "${NGX_CONF_FLAGS[@]}"')
    else
        flags="--with-compat --with-threads"
    fi
    # shellcheck disable=SC2086
    IFS='
' ; set -- $flags ; unset IFS
    ./configure --with-cc-opt="$cc_opt" --with-ld-opt="$ld_opt" "$@" \
        --with-mail=dynamic --with-mail_ssl_module \
        --add-dynamic-module="$top" --builddir="$out/objs" \
        > "$out/configure.log" 2>&1 \
        || { tail -n 30 "$out/configure.log"; exit 1; }
    echo "$ngx_id" > "$stamp"
fi

cd "$tree"
make -s -f "$out/objs/Makefile" "$out/objs/ngx_mail_pop3_ext_module.so" \
    > "$out/make.log" 2>&1 || { cat "$out/make.log"; exit 1; }
# a new inode: nginx processes that have the old file mapped keep working
cp "$out/objs/ngx_mail_pop3_ext_module.so" "$out/.module.so.tmp"
mv -f "$out/.module.so.tmp" "$out/ngx_mail_pop3_ext_module.so"

#!/bin/sh
# Build an nginx from source with the module compiled in (statically), to
# run the test suite against it (t/README.md):
#
#   util/build-static.sh NGINX_SOURCE [BUILD_DIR]     (default build-static/)
#   TEST_NGINX_BINARY=BUILD_DIR/nginx/objs/nginx TEST_NGINX_MODULE= \
#       prove -j2 -r t/
#
# NGINX_SOURCE is an nginx source tree, 1.22.1 or newer: a release
# tarball unpacked (./configure) or a checkout of nginx's repository
# (auto/configure), e.g. Debian's nginx_1.22.1.orig.tar.gz from
# "apt-get source --download-only nginx".  It is copied, never written.
# Packages: util/deps.sh static.  NGX_CONFIGURE_OPT adds options.
set -e

top=$(cd "$(dirname "$0")/.." && pwd)
src=${1:?usage: util/build-static.sh NGINX_SOURCE [BUILD_DIR]}
out=${2:-$top/build-static}
case "$out" in /*) ;; *) out=$(pwd)/$out ;; esac

if [ -x "$src/configure" ]; then
    conf=./configure
elif [ -f "$src/auto/configure" ]; then
    conf=./auto/configure
else
    echo "util/build-static.sh: no nginx source in $src" >&2
    exit 64
fi

rm -rf "$out/nginx"
mkdir -p "$out"
cp -r "$src" "$out/nginx"
cd "$out/nginx"

# shellcheck disable=SC2086
sh $conf --prefix="$out/prefix" --with-debug --with-threads \
    --with-mail --with-mail_ssl_module --with-cc-opt="-g -O2" \
    --add-module="$top" ${NGX_CONFIGURE_OPT:-} \
    > "$out/configure.log" 2>&1 \
    || { tail -n 30 "$out/configure.log"; exit 1; }
make -j"$(nproc 2>/dev/null || echo 2)" > "$out/make.log" 2>&1 \
    || { tail -n 40 "$out/make.log"; exit 1; }

echo "$out/nginx/objs/nginx"
"$out/nginx/objs/nginx" -V 2>&1 | tail -n 1

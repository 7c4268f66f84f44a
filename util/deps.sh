#!/bin/sh
# Install what building, running and testing need, from Debian's archive.
# Idempotent and quiet when everything is present.
#   util/deps.sh [build|run|test|bench|fuzz|nginx-src] ...
set -e

pkgs_build="gcc make nginx nginx-dev libnginx-mod-mail libhiredis-dev \
libssl-dev libcrypt-dev libargon2-dev"
pkgs_run="redis-server redis-tools openssl"
pkgs_test="perl libnet-perl libio-socket-ssl-perl python3 curl fetchmail \
valgrind dovecot-core"
pkgs_bench="postal dovecot-pop3d dovecot-core python3-redis"
pkgs_fuzz="clang libclang-rt-14-dev"
# nginx built from its source (make test-nginx): what its default
# configure needs (PCRE, zlib, OpenSSL) and the module's libraries
pkgs_nginx_src="gcc make libpcre2-dev zlib1g-dev libssl-dev libhiredis-dev \
libcrypt-dev libargon2-dev"

want=""
[ $# -eq 0 ] && set -- build run
for what in "$@"; do
    case "$what" in
    build) want="$want $pkgs_build" ;;
    run)   want="$want $pkgs_build $pkgs_run" ;;
    test)  want="$want $pkgs_build $pkgs_run $pkgs_test" ;;
    bench) want="$want $pkgs_build $pkgs_run $pkgs_test $pkgs_bench" ;;
    fuzz)  want="$want $pkgs_fuzz" ;;
    nginx-src) want="$want $pkgs_nginx_src" ;;
    *) echo "util/deps.sh: unknown set '$what'" >&2; exit 64 ;;
    esac
done

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
         | grep -q "install ok installed"
    then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# Debian's nginx and redis packages start system services on install where
# an init system runs; policy-rc.d keeps them from taking ports 80 and 6379.
prc=/usr/sbin/policy-rc.d
if [ ! -e $prc ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee $prc >/dev/null
    $sudo chmod +x $prc
    trap '$sudo rm -f $prc' EXIT
fi
# something is missing: the package lists may be old or absent
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null

#!/bin/sh
# Install what building, running and testing need, from Debian's archive.
# Idempotent and quiet when everything is present: then it reaches no
# network at all (make test works offline on a prepared machine).
#   util/deps.sh [build|run|test|bench|fuzz|static|nginx-src|deb] ...
set -e

# every name here must be a real package that dpkg reports installed
# (not a name another package only provides, such as libnet-perl, which
# perl provides: that one would look missing on every run)
pkgs_build="gcc make nginx nginx-dev libnginx-mod-mail libhiredis-dev \
libssl-dev libcrypt-dev libargon2-dev"
pkgs_run="redis-server redis-tools openssl"
pkgs_test="perl libredis-perl libio-socket-ssl-perl redis-sentinel haproxy python3 \
curl fetchmail mpop getmail6 valgrind dovecot-core dovecot-pop3d postfix swaks \
prometheus fail2ban"
pkgs_bench="postal dovecot-pop3d dovecot-core dovecot-lmtpd python3-redis"
pkgs_fuzz="clang libclang-rt-14-dev"
# Debian packages (make deb, t/090-deb.t): the build tools and lintian;
# debian/control's Build-Depends are the build set
pkgs_deb="dpkg-dev debhelper lintian"
# an nginx built from source with the module (t/README.md, make
# test-nginx): what its configure needs and the module's libraries
pkgs_static="gcc make libhiredis-dev libssl-dev libcrypt-dev libargon2-dev \
libpcre2-dev zlib1g-dev"

want=""
[ $# -eq 0 ] && set -- build run
for what in "$@"; do
    case "$what" in
    build)  want="$want $pkgs_build" ;;
    run)    want="$want $pkgs_build $pkgs_run" ;;
    test)   want="$want $pkgs_build $pkgs_run $pkgs_test $pkgs_deb" ;;
    bench)  want="$want $pkgs_build $pkgs_run $pkgs_test $pkgs_bench" ;;
    fuzz)   want="$want $pkgs_fuzz" ;;
    static|nginx-src) want="$want $pkgs_static" ;;
    deb)    want="$want $pkgs_build $pkgs_deb" ;;
    *) echo "util/deps.sh: unknown set '$what'" >&2; exit 64 ;;
    esac
done

missing=""
for p in $want; do
    case " $missing " in *" $p "*) continue ;; esac
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
# the tests run Postfix privately (t/073); the system's stays unconfigured
case " $missing " in *" postfix "*)
    echo "postfix postfix/main_mailer_type select No configuration" \
        | $sudo debconf-set-selections ;;
esac
# from the package lists as they are; only when that fails (lists old or
# absent) are they updated
# shellcheck disable=SC2086
if ! $sudo apt-get install -y -qq --no-install-recommends $missing \
        >/dev/null 2>&1
then
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

#!/bin/bash
# The benchmark: ngx_mail_pop3_ext_module against Dovecot, side by side,
# on loopback, in one run.  Called by `make bench` (which installs the
# packages and builds first); see bench/README.md.
#
#   bench/run.sh                      all six scenarios, quick defaults
#   BENCH_SECONDS=30 bench/run.sh     longer scenario 1
#   BENCH_SCENARIOS="1 5" bench/run.sh
#   BENCH_KEEP=1 bench/run.sh         keep the temporary directory (logs)
#
# Prints the table and writes it to bench/results/latest.txt.  Every
# process it starts and its temporary directory are removed at the end,
# also on Ctrl-C or failure.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "bench/run.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (Dovecot's test users, ulimit -n)"
# Debian's python3: the one python3-redis is installed for (a python3
# earlier in PATH, such as a pyenv one, would not have it)
py3=${BENCH_PYTHON:-/usr/bin/python3}
for cmd in nginx redis-server redis-cli redis-benchmark dovecot rabid \
           openssl "$py3"; do
    command -v "$cmd" >/dev/null 2>&1 \
        || die "$cmd is missing: util/deps.sh bench (or make bench)"
done
"$py3" -c 'import redis' 2>/dev/null \
    || die "python3-redis is missing for $py3: util/deps.sh bench"
for f in ngx_mail_pop3_ext_module.so pop3ext; do
    [ -f "$top/build/$f" ] || die "build/$f is missing: make all"
done

# Debian's dovecot package starts a system Dovecot where an init system
# runs (it was installed under a policy-rc.d that forbids it here).  Ours
# uses its own configuration and ports; a system instance would only
# compete for the CPU, so it is stopped.
if [ -f /run/dovecot/master.pid ] \
   && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null
then
    echo "bench/run.sh: stopping the system Dovecot service" >&2
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]
    then
        systemctl stop dovecot.socket dovecot.service 2>/dev/null || true
    else
        service dovecot stop >/dev/null 2>&1 || true
    fi
fi

# 10k idle connections: the client, nginx and Dovecot all need the fds
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Both stores in memory: Redis runs without persistence, so the Maildirs
# go to tmpfs (/dev/shm) when it has room for them (about 1 GB).
base=${BENCH_TMPDIR:-}
if [ -z "$base" ]; then
    base=/tmp
    free_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
    [ "${free_kb:-0}" -gt 3000000 ] && base=/dev/shm
fi
tmp=$(mktemp -d "$base/pop3bench.XXXXXX") || die "mktemp failed"
# Dovecot's unprivileged processes must reach base_dir and the homes
chmod 755 "$tmp"

# the start time (field 22 of /proc/PID/stat) of a live process
ours() {
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20
}

py=""
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$py" ] && kill -0 "$py" 2>/dev/null; then
        kill -TERM "$py" 2>/dev/null
        for _ in $(seq 1 150); do
            kill -0 "$py" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$py" 2>/dev/null
    fi
    # whatever bench.py started and did not stop: each in its own process
    # group, recorded as "PID STARTTIME" so that a reused pid is left alone
    if [ -f "$tmp/pids" ]; then
        for sig in TERM KILL; do
            while read -r pid started; do
                [ "$(ours "$pid")" = "$started" ] || continue
                kill -"$sig" -- "-$pid" 2>/dev/null
            done < "$tmp/pids"
            [ $sig = TERM ] && sleep 0.5
        done
    fi
    if [ -n "${BENCH_KEEP:-}" ]; then
        echo "bench/run.sh: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export PYTHONDONTWRITEBYTECODE=1
start=$(date +%s)
"$py3" "$top/bench/bench.py" "$tmp" &
py=$!
wait "$py"
rc=$?
py=""
echo "bench/run.sh: finished in $(( $(date +%s) - start )) s (status $rc)" >&2
exit $rc

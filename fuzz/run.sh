#!/bin/bash
# Build and run the libFuzzer targets for a fixed time each (make fuzz).
#   FUZZ_SECONDS=60 fuzz/run.sh [parse|sasl|lmtp]...
# Exits non-zero when a fuzzer finds a crash, a leak or a timeout; what it
# found is kept in build-fuzz/artifacts_TARGET/ (never in the source tree).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/build-fuzz
src=${NGX_SRC:-/usr/share/nginx/src}
seconds=${FUZZ_SECONDS:-30}

# nginx's headers and the configured objs/ of a regular build
[ -f "$top/build/objs/ngx_auto_config.h" ] || make -C "$top" build/ngx_mail_pop3_ext_module.so

inc="-I$src/src/core -I$src/src/event -I$src/src/event/modules
     -I$src/src/os/unix -I$src/src/mail -I$top/build/objs
     -I$top/ngx_mail_pop3_ext_module"
# UBSan's findings stop the run as ASan's do (by default it reports and
# goes on, and libFuzzer would count nothing)
cflags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=undefined"

mkdir -p "$out"

[ $# -eq 0 ] && set -- parse sasl lmtp

for t in "$@"; do
    case "$t" in
    parse) srcs=ngx_mail_pop3_ext_parse.c ;;
    sasl)  srcs=ngx_mail_pop3_ext_sasl.c ;;
    lmtp)  srcs=ngx_mail_pop3_ext_lmtp_parse.c ;;
    *) echo "fuzz/run.sh: unknown target $t" >&2; exit 64 ;;
    esac

    # shellcheck disable=SC2086
    clang $cflags $inc -o "$out/fuzz_$t" "$top/fuzz/fuzz_$t.c" \
        "$top/ngx_mail_pop3_ext_module/$srcs"

    mkdir -p "$out/corpus_$t" "$out/artifacts_$t"
    echo "fuzzing $t for ${seconds}s"
    # the whole log is kept; its end is shown, and libFuzzer's status is
    # the script's (a crash must fail make fuzz and CI)
    status=0
    "$out/fuzz_$t" -max_total_time="$seconds" -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$out/artifacts_$t/" \
        "$out/corpus_$t" "$top/fuzz/corpus/$t" \
        > "$out/fuzz_$t.log" 2>&1 || status=$?
    tail -n 12 "$out/fuzz_$t.log"
    if [ "$status" -ne 0 ]; then
        echo "fuzz/run.sh: $t failed (status $status); log:" \
             "$out/fuzz_$t.log; inputs:" >&2
        ls -l "$out/artifacts_$t/" >&2
        exit 1
    fi
done

#!/bin/sh
# Every source file of the module must include nginx's <ngx_config.h>
# before anything else, directly or through the module's own header: it
# defines _GNU_SOURCE, which from nginx 1.23 on must come before any
# system header (or ngx_event_udp.h fails: "field 'pkt6' has incomplete
# type").  CI builds against Debian's nginx 1.22, where a wrong order
# still compiles, so this is checked here.  Called by make test.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
dir=$top/ngx_mail_pop3_ext_module
bad=0

# the first file a source includes, followed through the module's own
# headers, until a system or nginx header
first_include() {
    f=$1
    n=0
    while :; do
        inc=$(sed -n 's/^[ \t]*#[ \t]*include[ \t]*\([<"][^>"]*[>"]\).*/\1/p' \
              "$f" | head -n 1)
        case "$inc" in
        \"*\")
            f=$dir/$(echo "$inc" | tr -d '"')
            n=$((n + 1))
            if [ ! -f "$f" ] || [ $n -ge 10 ]; then
                echo "$inc"
                return
            fi
            ;;
        *)
            echo "$inc"
            return
            ;;
        esac
    done
}

for src in "$dir"/*.c; do
    inc=$(first_include "$src")
    if [ "$inc" != "<ngx_config.h>" ]; then
        echo "${src#"$top"/}: includes ${inc:-nothing} before <ngx_config.h>" >&2
        bad=1
    fi
done

exit $bad

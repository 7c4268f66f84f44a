#!/bin/sh
# Build the Debian packages described in debian/ out of the checkout, which
# is never written to: the checkout (without debian/, .git and build
# output) becomes the orig tarball in OUT, is unpacked there with debian/,
# and dpkg-buildpackage builds the source package and both binary packages
# in that copy.  Everything it makes stays in OUT, which is emptied first,
# so the build can be repeated.  lintian checks the result when installed.
#
#   util/deb.sh [OUT]        (default: build/deb; keep OUT under build/ or
#                             outside the checkout)
#   LINTIAN=no util/deb.sh   skip lintian
set -e

top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build/deb}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac

for tool in dpkg-buildpackage dpkg-parsechangelog dh; do
    command -v $tool >/dev/null 2>&1 || {
        echo "util/deb.sh: $tool not found (apt-get install dpkg-dev" \
             "debhelper, or make deb)" >&2
        exit 69
    }
done

changelog=$top/debian/changelog
src=$(dpkg-parsechangelog -l "$changelog" -S Source)
ver=$(dpkg-parsechangelog -l "$changelog" -S Version)
when=$(dpkg-parsechangelog -l "$changelog" -S Timestamp)
upver=${ver#*:}
upver=${upver%-*}
dir=$src-$upver
orig=${src}_$upver.orig.tar.gz

rm -rf "$out"
mkdir -p "$out"

# the tree's files without what git ignores (builds, test and bench
# output), and without the packaging itself (quilt format: debian/ is not
# part of the upstream tarball); fixed owner, order and times, so that the
# tarball depends on the sources only.  Outside a git checkout, the
# excludes of .gitignore are repeated here.
files=$(mktemp)
trap 'rm -f "$files"' EXIT
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$top" ls-files -z --cached --others --exclude-standard \
        | tr '\0' '\n' | grep -v '^debian/' | sed 's,^,./,' \
        | while IFS= read -r f; do
              if [ -e "$top/$f" ]; then echo "$f"; fi
          done | LC_ALL=C sort > "$files"
else
    (cd "$top" && find . -type f ! -path './.git/*' ! -path './debian/*' \
        ! -path './build*' ! -path './var/*' ! -path './t/servroot*' \
        ! -name '*.o' ! -name '*.tmp') | LC_ALL=C sort > "$files"
fi
tar -C "$top" -cf - --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@$when" --transform="s,^\\.,$dir," --verbatim-files-from \
    -T "$files" \
    | gzip -n9 > "$out/$orig"

tar -C "$out" -xzf "$out/$orig"
cp -R "$top/debian" "$out/$dir/"

log=$out/build.log
echo "building $src $ver in $out (log: $log)"
if ! (cd "$out/$dir" && dpkg-buildpackage -us -uc) > "$log" 2>&1; then
    tail -n 40 "$log"
    echo "util/deb.sh: dpkg-buildpackage failed, see $log" >&2
    exit 1
fi

# the unpacked copy was only needed for the build
rm -rf "${out:?}/$dir"

changes=$(ls "$out"/*.changes)
( cd "$out" && ls -1 ./*.deb ./*.dsc )

if [ "${LINTIAN:-yes}" != no ] && command -v lintian >/dev/null 2>&1; then
    echo "lintian $(basename "$changes")"
    # errors and warnings fail; informational tags are shown
    lintian --display-info --fail-on error,warning "$changes"
    echo "lintian: no errors or warnings"
fi

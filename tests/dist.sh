#!/usr/bin/env bash
# tests/dist.sh — checks `make dist`'s tarball: exactly the binary and the listed files under one top folder, sorted, owned by 0, one date, the files as in the tree, and the binary runs `--version`.
#
# Usage (as `make test-dist` runs it): tests/dist.sh TARBALL TOP VERSION FILE...
set -euo pipefail

fail() { echo "test-dist: FAIL: $*" >&2; exit 1; }
[ $# -ge 4 ] || fail "usage: tests/dist.sh TARBALL TOP VERSION FILE..."
tarball=$1 top=$2 version=$3
shift 3
[ -f "$tarball" ] || fail "no $tarball"

tmp=$(mktemp -d /tmp/sgp-dist-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# What it must hold: TOP/, TOP/sgp, each file, and the folders above them, in sorted order.
{
    echo "$top/"
    echo "$top/sgp"
    for f in "$@"; do
        echo "$top/$f"
        d=$(dirname "$f")
        while [ "$d" != . ]; do echo "$top/$d/"; d=$(dirname "$d"); done
    done
} | LC_ALL=C sort -u > "$tmp/want"
tar -tzf "$tarball" > "$tmp/got" || fail "$tarball is not a gzipped tar"
diff -u "$tmp/want" "$tmp/got" > "$tmp/diff" || fail "$tarball does not hold exactly the expected files, sorted (- expected, + found):
$(tail -n +3 "$tmp/diff")"

# Owner 0, group 0, one modification time for all.
tar -tvzf "$tarball" --numeric-owner | awk '{print $2}' | sort -u > "$tmp/owners"
[ "$(cat "$tmp/owners")" = "0/0" ] || fail "$tarball has owners other than 0/0: $(tr '\n' ' ' < "$tmp/owners")"
[ "$(tar -tvzf "$tarball" | awk '{print $4, $5}' | sort -u | wc -l)" = 1 ] || fail "$tarball's entries have more than one date"

# The files as they are in the tree, the binary as cargo built it, and it runs.
tar -xzf "$tarball" -C "$tmp"
for f in "$@"; do
    cmp -s "$f" "$tmp/$top/$f" || fail "$top/$f in $tarball differs from $f"
done
cmp -s target/release/sgp "$tmp/$top/sgp" || fail "$top/sgp in $tarball is not target/release/sgp"
[ -x "$tmp/$top/sgp" ] || fail "$top/sgp in $tarball is not executable"
out=$("$tmp/$top/sgp" --version) || fail "$top/sgp --version failed"
[ "$out" = "sgp $version" ] || fail "$top/sgp --version says '$out', not 'sgp $version'"
echo "test-dist: $tarball holds $top/ with sgp ($out) and $*; $(du -k "$tarball" | cut -f1) KiB"

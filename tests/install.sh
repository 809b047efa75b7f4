#!/usr/bin/env bash
# tests/install.sh — checks that sgp installs on a machine without Node (`cargo install` from a copy of the source tree with no client/node_modules and no node or npm to run), that the installed binary serves the page and its CSS, and that deploy/sgp.service passes `systemd-analyze verify`.
#
# Run by `make test-install` (and so by `make test`) from the repository's root, with
# CARGO_TARGET_DIR pointing at its target/ (the default), whose compiled crates the build
# reuses: it compiles only sgp itself (about 20 to 40 s on 2 cores). Without
# systemd-analyze the unit check is skipped with a loud message; `make test-install`
# installs Debian's systemd package first, so under make it always runs.
set -euo pipefail

fail() { echo "test-install: FAIL: $*" >&2; exit 1; }
[ -f Cargo.toml ] && [ -d client/vendor ] || fail "run me from the repository's root"
command -v cargo >/dev/null || fail "cargo is not on PATH"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || fail "needs a git checkout (it copies the files git knows)"

tmp=$(mktemp -d /tmp/sgp-install-test.XXXXXX)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# 1. The source tree as a clone would have it (files git tracks, plus new files it does not
#    ignore): no node_modules, no target/.
src="$tmp/src"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    if [ -e "$f" ]; then printf '%s\0' "$f"; fi   # not a tracked file deleted in the tree
done | xargs -0 cp --parents -t "$src"
[ ! -e "$src/client/node_modules" ] || fail "the copy has client/node_modules"
[ -f "$src/client/vendor/bootstrap.min.css" ] || fail "the copy has no client/vendor/bootstrap.min.css (git must know it: commit it)"

# 2. A PATH where node and npm fail loudly, ahead of the system's (Debian's node is in
#    /usr/bin, beside the linker the build needs).
fake="$tmp/fake-bin"
mkdir -p "$fake"
for tool in node npm npx; do
    printf '#!/bin/sh\necho "test-install: the build ran %s, which it must not need" >&2\nexit 127\n' "$tool" > "$fake/$tool"
    chmod +x "$fake/$tool"
done
path="$fake:$(dirname "$(command -v cargo)"):/usr/bin:/bin"

# 3. cargo install, as README's Install section says, but --debug (the release profile's
#    fat LTO takes a minute; `make test-dist` checks a release build) and into a temporary
#    root. The compiled crates are the tree's (cargo's build-dir: target/), and only sgp is
#    compiled again; the binary it links lands in a temporary target-dir, so the tree's
#    target/debug/sgp is not touched.
root="$tmp/root"
start=$(date +%s)
if ! env PATH="$path" CARGO_BUILD_BUILD_DIR="${CARGO_TARGET_DIR:-$PWD/target}" CARGO_TARGET_DIR="$tmp/target" \
        cargo install --quiet --locked --debug --path "$src" --root "$root" 2> "$tmp/install.log"; then
    cat "$tmp/install.log" >&2
    fail "cargo install --path (a copy without node_modules, node and npm failing) did not build"
fi
if grep -q "which it must not need" "$tmp/install.log"; then
    cat "$tmp/install.log" >&2
    fail "the build ran node or npm"
fi
sgp="$root/bin/sgp"
[ -x "$sgp" ] || fail "cargo install made no $sgp"
echo "test-install: cargo install --path (no node_modules, no node, no npm) built sgp in $(( $(date +%s) - start )) s"

# 4. The installed binary, run with deploy/sgp.service's own ExecStart arguments (port 0 for
#    a free port), serves the page and Bootstrap's CSS byte for byte, plain and gzipped.
args=$(sed -n 's#^ExecStart=[^ ]*/sgp ##p' deploy/sgp.service)
[ -n "$args" ] || fail "deploy/sgp.service has no ExecStart=…/sgp line"
# shellcheck disable=SC2086 # the unit's arguments, split as systemd splits them (no quotes in them)
set -- $(echo "$args" | sed 's/--port [0-9]*/--port 0/')
"$sgp" "$@" > "$tmp/serve.out" 2> "$tmp/serve.err" &
server=$!
for _ in $(seq 100); do
    grep -q '^sgp listening on ' "$tmp/serve.out" && break
    kill -0 "$server" 2>/dev/null || { cat "$tmp/serve.err" >&2; fail "sgp $* exited at start"; }
    sleep 0.1
done
base=$(sed -n 's#^sgp listening on \(http://127\.0\.0\.1:[0-9]*/\)$#\1#p' "$tmp/serve.out")
[ -n "$base" ] || fail "sgp $* did not say it listens on http://127.0.0.1:PORT/ (it said: $(head -c 200 "$tmp/serve.out"))"
curl -fsS "$base" -o "$tmp/index.html" || fail "GET $base failed"
grep -q 'href="vendor/bootstrap.min.css"' "$tmp/index.html" || fail "GET $base: the page does not link vendor/bootstrap.min.css"
curl -fsS "${base}vendor/bootstrap.min.css" -o "$tmp/plain.css" || fail "GET ${base}vendor/bootstrap.min.css failed"
cmp -s "$tmp/plain.css" client/vendor/bootstrap.min.css || fail "the CSS served is not client/vendor/bootstrap.min.css"
curl -fsS --compressed "${base}vendor/bootstrap.min.css" -o "$tmp/gzip.css" || fail "GET ${base}vendor/bootstrap.min.css (gzip) failed"
cmp -s "$tmp/gzip.css" client/vendor/bootstrap.min.css || fail "the CSS served gzipped is not client/vendor/bootstrap.min.css"
kill "$server"
wait "$server" 2>/dev/null || true
server=
echo "test-install: the installed sgp, run as deploy/sgp.service runs it, serves the page and Bootstrap's CSS"

# 5. The systemd unit, with ExecStart pointed at the installed binary (verify checks that it
#    exists): `systemd-analyze verify` must say nothing (it exits 0 even on unknown keys or
#    bad values, and prints them), and the sandbox's exposure score stay at 1.5 or below.
if ! command -v systemd-analyze >/dev/null; then
    echo "test-install: ******** SKIPPED the systemd unit check: systemd-analyze is not installed (make test-install installs Debian's systemd) ********" >&2
    exit 0
fi
grep -q '^LimitNOFILE=[0-9]' deploy/sgp.service || fail "deploy/sgp.service sets no LimitNOFILE"
grep -q '^DynamicUser=yes' deploy/sgp.service || fail "deploy/sgp.service is not DynamicUser=yes"
grep -q '^NoNewPrivileges=yes' deploy/sgp.service || fail "deploy/sgp.service is not NoNewPrivileges=yes"
mkdir -p "$tmp/unit"
sed "s#^ExecStart=[^ ]*/sgp #ExecStart=$sgp #" deploy/sgp.service > "$tmp/unit/sgp.service"
out=$(systemd-analyze verify "$tmp/unit/sgp.service" 2>&1) || fail "systemd-analyze verify deploy/sgp.service: $out"
[ -z "$out" ] || fail "systemd-analyze verify deploy/sgp.service complained: $out"
score=$(systemd-analyze security --offline=true "$tmp/unit/sgp.service" 2>&1 | sed -n 's/.*Overall exposure level for sgp.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "systemd-analyze security gave no exposure level for deploy/sgp.service"
systemd-analyze security --offline=true --threshold=15 "$tmp/unit/sgp.service" > /dev/null 2>&1 \
    || fail "deploy/sgp.service's exposure level is $score, above 1.5 (systemd-analyze security --offline=true)"
echo "test-install: systemd-analyze verify passes deploy/sgp.service; exposure level $score (≤ 1.5)"

#!/usr/bin/env bash
# git smart HTTP (issue 18), in a private network namespace: a stock git
# client with nothing of guts installed clones and fetches from a node.
#   - a repository imported on a is replicated to b; `git clone` from b
#     over HTTP (protocol v2) passes `git fsck --strict` and has the
#     source's objects, refs and HEAD; OWNER/NAME.git works too;
#   - a new commit pushed to a through guts:// reaches b, and `git fetch`
#     from b over HTTP gets it (a pack of the new objects only);
#   - a partial clone (--filter=blob:none) checks out, fetching blobs by id;
#   - a protocol v0 client and a push are refused with a line naming
#     protocol v2 and guts:// respectively;
#   - --http-repos hides what it does not match;
#   - a table of bad requests (crafted with curl) is each answered with an
#     HTTP error and a message, and the node serves on;
#   - a second clone is read from the node's pack cache; a damaged cached
#     pack fails one clone with a message and is made again by the next; a
#     clone after a push starts with the cached pack's entries.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
command -v curl >/dev/null || { echo "no curl: skipped" >&2; exit 77; }
export PATH="$GUTS_BUILD:$PATH" # git-remote-guts, for the push through guts://

B=http://127.0.0.1:7173
src="$TMP/src"
make_repo "$src" 6
# enough refs that git gzips its fetch request (over 1 KiB of wants)
for i in $(seq 1 40); do git -C "$src" tag "t$i" "main~$((i % 6))"; done
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"
expect 0 "$GUTS" --data "$TMP/a" import alice/hidden "$src"
node_start a
node_start b --http 127.0.0.1:7173 --http-repos 'alice/re*'
wait_until 20 "a and b see each other" peers_at_least a 1
wait_until 60 "alice/repo replicated to b" repos_equal alice/repo "$TMP/a" "$TMP/b"
wait_until 60 "alice/hidden replicated to b" repos_equal alice/hidden "$TMP/a" "$TMP/b"

# ---- clone over HTTP from b
git clone -q "$B/alice/repo" "$TMP/clone" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "git clone over HTTP"; }
git -C "$TMP/clone" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck --strict of the clone"
git clone -q --mirror "$B/alice/repo.git" "$TMP/mirror" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "git clone --mirror of OWNER/NAME.git"; }
git -C "$TMP/mirror" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck --strict of the mirror"
same_repo "$src" "$TMP/mirror"
[ "$(git -C "$TMP/clone" rev-parse HEAD)" = "$(git -C "$src" rev-parse HEAD)" ] || fail "clone's HEAD differs"
[ "$(git -C "$TMP/clone" symbolic-ref HEAD)" = refs/heads/main ] || fail "clone's HEAD is not main"
git -C "$TMP/clone" rev-parse -q --verify refs/tags/v1 >/dev/null || fail "clone has no tag v1"
git -C "$TMP/clone" rev-parse -q --verify refs/remotes/origin/feature >/dev/null || fail "clone has no origin/feature"

# ---- the pack cache: the clones left their packs in b's DATA/git-packs; a
# second mirror clone is read from there; a damaged pack is refused with a
# message and removed, and the next clone writes it again
ls "$TMP"/b/git-packs/*.pack >/dev/null 2>&1 || fail "b cached no pack"
git clone -q --mirror "$B/alice/repo" "$TMP/mirror2" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "a mirror clone from the cache"; }
git -C "$TMP/mirror2" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck --strict of the mirror from the cache"
same_repo "$src" "$TMP/mirror2"
cached=$(ls -t "$TMP"/b/git-packs/*.pack | head -1)
printf 'damaged!' | dd of="$cached" bs=1 seek=30 conv=notrunc 2>/dev/null
git clone -q --mirror "$B/alice/repo" "$TMP/mirror3" 2>"$TMP/err" && fail "a clone of a damaged cached pack succeeded"
grep -q "cached pack was damaged" "$TMP/err" || { cat "$TMP/err" >&2; fail "no message naming the damaged cached pack"; }
[ ! -e "$cached" ] || fail "the damaged cached pack was kept"
rm -rf "$TMP/mirror3"
git clone -q --mirror "$B/alice/repo" "$TMP/mirror3" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "a mirror clone after the damaged pack"; }
same_repo "$src" "$TMP/mirror3"
[ -e "$cached" ] || fail "the pack was not cached again"

# ---- new commits: pushed to a through guts://, replicated, fetched from b
add_commit "$src" "after the clone"
add_commit "$src" "and another"
GUTS_DATA="$TMP/a" git -C "$src" push -q guts://alice/repo main 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "push to a"; }
wait_until 60 "the push replicated to b" repos_equal alice/repo "$TMP/a" "$TMP/b"
git -C "$TMP/clone" fetch -q origin 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "git fetch over HTTP"; }
[ "$(git -C "$TMP/clone" rev-parse origin/main)" = "$(git -C "$src" rev-parse main)" ] || fail "fetch did not get the new main"
git -C "$TMP/clone" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck --strict after the fetch"
git -C "$TMP/mirror" fetch -q 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "mirror fetch"; }
same_repo "$src" "$TMP/mirror"
# a mirror clone after the push starts with the last mirror clone's cached
# pack, its entries byte for byte, then the new objects
cp "$cached" "$TMP/old.pack"
git clone -q --mirror "$B/alice/repo" "$TMP/mirror4" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "a mirror clone after the push"; }
git -C "$TMP/mirror4" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck --strict of the mirror clone after the push"
same_repo "$src" "$TMP/mirror4"
old_entries=$(($(stat -c %s "$TMP/old.pack") - 32))
cmp -s -n "$old_entries" <(tail -c +13 "$TMP/old.pack") <(tail -c +13 "$TMP"/mirror4/objects/pack/*.pack) ||
  fail "the clone after the push did not start with the cached pack's entries"

# ---- partial clone: blobs come by id on checkout
git clone -q --filter=blob:none "$B/alice/repo" "$TMP/partial" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "partial clone"; }
[ "$(cat "$TMP/partial/README")" = "$(cat "$src/README")" ] || fail "partial clone's checkout differs"
git -C "$TMP/partial" fsck --no-progress >/dev/null 2>&1 || fail "git fsck of the partial clone"

# ---- shallow: --depth 1, then deeper, then a new commit into the shallow clone
git clone -q --depth 1 "$B/alice/repo" "$TMP/shallow" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "clone --depth 1"; }
[ "$(git -C "$TMP/shallow" rev-list --count HEAD)" = 1 ] || fail "a --depth 1 clone has $(git -C "$TMP/shallow" rev-list --count HEAD) commits"
[ -s "$TMP/shallow/.git/shallow" ] || fail "the --depth 1 clone is not shallow"
git -C "$TMP/shallow" fsck --no-progress >/dev/null 2>&1 || fail "git fsck of the shallow clone"
git -C "$TMP/shallow" fetch -q --depth 3 origin main 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "fetch --depth 3"; }
[ "$(git -C "$TMP/shallow" rev-list --count origin/main)" = 3 ] || fail "after fetch --depth 3: $(git -C "$TMP/shallow" rev-list --count origin/main) commits"
git -C "$TMP/shallow" fsck --no-progress >/dev/null 2>&1 || fail "git fsck of the deepened clone"
add_commit "$src" "for the shallow clone"
GUTS_DATA="$TMP/a" git -C "$src" push -q guts://alice/repo main 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "second push to a"; }
wait_until 60 "the second push replicated to b" repos_equal alice/repo "$TMP/a" "$TMP/b"
git -C "$TMP/shallow" fetch -q origin 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "fetch into the shallow clone"; }
[ "$(git -C "$TMP/shallow" rev-parse origin/main)" = "$(git -C "$src" rev-parse main)" ] || fail "the shallow clone did not get the new main"
[ "$(git -C "$TMP/shallow" rev-list --count origin/main)" = 4 ] || fail "the shallow clone has $(git -C "$TMP/shallow" rev-list --count origin/main) commits, want 4"
git -C "$TMP/shallow" fsck --no-progress >/dev/null 2>&1 || fail "git fsck of the shallow clone after a fetch"
git -C "$TMP/mirror" fetch -q 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "mirror fetch after the second push"; }
same_repo "$src" "$TMP/mirror"

# ---- protocol v0 and push: refused with a message that says why
if git -c protocol.version=0 clone -q "$B/alice/repo" "$TMP/v0" 2>"$TMP/err"; then fail "a v0 clone was served"; fi
grep -q "protocol version 2" "$TMP/err" || { cat "$TMP/err" >&2; fail "v0 refusal does not name protocol version 2"; }
if git -C "$TMP/clone" push -q "$B/alice/repo" HEAD:refs/heads/x 2>"$TMP/err"; then fail "a push over HTTP was taken"; fi
grep -q "guts://" "$TMP/err" || { cat "$TMP/err" >&2; fail "push refusal does not name guts://"; }

# ---- --http-repos and unknown repositories
if git clone -q "$B/alice/hidden" "$TMP/hidden" 2>"$TMP/err"; then fail "alice/hidden was served despite --http-repos"; fi
if git clone -q "$B/alice/nothere" "$TMP/nothere" 2>"$TMP/err"; then fail "an unknown repository was served"; fi

# ---- bad requests: each an HTTP error with a message, the node serves on
pkt() { printf '%04x%s' $((${#1} + 4)) "$1"; }
absent=0123456789abcdef0123456789abcdef01234567
post() { # post BODY-FILE
  curl -sS --max-time 10 -o "$TMP/body" -w '%{http_code}' -H 'Git-Protocol: version=2' \
    -H 'Content-Type: application/x-git-upload-pack-request' --data-binary @"$1" \
    "$B/alice/repo/git-upload-pack"
}
{ pkt "command=fetch"; printf 0001; pkt "want $absent"; pkt done; printf 0000; } >"$TMP/absent"
{ pkt "command=fetch"; printf 0001; printf '0032want 0123'; } >"$TMP/truncated"
{ pkt "command=fetch"; printf 0001; printf 'ffffwant'; } >"$TMP/huge"
{ printf 'zzzzcommand=fetch'; } >"$TMP/nonhex"
{ pkt "command=push"; printf 0001; printf 0000; } >"$TMP/unknown"
{ pkt "command=fetch"; printf 0001; pkt "want nothex"; printf 0000; } >"$TMP/badwant"
{ pkt "command=fetch"; printf 0001; pkt "frobnicate"; printf 0000; } >"$TMP/badarg"
{ pkt "command=fetch"; printf 0001; pkt "deepen-not x"; printf 0000; } >"$TMP/deepennot"
{ pkt "command=fetch"; printf 0001; pkt "deepen 0"; printf 0000; } >"$TMP/deepen0"
head -c 5000000 /dev/zero >"$TMP/oversized"
while read -r file status words; do
  got=$(post "$TMP/$file" || true)
  [ "$got" = "$status" ] || fail "$file: HTTP $got, want $status ($(head -c 200 "$TMP/body"))"
  grep -q "$words" "$TMP/body" || fail "$file: answer '$(head -c 200 "$TMP/body")' lacks '$words'"
done <<'TABLE'
absent 200 not our ref
truncated 400 truncated
huge 400 truncated
nonhex 400 malformed
unknown 400 unknown command
badwant 400 bad want
badarg 400 unexpected argument
deepennot 400 only --depth
deepen0 400 deepen takes
oversized 413 over
TABLE
get() { curl -sS --max-time 10 -o "$TMP/body" -w '%{http_code}' "$@" || true; }
while read -r path status words; do
  got=$(get -H 'Git-Protocol: version=2' "$B$path")
  [ "$got" = "$status" ] || fail "GET $path: HTTP $got, want $status"
  grep -q "$words" "$TMP/body" || fail "GET $path: answer '$(head -c 200 "$TMP/body")' lacks '$words'"
done <<'TABLE'
/alice/../etc/info/refs?service=git-upload-pack 400 not a repository
/alice/repo/extra/info/refs?service=git-upload-pack 400 not a repository
/alice/repo/info/refs?service=git-frob 403 smart HTTP
/alice/repo/info/refs 403 smart HTTP
/alice/repo/info/refs?service=git-receive-pack 403 guts://
/alice/repo2/info/refs?service=git-upload-pack 404 no repository
/alice/hidden/info/refs?service=git-upload-pack 404 not served
/alice/repo/objects/info/packs 404 not found
TABLE
# still serving
git ls-remote "$B/alice/repo" >"$TMP/ls" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "ls-remote after the bad requests"; }
grep -q "refs/tags/v1^{}" "$TMP/ls" || fail "ls-remote does not peel tags"
curl -sS --max-time 10 "$B/metrics" >"$TMP/metrics" || fail "/metrics"
for m in guts_git_info_refs_total guts_git_ls_refs_total guts_git_packs_total guts_git_refused_total guts_git_bad_requests_total; do
  v=$(awk -v m="$m" '$1 == m {print $2}' "$TMP/metrics")
  [ -n "$v" ] && [ "$v" -gt 0 ] || fail "/metrics: $m is '${v}', want > 0"
done
node_alive b
node_stop b
node_stop a
echo ok

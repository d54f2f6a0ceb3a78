#!/usr/bin/env bash
# A repository of 1,500 refs (branches, light and annotated tags) through
# the git bridge: `guts import`, `git push --mirror guts://`, `git clone
# --mirror guts://`, a fast-forward push of every branch and the fetch of
# it, a push batch mixing refused and up-to-date updates, and `guts export`
# each start a bounded number of git processes, whatever the number of refs
# (the helper used to start one `git rev-parse` per ref: 12 s for 1,496
# refs). Processes are counted by a `git` wrapper that logs what guts or
# the helper start (see below). After each step the result is compared
# with git's refs exactly. The later clone and fetch are over the helper's
# threshold for encoding the pack on several threads (src/git/fetch.c), one of them
# with a large object the pack writer streams itself: both must come out
# whole (git fsck --strict).
set -euo pipefail
. "$(dirname "$0")/lib.bash"
HELPER="$GUTS_BUILD/git-remote-guts"
[ -x "$HELPER" ] || { echo "no $HELPER: build it first" >&2; exit 1; }
REALGIT=$(command -v git)
# At most this many git processes per operation: what each starts today
# (2-8, see the comments at each step) with room, and far below one per ref.
PROCS_MAX=10
NB=600 NLT=450 NAT=450 # branches, light tags, annotated tags: 1,500 refs

# git puts its exec path first on PATH for everything it runs (the helper
# included), so the wrapper goes into a copy of the exec path: links to
# every git-core program but `git` itself. It logs only what guts or the
# helper started (its parent), not git's own subcommands.
exec_path=$("$REALGIT" --exec-path)
mkdir -p "$TMP/exec"
ln -s "$exec_path"/* "$TMP/exec/"
rm "$TMP/exec/git"
cat >"$TMP/exec/git" <<EOF
#!/bin/sh
case "\$(cat /proc/\$PPID/comm 2>/dev/null)" in
  git-remote-guts|guts) echo "\$*" >>"$TMP/git.log" ;;
esac
exec "$exec_path/git" "\$@"
EOF
chmod +x "$TMP/exec/git"
export GIT_EXEC_PATH="$TMP/exec" PATH="$TMP/exec:$GUTS_BUILD:$PATH"

# counted WHAT CMD...: run CMD, then require at most PROCS_MAX git processes started meanwhile.
counted() {
  local what=$1 n; shift
  : >"$TMP/git.log"
  expect 0 "$@"
  n=$(wc -l <"$TMP/git.log")
  [ "$n" -le "$PROCS_MAX" ] || { head -5 "$TMP/git.log" >&2; fail "$what started $n git processes, want <= $PROCS_MAX"; }
  echo "$what: $n git processes" >&2
}
refs_of() { "$REALGIT" -C "$1" for-each-ref --format='%(objectname) %(refname)'; }

# --- a repository of 1,500 refs, made by one fast-import ---------------------------
src="$TMP/src.git"
"$REALGIT" init -q --bare "$src"
/usr/bin/python3 - "$NB" "$NLT" "$NAT" <<'PY' | "$REALGIT" -C "$src" fast-import --quiet
import sys
nb, nlt, nat = (int(a) for a in sys.argv[1:4])
w = sys.stdout.buffer
commits = 60
for c in range(commits):
    w.write(b"commit refs/heads/main\nmark :%d\n" % (c + 1))
    w.write(b"committer T <t@guts.invalid> %d +0000\ndata 4\nc%02d\n" % (1700000000 + c, c))
    if c:
        w.write(b"from :%d\n" % c)
    body = b"line %d\n" % c
    w.write(b"M 100644 inline f%d.txt\ndata %d\n%s\n" % (c % 7, len(body), body))
for i in range(nb):
    w.write(b"reset refs/heads/b%04d\nfrom :%d\n\n" % (i, 1 + i % commits))
for i in range(nlt):
    w.write(b"reset refs/tags/l%04d\nfrom :%d\n\n" % (i, 1 + i % commits))
for i in range(nat):
    w.write(b"tag a%04d\nfrom :%d\ntagger T <t@guts.invalid> 1700000000 +0000\ndata 5\nt%04d\n"
            % (i, 1 + i % commits, i))
PY
[ "$(refs_of "$src" | wc -l)" -eq $((NB + NLT + NAT + 1)) ] || fail "precondition: $(refs_of "$src" | wc -l) refs"

# --- import: listing, reading and ref commands, not one per ref ---------------------
counted "guts import" "$GUTS" import alice/imported "$src"

# --- push --mirror: resolve all (1), rev-list + batch-check + batch (3) ----------------
counted "push --mirror" "$REALGIT" -C "$src" push -q --mirror guts://alice/repo
counted "clone --mirror" "$REALGIT" clone -q --mirror guts://alice/repo "$TMP/m1"
diff <(refs_of "$src") <(refs_of "$TMP/m1") >"$TMP/diff" || { head "$TMP/diff" >&2; fail "mirror clone's refs differ"; }
[ "$("$REALGIT" -C "$TMP/m1" symbolic-ref HEAD)" = refs/heads/main ] || fail "mirror clone's HEAD"
"$REALGIT" -C "$TMP/m1" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck of the mirror clone"

# --- every branch fast-forwarded, pushed without force: the ancestry of all
# 600 updates is answered by one cat-file, not a merge-base per ref ---------------------
/usr/bin/python3 - "$NB" <<'PY' | "$REALGIT" -C "$src" fast-import --quiet
import sys
w = sys.stdout.buffer
for i in range(int(sys.argv[1])):
    w.write(b"commit refs/heads/b%04d\ncommitter T <t@guts.invalid> 1800000000 +0000\n" % i)
    w.write(b"data 3\nff\nfrom refs/heads/b%04d^0\n" % i)
    w.write(b"M 100644 inline ff.txt\ndata 8\nff %04d\n" % i)
    if i == 0:  # over GUTS_LARGE_MIN (8 MiB): stored and sent piece by piece
        big = b"".join(b"large line %08d\n" % k for k in range(9 << 16))
        w.write(b"M 100644 inline big.txt\ndata %d\n" % len(big) + big + b"\n")
    w.write(b"\n")
PY
counted "push --all (600 fast-forwards)" "$REALGIT" -C "$src" push -q --all guts://alice/repo
counted "fetch of 600 updated refs" "$REALGIT" -C "$TMP/m1" fetch -q
diff <(refs_of "$src") <(refs_of "$TMP/m1") >"$TMP/diff" || { head "$TMP/diff" >&2; fail "refs differ after the fast-forwards"; }
"$REALGIT" -C "$TMP/m1" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck after the fetch"
counted "guts export" "$GUTS" export alice/repo "$TMP/exported"
diff <(refs_of "$src") <(refs_of "$TMP/exported") >/dev/null || fail "the export's refs differ"

# --- the helper's own rules in one batch of 600: every even branch back to
# its parent (not a fast-forward: refused), every odd one to itself (up to
# date), driven through the protocol as git would not send refused ones ------------
"$REALGIT" -C "$src" rev-parse $(printf 'refs/heads/b%04d^ ' $(seq 0 2 $((NB - 1)))) >"$TMP/parents"
for i in $(seq 0 $((NB - 1))); do
  b=$(printf 'b%04d' "$i")
  if ((i % 2 == 0)); then read -r p <&3; echo "push $p:refs/heads/$b"
  else echo "push refs/heads/$b:refs/heads/$b"; fi
done 3<"$TMP/parents" >"$TMP/batch"
echo >>"$TMP/batch"
: >"$TMP/git.log"
GIT_DIR="$src" "$HELPER" origin guts://alice/repo <"$TMP/batch" >"$TMP/replies"
n=$(wc -l <"$TMP/git.log")
[ "$n" -le "$PROCS_MAX" ] || fail "a batch of $NB updates started $n git processes"
[ "$(grep -c '^error refs/heads/b[0-9]* non-fast-forward$' "$TMP/replies")" -eq $((NB / 2)) ] ||
  { head "$TMP/replies" >&2; fail "want $((NB / 2)) non-fast-forward refusals"; }
[ "$(grep -c '^ok refs/heads/b[0-9]*$' "$TMP/replies")" -eq $((NB / 2)) ] || fail "want $((NB / 2)) ok"
rm -rf "$TMP/m1"
expect 0 "$REALGIT" clone -q --mirror guts://alice/repo "$TMP/m1"
diff <(refs_of "$src") <(refs_of "$TMP/m1") >/dev/null || fail "a refused update changed the store"
"$REALGIT" -C "$TMP/m1" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck of the last clone"
[ "$("$REALGIT" -C "$TMP/m1" cat-file -s refs/heads/b0000:big.txt)" -ge $((8 << 20)) ] ||
  fail "the last clone lacks the large file"
echo "ok"

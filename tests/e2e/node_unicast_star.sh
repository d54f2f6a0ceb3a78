#!/usr/bin/env bash
# Symmetric unicast with multicast blocked by the firewall (nftables drops
# 224.0.0.0/4): a node that hears a peer's announce by unicast answers it by
# unicast while the peer is live, so the usual configuration of a network
# without multicast, every node naming one hub with --peer, converges both
# ways. Star: hub h, spokes s1 s2 s3 each with --peer h; a repository
# imported on s1 reaches every node, a push on s2 comes back to s1. Chain:
# c2 --peer c1, c3 --peer c2, c4 --peer c3; imports at both ends reach the
# other end. (Before issue 14, --peer was one-way: the hub never answered.)
# With peer exchange the spokes learn each other from the hub and the star
# becomes a mesh, still by unicast alone.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
[ -x "$GUTS_BUILD/git-remote-guts" ] || fail "no $GUTS_BUILD/git-remote-guts: build it first"
export PATH="$GUTS_BUILD:$PATH"
block_multicast || { echo "no nft, or it refused the ruleset: skipped" >&2; exit 77; }

# peers_via NAME N VIA: NAME lists at least N peers, every one heard by VIA.
peers_via() {
  /usr/bin/python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["peers"]
sys.exit(0 if len(p) >= int(sys.argv[2]) and all(x["via"] == sys.argv[3] for x in p) else 1)' \
    "$TMP/$1/node/status.json" "$2" "$3" 2>/dev/null
}

src="$TMP/src"
make_repo "$src" 3
expect 0 "$GUTS" --data "$TMP/s1" import alice/repo "$src"

node_start h --listen 127.0.0.1:7200
for i in 1 2 3; do node_start "s$i" --listen "127.0.0.1:720$i" --peer 127.0.0.1:7200; done
wait_until 30 "the hub hears the three spokes by unicast" peers_via h 3 unicast
for i in 1 2 3; do wait_until 30 "s$i hears the hub by unicast" peers_via "s$i" 1 unicast; done
wait_until 60 "alice/repo reaches every node of the star" \
  repos_equal alice/repo "$TMP/s1" "$TMP/h" "$TMP/s2" "$TMP/s3"
# spokes come to hear each other too, by unicast only: peer exchange
# (PEERS from the hub), never multicast, which the firewall drops
for i in 1 2 3; do wait_until 30 "s$i hears every node by unicast" peers_via "s$i" 3 unicast; done
# the join lines name the path: the hub heard the spokes by unicast, a
# spoke its --peer as a seed
grep -q 'joined (unicast)' "$TMP/h.log" || fail "h: no 'joined (unicast)' line"
for i in 1 2 3; do
  grep -q 'joined (unicast, a seed (--peer))' "$TMP/s$i.log" || fail "s$i: no seed join line"
done

# A push on s2 comes back to s1.
git clone -q "$src" "$TMP/work"
add_commit "$TMP/work" "pushed on s2"
want=$(git -C "$TMP/work" rev-parse HEAD)
GUTS_DATA="$TMP/s2" git -C "$TMP/work" push -q guts://alice/repo main || fail "push into s2"
on_s1() {
  "$GUTS" --data "$TMP/s1" export alice/repo "$TMP/back" >/dev/null 2>&1 &&
    [ "$(git -C "$TMP/back" rev-parse refs/heads/main)" = "$want" ] || { rm -rf "$TMP/back"; false; }
}
wait_until 60 "the push on s2 reaches s1" on_s1
wait_until 60 "the star agrees after the push" \
  repos_equal alice/repo "$TMP/s1" "$TMP/h" "$TMP/s2" "$TMP/s3"
for n in h s1 s2 s3; do node_stop "$n"; done

# Chain c1 <- c2 <- c3 <- c4 (each names the one before it).
make_repo "$TMP/left" 2
make_repo "$TMP/right" 4
expect 0 "$GUTS" --data "$TMP/c1" import left/repo "$TMP/left"
expect 0 "$GUTS" --data "$TMP/c4" import right/repo "$TMP/right"
node_start c1 --listen 127.0.0.1:7211
for i in 2 3 4; do node_start "c$i" --listen "127.0.0.1:721$i" --peer "127.0.0.1:721$((i - 1))"; done
wait_until 90 "left/repo reaches the far end of the chain" \
  repos_equal left/repo "$TMP/c1" "$TMP/c2" "$TMP/c3" "$TMP/c4"
wait_until 90 "right/repo reaches the near end of the chain" \
  repos_equal right/repo "$TMP/c4" "$TMP/c3" "$TMP/c2" "$TMP/c1"
export_check c4 left/repo "$TMP/left"
export_check c1 right/repo "$TMP/right"
for i in 1 2 3 4; do node_stop "c$i"; done
echo "ok"

#!/usr/bin/env bash
# --peer: two nodes that share no multicast group (each joins its own) still
# find each other and replicate, because every announce is also sent by
# unicast to the --listen address named with --peer.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

src="$TMP/src"
make_repo "$src" 3
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"
node_start a --group 239.255.71.1:7101 --listen 127.0.0.1:7201 --peer 127.0.0.1:7202
node_start b --group 239.255.71.2:7102 --listen 127.0.0.1:7202 --peer 127.0.0.1:7201
wait_until 20 "a and b find each other by unicast" peers_at_least b 1
wait_until 60 "alice/repo replicated to b" repos_equal alice/repo "$TMP/a" "$TMP/b"
export_check b alice/repo "$src"
node_stop a
node_stop b
echo "ok"

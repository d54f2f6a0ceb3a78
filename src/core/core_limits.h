/* core_limits.h - every bound of the core, each with why: view, sketch,
 * announces, reach, probes, sessions, serving, pending refs and deltas.
 * Included by core_internal.h (private to src/core/node*.c).
 */
#ifndef GUTS_CORE_LIMITS_H
#define GUTS_CORE_LIMITS_H

/* Peers kept in the view (partial membership, docs/architecture.md
 * "Membership"): a node needs a few sources per repository, not the whole
 * group; 256 entries (~250 bytes each with one repository) bound a core's
 * memory whatever the group size, and a flood of forged node ids only
 * churns the view. When it is full, a new sender enters only if its
 * announce is useful (it has a repository state we would pull), in place
 * of the least useful, stalest entry. */
#define CORE_VIEW_MAX 64
/* Peers sampled for eviction from a full view (see view_evict). */
#define CORE_VIEW_SAMPLE 8
/* Group-size sketch: the k smallest hashes of sender ids heard (k minimum
 * values, Bar-Yossef et al. 2002), in two epochs. Exact below k senders;
 * above, standard error ~1/sqrt(k-2): 6.3% at 256. Each hash is kept as
 * its top 32 bits (2 KiB per core, not 4: 20 MB of a 10,000-node
 * guts-sim): truncation keeps their order, the k-th smallest of N senders
 * lies near 2^32 x k / N, so the estimate moves by ~N / (k x 2^32), and
 * two senders share a value with odds ~N^2 / 2^33 in the whole group (a
 * sender less counted). */
#define CORE_KMV_K 256
/* Once the current epoch's sketch is full, each insertion moves the
 * estimate by ~1/k: it is recomputed (a merge of both epochs) after this
 * many insertions, not after each (at 10,000 nodes a core inserts ~800
 * times an epoch, and the merges were 4% of guts-sim's time). Error
 * added: at most ~8/k = 3%, under the sketch's own 6%. */
#define CORE_KMV_STALE 8
/* Longest sketch epoch: twice the longest announce interval (10 min). */
#define CORE_EPOCH_MAX_MS 1200000
/* Announces of the whole group per second, at most (with the byte budget,
 * the tighter wins): a receiver's cost is per datagram more than per byte,
 * so small announces must not raise the rate it pays. 20 a second is what
 * a memberlist node receives (gossip to 3 every 200 ms, plus probes). */
#define CORE_GROUP_RATE 20
/* A change is announced at once unless this many announces of the same
 * state were heard already by multicast (Trickle's redundancy constant,
 * RFC 6206): they are sources enough, and every extra announce reaches the
 * whole group. Announces heard by unicast do not count: each reached only
 * its sender's unicast peers, and ours may be the only path to our own
 * (without multicast, guts-sim seed 2 at 1,000 nodes: an update stalled
 * for 1.5 s at a quarter of the nodes until the regular announces). */
#define CORE_ANNOUNCE_REDUNDANT 32
/* A change others already announced goes out after a random wait of up to
 * this, ms, and only if still not redundant then (Trickle's listen period):
 * nodes that fetched an update at the same moment do not all announce it. */
#define CORE_ANNOUNCE_LISTEN_MS 200
/* A node's first announce (its hello) goes out at a random time within
 * [CORE_HELLO_MS / 2, CORE_HELLO_MS) of its start, so a node joining a
 * small group is heard at once, not after a whole interval; unless by then
 * it has heard CORE_HELLO_GROUP - 1 other members, who told it what they
 * hold. The window's lower bound is what limits a large group's start-up:
 * once hellos come faster than CORE_HELLO_GROUP per CORE_HELLO_MS / 2,
 * every starting node has heard that many when its own is due, whatever the
 * start rate. Windows from 0 ms let the nodes with the shortest ones always
 * speak: hellos grew as sqrt(CORE_HELLO_GROUP x start rate / window) (188
 * when 1,000 nodes start within a second, ~590 at 10,000, ~2,000 at
 * 100,000, each to every started node: the 100,000-node start-up did not
 * end in 15 minutes); now 61, 129 and 218 at 1,000, 10,000 and 30,000
 * (guts-sim, issue 19). */
#define CORE_HELLO_MS 100
#define CORE_HELLO_GROUP 4
/* A member of a small group (at most CORE_REPLY_GROUP estimated members)
 * that has run one base interval answers a newcomer's first announce with
 * its own, with probability min(1, CORE_REPLY_K / members), at once and
 * whatever its last announce: the newcomer, which pulls only once it knows
 * who holds what, hears it in a round trip. (mDNS delays answers by 20-120
 * ms, RFC 6762 section 6, to suppress duplicates; nothing here suppresses
 * an answer, so a random delay of up to 20 ms and the 150 ms gap after the
 * member's last announce only made the newcomer wait: ~10 ms and, one
 * time in ~7, ~75 ms.) In a
 * larger group someone announces every 1 / CORE_GROUP_RATE s anyway, so no
 * one answers, and a group starting at once (nobody has run an interval)
 * triggers no answers. */
#define CORE_REPLY_GROUP 20
/* ... and only while the group is quiet: fewer than this many announces
 * heard in the current and the previous second. A group that sends more
 * tells a newcomer what it needs within ~100 ms anyway, and a large group
 * starting (its size not yet known to anyone) is never quiet. */
#define CORE_REPLY_QUIET 10
#define CORE_REPLY_K 3
/* The answer to a newcomer is followed by the rest of the node's pages, one
 * per CORE_SWEEP_GAP_MS, so a fresh node learns 1,000 repositories (~36
 * pages) in ~2 s instead of ~36 base intervals. 50 ms is the whole group's
 * announce rate (CORE_GROUP_RATE, 20/s), and only a small quiet group
 * answers newcomers at all; the round-robin cursor moves on as for any
 * announce, so the sweep costs a group nothing but sending the same pages
 * sooner. */
#define CORE_SWEEP_GAP_MS (1000 / CORE_GROUP_RATE)
/* States counted per repository for that: a new state, the one before it,
 * intermediate ones (objects fetched, refs not yet) and a concurrent write;
 * the least recently heard makes room. */
#define CORE_SEEN_STATES 4
/* Expiry is checked at most once per this fraction of the base interval:
 * a peer may outlive its deadline by that much, and the O(peers) scan
 * stays rare in large groups. */
#define CORE_EXPIRY_SLACK_DIV 2
/* Failure detection (node_probe.c). A member paces its probers: its ACKs
 * hand out turns CORE_PROBE_TARGET_MS apart, the first free one at least a
 * target ahead and at most CORE_PROBE_TURNS ahead, so the holders of a
 * member together probe it once per target, whatever their number. A
 * holder without a turn (more holders than turns) is sent a random time up
 * to CORE_PROBE_MAX_MS: 2 minutes on average, as long as the load-scaled
 * periods of before (issue 19), so the holders of a member in thousands of
 * views cost what they cost then.
 * A new view entry is first probed within CORE_PROBE_FIRST_MS; a holder
 * waits at least max(target, npeers x CORE_PROBE_SPACING_MS) between two
 * rounds of one peer, and says so in its PROBE: with a full view, 5.8 s,
 * so a member held by one node is still found within 10 s (at 250 ms,
 * 16 s: members with few holders were found after 12-13 s in guts-sim
 * churn at 1,000 nodes). A node's own rounds are then at most 11 a second, and the
 * turns keep the average far below: about 0.35 a second per node at 10,000
 * nodes (guts-sim churn, issue 19). */
#define CORE_PROBE_TARGET_MS 2000
#define CORE_PROBE_FIRST_MS 8000
#define CORE_PROBE_SPACING_MS 90
#define CORE_PROBE_TURNS 60
#define CORE_PROBE_MAX_MS 240000
_Static_assert(CORE_PROBE_TURNS < 128, "a core's turns fit 128 bits");
/* A member remembers the last this many probers it handed a round (56
 * bytes each): when a turn is given back, it moves the latest of them
 * whose round is further off into it with an ACK of its own (node_probe.c,
 * "Given-back turns"), and a PROBE from one of them within a round's
 * length is a retry that gets the same time (pace_next). */
#define CORE_PROBE_FAR 8
/* A RELEASE, and the ACK that moves a prober into a given-back turn, are
 * sent this many times while one of our last 8 answered rounds took a
 * retry (once otherwise): a lost one leaves a turn nobody comes to, and
 * at 20% loss all 3 copies are lost with probability 0.008 (node_probe.c,
 * "Given-back turns"). Both are idempotent at the receiver. */
#define CORE_TURN_COPIES 3
/* A round: PROBE every CORE_PROBE_RETRY_MS, CORE_PROBE_TRIES in all (2 s):
 * a live peer at 20% loss misses a PROBE or its ACK with probability
 * 0.36, all 20 with 1.3e-9 (15 tries 200 ms apart, 2e-7, left one live
 * node dropped by one view in a 60 s run of 10,000 nodes at 20% loss,
 * ~3e5 rounds; guts-sim, issue 19). A live peer answers the first: the
 * tries cost only rounds that go unanswered, and their spacing costs
 * nothing. A crash is dropped by its last holder after the wait for the
 * first round, this round and the confirming one below: with 150 ms and
 * 75 ms (3 + 1.5 s), writes going on, the wait alone left 5.4 s of the
 * 10 s target and crashes were found after 10-11 s (guts-sim churn at
 * 1,000 and 10,000 nodes, issue 19). */
#define CORE_PROBE_RETRY_MS 100
#define CORE_PROBE_TRIES 20
/* A holder told of a death by a DEAD notice confirms it with a round of its
 * own, PROBEs this many ms apart (1 s: the accuser already waited 2 s),
 * before it drops the member: one prober's failed round (all 20 tries
 * lost, 1.3e-9 at 20% loss) then drops a live member from one view, not
 * from every view that did not hear it for 3 s (6,293 of them once, in a
 * guts-sim run at 10,000 nodes and 20% loss, issue 19). */
#define CORE_PROBE_CONFIRM_MS 50
/* ... unless it heard the member within this many ms. */
#define CORE_PROBE_CONFIRM_QUIET_MS 1000
/* ACKs sent per CORE_PROBE_ANSWERS_MS at most (a forged PROBE flood costs
 * one ACK each, never more bytes, and only this many). Above what a member
 * in every view of a 100,000-node group is asked at start-up: each holder's
 * first round comes within CORE_PROBE_FIRST_MS, 1.25 x N PROBEs per 10 s.
 * At 20,000, 30,000 nodes overran it: the unanswered holders retried 20
 * times and declared the member dead (guts-sim: 803 false DEAD in 20
 * virtual s, 4.6x the events per node of 10,000 nodes; issue 19). */
#define CORE_PROBE_ANSWERS_MAX 200000
#define CORE_PROBE_ANSWERS_MS 10000
/* A DEAD notice is multicast this many times, this many ms apart: a
 * holder misses all 16 at 20% loss with probability 7e-12. At 8 (3e-6)
 * a 100,000-node group missed: 50 members in ~44,000 views each, 2.2
 * million holders, 6 missed every copy and held the dead member until
 * their own next round, minutes later (guts-sim, issue 19). Close together,
 * because most holders of a popular member probe it only every minute or
 * two and learn of its death from the notice alone: a prober that left
 * or crashed 0.2 s after its first copy (churn) left 4% of them holding a
 * dead member for 12 s more at 150 ms (guts-sim, issue 19). */
#define CORE_DEAD_COPIES 16
#define CORE_DEAD_GAP_MS 50
#define CORE_DEAD_QUEUE 8
/* Peer exchange (node_reach.c). A PEERS datagram carries a random sample
 * of this many live peers: enough that a node hearing one learns a few
 * ways into another segment, small enough (~250 bytes with IPv4) to cost
 * less than an announce. */
#define CORE_PEX_SAMPLE 8
/* A peer heard by unicast gets PEERS when first heard that way and then
 * once every this many announce intervals: membership changes slowly, and
 * peers the sample missed come in the next one. */
#define CORE_PEX_EVERY 8
/* A learned address that has not answered this many announces (one per
 * interval) is given up ... */
#define CORE_LEARNED_TRIES 5
/* ... and not tried again, even when named again, for this many intervals:
 * a hostile member naming a victim over and over gets it at most
 * CORE_LEARNED_TRIES announces per CORE_LEARNED_QUIET intervals per node. */
#define CORE_LEARNED_QUIET 60
/* A learned address no peer has named for this many intervals is
 * forgotten (unless its node is live: then the view keeps it). */
#define CORE_LEARNED_TTL 30
/* Prompt unicast answers (node_reach.c, reach_answer): announces sent, in
 * all, per base interval to peers heard by unicast that lack what we hold,
 * at most one per peer per announce interval. A hub that a few hundred
 * nodes name with --peer meets each in seconds, not in one of its (long)
 * announce intervals; and an open node fed forged sources reflects at most
 * this many announces a second (24 KB/s at the default interval). */
#define CORE_ANSWER_MAX 20
/* Repositories remembered per peer: bounds memory per peer; a node carrying
 * more is still served, we just track only the first ones it announced. */
#define CORE_PEER_REPOS_MAX 4096
/* Repositories the core tracks locally (one cache entry each). */
#define CORE_REPOS_MAX 65536
/* Immediate announces after a change are at most one per this many ms (mDNS
 * sends a record at most once a second; 150 ms keeps propagation fast while
 * a burst of 100 imports costs at most ~7 datagrams a second). */
#define CORE_ANNOUNCE_GAP_MS 150
/* Random delay before an urgent pull, ms: spreads the herd of nodes that
 * heard the same announce (mDNS waits 20-120 ms before answering). The herd
 * is at most the peers we know, so the window is this many ms per peer, up
 * to CORE_PULL_STAGGER_MS: a node alone with one peer (a fresh node joining,
 * two machines) pulls within 5 ms instead of 50 on average. */
#define CORE_PULL_STAGGER_MS 100
#define CORE_PULL_STAGGER_PER_PEER_MS 5
/* Anti-entropy: a repository that differs from a peer without evidence that
 * the peer has more is pulled anyway after this many base intervals
 * (randomised x[1,2]) - Demers' backstop, so convergence never depends on
 * the heuristic. */
#define CORE_ANTI_ENTROPY_INTERVALS 3
/* Each anti-entropy pull that brings nothing doubles the next delay, up to
 * 2^this: a peer that is merely behind costs ~1 idle session a minute. */
#define CORE_ANTI_ENTROPY_BACKOFF 5
/* A session with no frame for this long is abandoned (a stuck peer must not
 * hold a session slot forever). */
#define CORE_SESSION_IDLE_MS 30000
/* A first copy is split between peers (pull_plan.h) when at least
 * CORE_SPLIT_MIN objects are missing: below that, one session's start-up
 * (a few round trips) is most of the time, and more peers only add them.
 * From CORE_SPLIT_MANY missing objects on, the plan has 256 parts instead of
 * 16, so a slow peer's part is small and the last part ends soon after the
 * others. Other peers holding the repository join a running plan at once,
 * one per event; when none is free, one is looked for every
 * CORE_SPLIT_JOIN_MS while parts are free. A session on a part that hears no frame
 * for CORE_SPLIT_STALL_MS is stalled: it ends and its part goes to another
 * peer (a whole pull waits CORE_SESSION_IDLE_MS: it has nowhere to go).
 * Each stall doubles the wait of the plan's next sessions, up to
 * CORE_SESSION_IDLE_MS: the core sees whole frames only, and on a slow
 * link one frame (up to 2 MiB) may take longer than 5 s; without the
 * doubling, every session would stall on the same frame. */
#define CORE_SPLIT_MIN 1024
#define CORE_SPLIT_MANY 4096
#define CORE_SPLIT_JOIN_MS 250
#define CORE_SPLIT_STALL_MS 5000
/* A session with no part free waits for the plan's other sessions (their
 * objects are the bases of deltas it holds) at most this long after its
 * last frame, well under a server's CORE_SESSION_IDLE_MS; then it asks its
 * peer for the bases still missing (some may then come twice). */
#define CORE_SPLIT_WAIT_MS 15000
/* A pull that ended well leaves its stream open ("parked") for the next
 * pull from the same peer: hundreds of repositories then travel over
 * max_sessions connections instead of one connection each, which the
 * server's per-source connection rate (10/s) would throttle to 10 pulls a
 * second. The next pull usually follows within milliseconds; 2 s keeps a
 * server's keyless session and connection slot far below its 30 s idle. */
#define CORE_PARK_MS 2000

/* How many of the smallest session idle deadlines the glance keeps
 * (node_sync.c): a server that thousands pull from rescanned its thousands
 * of sessions whenever the one with the earliest deadline went or became
 * active; with the next ones kept, once per this many such changes. */
#define CORE_GLANCE_LOW 16
/* What a server at its session limit asks the puller to wait (ERROR busy,
 * retry-after): a small repository's session lasts milliseconds, so a slot
 * is likely free by then; a puller doubles it for each busy answer in a
 * row, up to 2^CORE_BUSY_BACKOFF_MAX times, and spreads it by [0.5, 1.5)
 * with the core's seeded RNG so the pullers it turned away don't return
 * together. */
#define CORE_BUSY_RETRY_MS 100
/* A repository of at most CORE_SMALL_SERVE_OBJECTS objects is served to
 * CORE_SMALL_SERVES x max_sessions peers at once (others: max_sessions);
 * a serve past max_sessions queues at most CORE_SMALL_SERVE_QUEUE ids
 * (80 KiB), so the extra slots pin ~1 MiB in all.
 * A large group learns of a new state from the ~CORE_ANNOUNCE_REDUNDANT
 * nodes that announced it, and pulls it from them alone: with 4 serves
 * each, an update reached ~10,000 nodes a second in guts-sim at 10,000 to
 * 100,000 nodes (the rest answered busy, backing off up to 1.6 s), 10 s
 * for 100,000; with 16, ~40,000 a second at 30,000 nodes (convergence p99
 * 3.5 s -> 1.2 s, 13% fewer events; issue 19). Serving a small repository
 * pins little; a large one keeps the lower cap. */
#define CORE_SMALL_SERVE_OBJECTS 1024
#define CORE_SMALL_SERVES 4
/* ... and at most this many in all (but max_sessions): the daemon's
 * connection table holds 2 x 16 sessions (--max-sessions' maximum) */
#define CORE_SMALL_SERVES_MAX 16
#define CORE_SMALL_SERVE_QUEUE (4 * CORE_SMALL_SERVE_OBJECTS)
#define CORE_BUSY_BACKOFF_MAX 4
/* Bytes the core queues on one stream per call before waiting for
 * on_stream_writable: bounds the driver's buffers (backpressure). */
#define CORE_SEND_BUDGET (1u << 20)
/* Objects per OBJECTS frame: a frame also stays under the frame cap; many
 * small objects amortise the envelope. */
#define CORE_OBJS_PER_FRAME 1024
/* Records per OBJECTS frame (stores that read records): each frame costs the
 * receiver one write transaction (two fsyncs), so frames carry up to
 * 2 x CORE_CHUNK of records; zlib's average ~600 bytes fill that at ~3500.
 * (16384 for small objects cut 202,000 small objects from 47 commits to 13
 * but not the time, and raised the receiver's memory.) */
#define CORE_RECS_PER_FRAME 4096
/* Encoded bytes of one record-form object besides its payload, at most:
 * array 1, id 22, type 1, enc 1, size 9, base 22, bin header 5 (61). */
#define CORE_REC_OVERHEAD 64
/* Objects larger than this go as OBJECT_CHUNK frames of this size. 1 MiB
 * leaves room under the 4 MiB default frame cap and bounds per-frame memory. */
#define CORE_CHUNK (1u << 20)
/* Chunk bytes a puller gathers before one staging write (one write
 * transaction, two fsyncs): 4 MiB keeps the commits of a 500 MB object at
 * ~125 while the buffer and LMDB's dirty pages stay a few MiB. At most this
 * much is fetched again after a crash. */
#define CORE_STAGE_BATCH (4u << 20)
/* Content bytes that the compressed records of one OBJECTS frame may decode
 * to: bounds the receiver's work per frame (a zstd frame can expand ~30000x)
 * while leaving room for well-compressed objects; the sender keeps under it
 * and sends a larger object alone, as chunks of its content. */
#define CORE_FRAME_DECODED_MAX (64u << 20)
/* Delta records held by a puller until their base arrives (bytes of
 * payload plus the entry's own, CORE_PEND_ENTRY_COST; records are
 * compressed, zlib's whole history is 7 MB): over
 * this, further ones are dropped (counted) and fetched by a later session.
 * Small enough for the daemon's 64 MB RssAnon bound. */
#define CORE_PENDING_BYTES_MAX (16u << 20)
/* Memory of one held record besides its payload: the entry, its index slot
 * (2 per entry) and malloc's header. */
#define CORE_PEND_ENTRY_COST (sizeof(pend_rec) + 2 * sizeof(size_t) + 16)
/* Records a server reads ahead of the id it is at: a delta and its bases
 * not sent yet. The store bounds a chain at 50 deltas (docs/storage.md);
 * past this the rest go in walk order and the receiver holds what comes
 * before its base. */
#define CORE_AHEAD_MAX 64
#define CORE_AHEAD_MIN 4
/* Ids a whole-repository walk remembers as sent ahead (~42 bytes each at
 * load 1/2): past this, bases go in walk order (the receiver holds what
 * comes early), so a huge repository costs the server at most ~11 MB. */
#define CORE_EARLY_MAX (256u << 10)
/* Ids a RANGE job reads from the store at once: one read
 * transaction per this many objects sent, 5 KiB per job being sent. */
#define CORE_JOB_BATCH 256
/* Ids queued on one serving stream (BLOOM answers and WANTs): 20 bytes
 * each, so at most 40 MiB per session in the worst case; ALL ranges are
 * walked lazily and take no queue. */
#define CORE_SERVE_QUEUE_MAX (2u << 20)
/* WANT exchanges in one session for missing closure pieces: a commit's
 * closure is found level by level; past this, refs stay pending for the
 * next session. A round that brings no object ends the session at once
 * (advance): an honest server holds the closure of every ref it sends, so
 * only a broken or hostile peer, or a record damaged in transit, asks for
 * more rounds than progress. */
#define CORE_WANT_ROUNDS_MAX 64
/* Ref records received in one session / pending per repository: bounds
 * memory (~100 bytes each); more arrive in the next session. */
#define CORE_REFS_PENDING_MAX 65536
/* Distinct pending records per ref name: a record whose closure never
 * completes (a corrupted or forged target) must not shadow a valid one of
 * the same name, so records are kept per (name, record); past this, the
 * record tried most often makes room (a forged flood of one name stays
 * bounded). */
#define CORE_REFS_PER_NAME_MAX 4
/* Sessions a pending record may end with its closure still incomplete
 * before it is dropped (only the pass at the end of a session that reached
 * its refs phase counts, not those between WANT rounds): a deep but honest closure is filled over
 * at most a few sessions of up to CORE_WANT_ROUNDS_MAX levels each. Dropping is safe: a peer that
 * has the record applied still differs in its refs digest, so the record comes back with the next
 * pull, with a fresh count. */
#define CORE_REF_TRIES_MAX 4
/* Commits walked when asking whether one is an ancestor of another: past
 * this the answer is "no", which keeps a conflict record: safe. */
#define CORE_ANCESTRY_MAX 100000
/* Ids remembered as "closure complete" per repository before the cache is
 * dropped and rebuilt (24 bytes each: ~50 MiB at most). */
#define CORE_COMPLETE_MAX (2u << 20)
/* Objects a pull's closure tracker counts (node_closure.c) before it gives
 * up and leaves the closures to the walk: ~45 bytes each with its index,
 * plus 8 per link waiting (~16 MiB at most). */
#define CORE_TRACK_MAX (1u << 18)
/* Objects remembered as refused for their size (20 bytes each), so each is
 * logged once and not asked for again by WANTs; past this the set starts
 * over (at worst a line more per object). */
#define CORE_REFUSED_MAX 1024
/* A server checks a puller's claim that an object it sent is damaged
 * (DAMAGED) at most once per this many ms, plus one ms per this many bytes
 * of the object checked (a 1 GiB object: 16 s more), node-wide: a lying
 * puller costs at most about a tenth of a CPU (a check decodes and hashes
 * some 650 MB/s). A claim in between is not checked (an honest puller
 * meets the object again and says it again). */
#define CORE_DAMAGED_CHECK_MS 100
#define CORE_DAMAGED_CHECK_BYTES_PER_MS (64u << 10)
/* Actions waiting in the queue: every event produces a bounded number; this
 * is only a guard against a bug turning into unbounded memory. */
#define CORE_ACTIONS_MAX 100000

#endif

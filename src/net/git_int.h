/* git_int.h - what the files of git smart HTTP (git*.c) share: the
 * service's state, one pack upload, the answer buffer and the replies.
 * Private to src/net/.
 */
#ifndef GUTS_NET_GIT_INT_H
#define GUTS_NET_GIT_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "fetch.h"
#include "net.h"
#include "packcache.h"

#define CT_ADVERT "application/x-git-upload-pack-advertisement"
#define CT_RESULT "application/x-git-upload-pack-result"
#define CT_TEXT "text/plain; charset=utf-8"

/* Tag chains longer than this are malformed (as fetch.c). */
#define PEEL_DEPTH_MAX 32

typedef struct git_buf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} git_buf;

struct git_reader;

/* One pack being written: the thread's job. */
typedef struct git_upload {
    struct guts_net_git *g;
    pthread_t th;
    atomic_int done; /* the thread has finished: join it */
    int wfd;         /* the pipe's write end (the thread closes it) */
    char key[GUTS_KEY_MAX + 1];
    git_buf prefix; /* sent before the pack: the acknowledgments section */
    guts_id *wants, *haves;
    size_t nwants, nhaves;
    int thin, include_tag;
    uint64_t blob_limit;
    uint32_t depth;          /* deepen N; 0: none */
    guts_id *client_shallow; /* the client's "shallow" lines */
    size_t nclient_shallow;
    int header_sent; /* "packfile" went out: errors go on band 3 now */
    int client_gone; /* a write to the client failed */
    uint64_t pack_bytes;
} git_upload;

/* Clone packs being written into DATA/git-packs at once: one per pack
 * thread and the prepare thread's. */
#define GIT_BUILDS_MAX (GUTS_NET_GIT_UPLOADS_MAX + 1)

/* A clone pack being written into the cache (by a pack thread or the
 * prepare thread): a clone of the same request that arrives meanwhile
 * streams the file as it grows instead of building it a second time. */
typedef struct git_build {
    char name[80];  /* its cache entry (guts_packcache.name) */
    char tmp[4200]; /* the file being written */
    uint64_t size;  /* bytes written so far */
    int state;      /* 0 writing, 1 whole, -1 given up */
    unsigned users; /* its writer and followers; 0: a free slot */
} git_build;

/* A repository whose clone packs are to be prepared. */
typedef struct git_prep {
    char key[GUTS_KEY_MAX + 1];
    uint64_t changed_ms; /* CLOCK_MONOTONIC ms of its last change */
    uint64_t quiet_ms;   /* prepared this long after it */
    int pending;
} git_prep;

/* The answer's side of one pack: the pipe's read end. */
typedef struct git_reader {
    struct guts_net_git *g;
    struct MHD_Connection *conn;
    int fd;
    ev_io io;
    int suspended, closing;
    struct git_reader *next;
} git_reader;

typedef struct guts_net_git {
    guts_net_node *n;
    git_upload *ups[GUTS_NET_GIT_UPLOADS_MAX];
    git_reader *readers;
    guts_net_git_stats stats; /* prepared, followed: under lock */
    /* shared with the pack and prepare threads, under lock: */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a build grew or ended, a repository changed, stop */
    git_build builds[GIT_BUILDS_MAX];
    git_prep *preps;
    size_t npreps, cappreps;
    int stop;
    unsigned serving; /* pack threads running (a follower of a build among them) */
    uint64_t served_ms; /* git_mono_ms when the last one ended; 0: none yet */
    int prep_gave_way;  /* the prepare thread's build ended for a client's (git_build_wrote) */
    pthread_t prep_th;
    int prep_running;
} guts_net_git;

/* CLOCK_MONOTONIC in ms (the pack and prepare threads). */
static inline uint64_t git_mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* A POST's body, gathered across the handler's calls. */
typedef struct git_req {
    guts_net_http_ctx base;
    git_buf body;
    int too_big;
} git_req;

/* ---- git.c ---- */

/* Append n bytes of d to b; out of memory sets b->oom (checked once, when
 * the answer is sent: git_reply_buf). */
void git_buf_put(git_buf *b, const void *d, size_t n);

/* One data pkt-line of printf text (which ends with its own LF). */
void git_buf_pkt(git_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Release b's bytes and empty it. */
void git_buf_free(git_buf *b);

/* A protocol error as git shows it: one "ERR" pkt-line ("remote error: ..."). */
int git_reply_err(guts_net_git *g, struct MHD_Connection *conn, unsigned status, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

/* Queue b as a 200 upload-pack result (500 when building it ran out of
 * memory). */
int git_reply_buf(guts_net_git *g, struct MHD_Connection *conn, git_buf *b);

/* ---- git_refs.c ---- */

/* Answer command=ls-refs of r; its arguments are body[pos..len). */
int git_ls_refs(guts_net_git *g, struct MHD_Connection *conn, guts_repo *r, const uint8_t *body,
                size_t len, size_t pos);

/* ---- git_upload.c ---- */

/* Release u and what it holds (after its thread, if any, was joined). */
void git_upload_free(git_upload *u);

/* Join the threads that finished; the number still running. */
size_t git_uploads_reap(guts_net_git *g);

/* Start a pack thread for u and queue the answer that streams its pipe.
 * u is the thread's from here (or freed on failure). */
int git_upload_start(guts_net_git *g, struct MHD_Connection *conn, git_upload *u);

/* Write q's pack on r (guts_git_serve). With pc, a clone's cache entry
 * whose build slot git_build_claim gave this thread, the pack is written
 * there too (started from the repository's last cached pack), followers
 * see it grow, and it is committed or given up at the end. */
int git_serve_pack(guts_net_git *g, guts_repo *r, const guts_git_serve_req *q,
                   guts_packcache *pc, int slot, char *err);

/* ---- git_prepare.c ---- */

enum { GIT_CLAIM_NONE, GIT_CLAIM_CACHED, GIT_CLAIM_FOLLOW, GIT_CLAIM_BUILD };

/* Who writes pc's pack: GIT_CLAIM_CACHED, it is in the cache now;
 * GIT_CLAIM_FOLLOW, another thread is writing it: *fd reads it, *slot is
 * its build (git_build_grow, then git_build_leave); GIT_CLAIM_BUILD, this
 * thread (pc is begun, *slot its build: git_serve_pack); GIT_CLAIM_NONE,
 * nobody (no free slot or no file: build without caching). */
int git_build_claim(guts_net_git *g, guts_packcache *pc, int *slot, int *fd);

/* A follower's guts_packcache_grow_fn; ctx is a git_follow. */
typedef struct git_follow {
    guts_net_git *g;
    int slot;
} git_follow;
int git_build_grow(void *ctx, uint64_t have, uint64_t *size, int *whole);

/* n more bytes were written to build slot's file (pc: is it still being
 * written?); 1 when the node stops; *users: its writer and followers. With
 * yield (the prepare thread's build), it waits meanwhile while a pack
 * thread serves a client another pack than this one (one that follows
 * this build is not waited for). With done, the pack ended (ok: whole) and the
 * writer leaves. */
int git_build_wrote(guts_net_git *g, int slot, guts_packcache *pc, size_t n, int yield,
                    int *users);
void git_build_done(guts_net_git *g, int slot, guts_packcache *pc, int ok);

/* A follower is done with slot. */
void git_build_leave(guts_net_git *g, int slot);

/* Start and stop the prepare thread (with guts_net_git_open / _close). */
int git_prepare_start(guts_net_git *g);
void git_prepare_stop(guts_net_git *g);
/* Its table, lock and condition, after every thread was joined. */
void git_prepare_free(guts_net_git *g);

/* ---- git_fetch.c ---- */

/* Answer command=fetch of r (key); its arguments are body[pos..len). */
int git_fetch(guts_net_git *g, struct MHD_Connection *conn, guts_repo *r, const char *key,
              const uint8_t *body, size_t len, size_t pos);

#endif

/* hasher.c - the SHA-1 of received objects on a second thread.
 *
 * A fresh node copying a repository of large objects spent a quarter of
 * its loop's CPU hashing what it had just decoded (zlib: 125 MB of
 * content; docs/performance.md), on one CPU while the other was idle:
 * the sender no longer decodes anything. The decode cannot leave the
 * loop's order (a delta needs its base decoded before it, and the bases
 * live in the handle's cache), but the hash of a decoded content needs
 * nothing else. So guts_repo_rec_put hands each large content to this
 * thread and goes on decoding the next record; before the call returns it
 * waits for every hash it handed over, and a wrong one fails the whole
 * call as an inline failure does (nothing of the call stays stored).
 *
 * The hand-off is a ring of jobs under one mutex. The thread is woken only
 * when it sleeps and STORE_HASH_WAKE_BYTES wait (a wake-up per job cost
 * more CPU than it saved on a repository of small files); it takes the
 * jobs from the front, one at a time, and publishes how many it has done
 * (an atomic counter), so the loop knows which handed-over contents it may
 * free or report before the call ends. At the call's end the loop takes
 * jobs from the back until the two meet, and then waits only for the job
 * the thread is in: a frame's tail is hashed on both CPUs, and a thread
 * that gets no CPU (a busy machine) costs the loop only the hand-off. A
 * job is at least STORE_HASH_ASYNC_MIN bytes, so the lock and the counter
 * cost a few percent of its hash; with STORE_HASH_QUEUE_BYTES waiting the
 * loop hashes inline instead.
 *
 * One thread per repository handle that needs it, started by the first
 * call with STORE_HASH_CALL_MIN bytes to hand over, stopped when the
 * handle closes: a node copying small repositories starts none.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* bad = min(bad, idx): both threads may find one. */
static void bad_min(store_hasher *h, size_t idx)
{
    size_t b = atomic_load_explicit(&h->bad, memory_order_relaxed);
    while (idx < b && !atomic_compare_exchange_weak_explicit(&h->bad, &b, idx, memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

static void job_hash(store_hasher *h, const hash_job *j)
{
    guts_id got;
    if (guts_obj_hash(j->type, j->data, j->len, &got) != GUTS_OK || guts_id_cmp(&got, &j->id) != 0)
        bad_min(h, j->idx);
}

static void *hasher_main(void *arg)
{
    store_hasher *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->stop && h->claimed == h->limit) {
            if (h->waiting) pthread_cond_signal(&h->idle);
            h->sleeping = 1;
            pthread_cond_wait(&h->work, &h->mu);
            h->sleeping = 0;
        }
        if (h->claimed == h->limit) break; /* stopped with nothing left */
        uint64_t k = h->claimed++;
        h->bytes_claimed += h->ring[k % STORE_HASH_RING].len;
        pthread_mutex_unlock(&h->mu);
        /* The slot stays put until `done` passes it: the loop reuses a
         * slot only after that. */
        const hash_job *j = &h->ring[k % STORE_HASH_RING];
        job_hash(h, j);
        atomic_fetch_add_explicit(&h->bytes_done, j->len, memory_order_relaxed);
        /* release: the loop that reads `done` sees `bad`, and may free
         * what the job read */
        atomic_store_explicit(&h->done, k + 1, memory_order_release);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int hasher_start(store_hasher **out)
{
    store_hasher *h = calloc(1, sizeof *h);
    if (!h) return GUTS_ENOMEM;
    atomic_init(&h->done, 0);
    atomic_init(&h->bytes_done, 0);
    atomic_init(&h->bad, SIZE_MAX);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->work, NULL);
    pthread_cond_init(&h->idle, NULL);
    if (pthread_create(&h->th, NULL, hasher_main, h) != 0) {
        pthread_cond_destroy(&h->idle);
        pthread_cond_destroy(&h->work);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return GUTS_ENOMEM;
    }
    *out = h;
    return GUTS_OK;
}

void hasher_stop(store_hasher *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_signal(&h->work);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->th, NULL);
    pthread_cond_destroy(&h->idle);
    pthread_cond_destroy(&h->work);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

int hasher_submit(store_hasher *h, size_t idx, int type, const void *data, size_t len,
                  const guts_id *id, uint64_t *seq)
{
    uint64_t done = atomic_load_explicit(&h->done, memory_order_acquire);
    if (h->submitted - done >= STORE_HASH_RING ||
        h->bytes_submitted - atomic_load_explicit(&h->bytes_done, memory_order_relaxed) >=
            STORE_HASH_QUEUE_BYTES)
        return 0;
    pthread_mutex_lock(&h->mu);
    h->ring[h->submitted % STORE_HASH_RING] =
        (hash_job){.data = data, .len = len, .id = *id, .idx = idx, .type = type};
    *seq = ++h->submitted;
    h->limit = h->submitted;
    h->bytes_submitted += len;
    /* Woken for a batch, not for each job: a wake-up costs both threads
     * a few microseconds, the hash of a small content less. */
    if (h->sleeping && h->bytes_submitted - h->bytes_claimed >= STORE_HASH_WAKE_BYTES)
        pthread_cond_signal(&h->work);
    pthread_mutex_unlock(&h->mu);
    return 1;
}

uint64_t hasher_done(store_hasher *h)
{
    return atomic_load_explicit(&h->done, memory_order_acquire);
}

size_t hasher_bad(store_hasher *h)
{
    return atomic_load_explicit(&h->bad, memory_order_relaxed);
}

size_t hasher_wait(store_hasher *h)
{
    /* The thread takes jobs from the front, this loop from the back, until
     * they meet: the thread may have no CPU, and at a call's end the loop
     * has nothing else to do. Then only the job the thread is in is
     * waited for. */
    pthread_mutex_lock(&h->mu);
    if (h->sleeping && h->limit - h->claimed > 1) pthread_cond_signal(&h->work);
    while (h->limit > h->claimed) {
        uint64_t k = --h->limit;
        pthread_mutex_unlock(&h->mu);
        job_hash(h, &h->ring[k % STORE_HASH_RING]);
        pthread_mutex_lock(&h->mu);
    }
    uint64_t upto = h->claimed; /* the thread's jobs end here */
    h->waiting = 1;
    while (atomic_load_explicit(&h->done, memory_order_acquire) < upto)
        pthread_cond_wait(&h->idle, &h->mu);
    h->waiting = 0;
    h->claimed = h->limit = h->submitted;
    h->bytes_claimed = h->bytes_submitted;
    atomic_store_explicit(&h->done, h->submitted, memory_order_release);
    atomic_store_explicit(&h->bytes_done, h->bytes_submitted, memory_order_relaxed);
    pthread_mutex_unlock(&h->mu);
    return atomic_load_explicit(&h->bad, memory_order_relaxed);
}

void hasher_reset(store_hasher *h)
{
    atomic_store_explicit(&h->bad, SIZE_MAX, memory_order_relaxed);
}

/* Compiled kernels of dignity.matching.index: multi-index-hashing search with a per-query plan,
 * the bucket sort that builds a segment, exhaustive scan, and id lookup over flat arrays.
 *
 * Layout (built by index.py, which documents the format): a segment holds n hashes of 32 bytes
 * and a key width K (16..20 bits, wider for larger segments so that buckets stay small). Chunk 0
 * is the first K bits: rows are ordered by it, so its buckets are contiguous row ranges
 * (off0[2^K + 1]) and need no posting list. Each of NCHUNK further chunks covers K + 8 bits
 * (from bit K + j * (K + 8)): a K-bit bucket key and an 8-bit filter. Its posting list holds one
 * uint32 per row, row << 8 | filter, grouped by bucket (offs[j * (2^K + 1) + key]), so a probe
 * rejects most rows from the filter byte alone, without touching their hashes. Chunks are
 * disjoint bit sets, so by the pigeonhole principle an entry within distance d of the query is
 * within radius r_c of it in at least one chunk whenever sum(r_c + 1) >= d + 1; the radii need
 * not be equal, and each query gets its own, chosen from the sizes of the buckets around it.
 *
 * Only the buffer protocol is used (no numpy C API), so the extension builds without numpy's
 * headers; every kernel releases the GIL and reads only immutable arrays the caller keeps alive.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NCHUNK 6
#define MIN_KEY_BITS 16
#define MAX_KEY_BITS 20
#define FILTER_BITS 8
#define HASH_BYTES 32
#define MASK_CAP (1u << 18) /* masks kept per key width: radius 7 at 20 bits, all at 16 */
/* Prefetch distances (rows, buckets) and the reach of the value-ordered masks can be overridden at
 * build time (CFLAGS=-DPREFETCH_ROWS=...) for measurements; the defaults were measured best. */
#ifndef PREFETCH_ROWS
#define PREFETCH_ROWS 12
#endif
#ifndef PREFETCH_BUCKETS
#define PREFETCH_BUCKETS 8
#endif

/* Costs in nanoseconds of the per-query plan, measured on one core of the 2-vCPU EPYC this was
 * built on; only their ratios matter, and only for speed, never for correctness. */
#define COST_VISIT 30.0     /* one probed bucket: its offsets and a cache miss at its start */
#define COST_ROW_SEQ 3.5    /* one chunk-0 row verified in place (sequential) */
#define COST_POSTING 0.7    /* one posting entry read and filtered */
#define COST_CANDIDATE 12.0 /* one candidate verified by random access into the hashes */
#define COST_SCAN_ROW 1.3   /* one row of a plain scan */

static uint32_t *masks[MAX_KEY_BITS + 1];              /* masks of K bits, by popcount */
static uint32_t upto[MAX_KEY_BITS + 1][MAX_KEY_BITS + 2]; /* masks of popcount <= r */
static int rmax[MAX_KEY_BITS + 1];                     /* largest radius the masks cover */
/* vmasks[K][r]: the masks of popcount <= r in increasing order, for the radii that queries
 * use. Probing buckets key ^ mask in that order visits them block by block (masks that differ
 * only in low bits land in one aligned run of keys), so their offsets share cache lines and
 * their posting lists lie close together, instead of jumping across the table level by level. */
#ifndef VR_MAX
#define VR_MAX 6
#endif
static uint32_t *vmasks[MAX_KEY_BITS + 1][VR_MAX + 1];
static uint8_t pass[FILTER_BITS][256];                 /* pass[a][x]: popcount(x) <= a */
static double binom[MAX_KEY_BITS + 1][MAX_KEY_BITS + 1];
static double fpass[64]; /* share of uniform filter bytes within distance a */

static int init_tables(void) {
    for (int k = 0; k <= MAX_KEY_BITS; k++) {
        binom[k][0] = 1.0;
        for (int h = 1; h <= k; h++)
            binom[k][h] = binom[k - 1][h - 1] + (h <= k - 1 ? binom[k - 1][h] : 0.0);
    }
    for (int a = 0; a < 64; a++) {
        double s = 0;
        for (int f = 0; f <= a && f <= FILTER_BITS; f++) s += binom[FILTER_BITS][f];
        fpass[a] = s / 256.0;
    }
    for (int a = 0; a < FILTER_BITS; a++)
        for (int x = 0; x < 256; x++) pass[a][x] = __builtin_popcount(x) <= a;
    for (int k = MIN_KEY_BITS; k <= MAX_KEY_BITS; k++) {
        uint32_t total = 0, pos[MAX_KEY_BITS + 2];
        int r = -1;
        while (r < k && total + (uint32_t)binom[k][r + 1] <= MASK_CAP) {
            r++;
            pos[r] = total;
            total += (uint32_t)binom[k][r];
            upto[k][r] = total;
        }
        rmax[k] = r;
        masks[k] = malloc(total * sizeof(uint32_t));
        if (!masks[k]) return -1;
        for (uint32_t m = 0; m < (1u << k); m++) {
            int w = __builtin_popcount(m);
            if (w > r) continue;
            masks[k][pos[w]++] = m;
        }
        uint32_t fill[VR_MAX + 1];
        for (int v = 0; v <= VR_MAX && v <= r; v++) {
            vmasks[k][v] = malloc(upto[k][v] * sizeof(uint32_t));
            if (!vmasks[k][v]) return -1;
            fill[v] = 0;
        }
        for (uint32_t m = 0; m < (1u << k); m++) {
            int w = __builtin_popcount(m);
            for (int v = w; v <= VR_MAX && v <= r; v++) vmasks[k][v][fill[v]++] = m;
        }
    }
    return 0;
}

/* Bits p .. p + len - 1 of a hash (bit 0 is the top bit of byte 0), as an integer. */
static inline uint32_t bits_at(const uint8_t *h, int p, int len) {
    int b = p >> 3;
    uint64_t w = 0;
    if (b + 8 <= HASH_BYTES) {
        memcpy(&w, h + b, 8);
        w = __builtin_bswap64(w);
    } else {
        for (int i = 0; i < 8; i++) w = (w << 8) | (b + i < HASH_BYTES ? h[b + i] : 0);
    }
    return (uint32_t)((w << (p & 7)) >> (64 - len));
}

static inline int chunk_start(int k, int c) { return c == 0 ? 0 : k + (c - 1) * (k + FILTER_BITS); }

/* Largest radius chunk c can be probed at with key width k. */
static inline int radius_cap(int k, int c) {
    if (c == 0) return rmax[k];
    return rmax[k] >= k ? k + FILTER_BITS : rmax[k];
}

typedef struct {
    int64_t *v;
    size_t len, cap;
} vec64;

typedef struct {
    uint32_t *v;
    size_t len, cap;
} vec32;

static int push64(vec64 *o, int64_t a) {
    if (o->len == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 1024;
        int64_t *v = realloc(o->v, cap * sizeof(int64_t));
        if (!v) return -1;
        o->v = v;
        o->cap = cap;
    }
    o->v[o->len++] = a;
    return 0;
}

static int reserve32(vec32 *o, size_t extra) {
    if (o->len + extra > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + extra) cap *= 2;
        uint32_t *v = realloc(o->v, cap * sizeof(uint32_t));
        if (!v) return -1;
        o->v = v;
        o->cap = cap;
    }
    return 0;
}

static inline void load4(const uint8_t *p, uint64_t w[4]) { memcpy(w, p, 32); }

/* Below HALF_EXIT_MAX the first two of a row's four words alone rule out almost every
 * non-matching row (their distance is about 64, sd 5.7, a little less on skewed data), and that
 * branch predicts well; below THREE_EXIT_MAX the first three do (about 96, sd 6.9). Nearer the
 * mean the branch turns into a coin toss (measured: a scan at 47 with the two-word exit ran 50%
 * slower on clustered data), so all four words are counted above. Fewer popcounts per row keep
 * a scan at memory speed. */
#define HALF_EXIT_MAX 40
#define THREE_EXIT_MAX 76

/* Distance of a row to the query when it is <= d, else some value > d. */
static inline int dist_upto(const uint64_t *q, const uint8_t *p, int d) {
    uint64_t w[4];
    memcpy(w, p, 32);
    int x = __builtin_popcountll(q[0] ^ w[0]) + __builtin_popcountll(q[1] ^ w[1]);
    if (d < HALF_EXIT_MAX && x > d) return x;
    x += __builtin_popcountll(q[2] ^ w[2]);
    if (d < THREE_EXIT_MAX && x > d) return x;
    return x + __builtin_popcountll(q[3] ^ w[3]);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Hits of one query as (row << 9 | distance): sorting them groups a row's repeats together. */
static int flush_hits(vec64 *hits, int64_t q, vec64 *out) {
    if (hits->len > 1) qsort(hits->v, hits->len, sizeof(int64_t), cmp_u64);
    int64_t last = -1;
    for (size_t i = 0; i < hits->len; i++) {
        int64_t row = hits->v[i] >> 9;
        if (row == last) continue;
        last = row;
        if (push64(out, q) || push64(out, row) || push64(out, hits->v[i] & 511)) return -1;
    }
    hits->len = 0;
    return 0;
}

typedef struct {
    const uint8_t *hashes;
    const uint32_t *off0;
    const uint32_t *offs;
    const uint32_t *posts;
    int64_t n;
    int k; /* key bits */
} segment;

static inline const uint32_t *table_of(const segment *s, int c) {
    return c == 0 ? s->off0 : s->offs + (size_t)(c - 1) * ((1u << s->k) + 1);
}

/* Estimated cost of probing chunk c at radius r, given the size of the query's own bucket (s0)
 * and the mean size of its K neighbours at distance one (a1), which stands for every farther
 * level: on skewed data the buckets around a query are far from the global mean, in either
 * direction, and differ between chunks, which is what makes the radii worth choosing per query. */
static double chunk_cost(int k, int c, int r, double s0, double a1) {
    double sum = 0;
    int hmax = r < k ? r : k;
    for (int h = 0; h <= hmax; h++) {
        double rows = h == 0 ? s0 : binom[k][h] * a1;
        sum += binom[k][h] * COST_VISIT;
        if (c == 0)
            sum += rows * COST_ROW_SEQ;
        else
            sum += rows * (COST_POSTING + fpass[r - h] * COST_CANDIDATE);
    }
    return sum;
}

/* Radii with sum(r + 1) = d + 1 and the least estimated cost for this query; 0 when a plain
 * scan of the segment is estimated cheaper (or the radii would exceed the mask tables). Greedy:
 * each step raises the radius whose next level costs least, as level costs grow with r. */
static int plan_query(const segment *s, const uint32_t *keys, int d, int *radii) {
    int k = s->k;
    double s0[NCHUNK + 1], a1[NCHUNK + 1], cur[NCHUNK + 1], next[NCHUNK + 1];
    for (int c = 0; c <= NCHUNK; c++) {
        const uint32_t *t = table_of(s, c);
        uint32_t key = keys[c];
        s0[c] = (double)(t[key + 1] - t[key]);
        uint64_t sum = 0;
        for (int i = 0; i < k; i++) {
            uint32_t b = key ^ (1u << i);
            sum += t[b + 1] - t[b];
        }
        a1[c] = (double)sum / k;
        radii[c] = -1;
        cur[c] = 0;
        next[c] = chunk_cost(k, c, 0, s0[c], a1[c]);
    }
    double total = 0, limit = (double)s->n * COST_SCAN_ROW;
    for (int step = 0; step <= d; step++) {
        int best = -1;
        for (int c = 0; c <= NCHUNK; c++) {
            if (radii[c] + 1 > radius_cap(k, c)) continue;
            if (best < 0 || next[c] - cur[c] < next[best] - cur[best]) best = c;
        }
        if (best < 0) return 0;
        total += next[best] - cur[best];
        if (total >= limit) return 0;
        radii[best]++;
        cur[best] = next[best];
        if (radii[best] + 1 <= radius_cap(k, best))
            next[best] = chunk_cost(k, best, radii[best] + 1, s0[best], a1[best]);
    }
    return 1;
}


/* Rows r0 .. r1 - 1 within d of the query, appended as (row << 9 | distance). Four rows per
 * step share one well-predicted branch on their half distances; only a step with a possible
 * hit looks at its rows one by one. */
static int scan_rows(const uint8_t *h, int64_t r0, int64_t r1, const uint64_t *q, int d,
                     vec64 *hits) {
    int64_t r = r0;
    if (d < HALF_EXIT_MAX) {
        for (; r + 4 <= r1; r += 4) {
            uint64_t w[16];
            memcpy(w, h + (size_t)r * HASH_BYTES, 4 * HASH_BYTES);
            int x0 = __builtin_popcountll(q[0] ^ w[0]) + __builtin_popcountll(q[1] ^ w[1]);
            int x1 = __builtin_popcountll(q[0] ^ w[4]) + __builtin_popcountll(q[1] ^ w[5]);
            int x2 = __builtin_popcountll(q[0] ^ w[8]) + __builtin_popcountll(q[1] ^ w[9]);
            int x3 = __builtin_popcountll(q[0] ^ w[12]) + __builtin_popcountll(q[1] ^ w[13]);
            if (__builtin_expect((x0 <= d) | (x1 <= d) | (x2 <= d) | (x3 <= d), 0)) {
                for (int i = 0; i < 4; i++) {
                    int x = dist_upto(q, h + (size_t)(r + i) * HASH_BYTES, d);
                    if (x <= d && push64(hits, ((r + i) << 9) | x)) return -1;
                }
            }
        }
    } else if (d < THREE_EXIT_MAX) {
        for (; r + 4 <= r1; r += 4) {
            uint64_t w[16];
            memcpy(w, h + (size_t)r * HASH_BYTES, 4 * HASH_BYTES);
            int x[4];
            for (int i = 0; i < 4; i++)
                x[i] = __builtin_popcountll(q[0] ^ w[4 * i]) +
                       __builtin_popcountll(q[1] ^ w[4 * i + 1]) +
                       __builtin_popcountll(q[2] ^ w[4 * i + 2]);
            if (__builtin_expect((x[0] <= d) | (x[1] <= d) | (x[2] <= d) | (x[3] <= d), 0)) {
                for (int i = 0; i < 4; i++) {
                    int y = dist_upto(q, h + (size_t)(r + i) * HASH_BYTES, d);
                    if (y <= d && push64(hits, ((r + i) << 9) | y)) return -1;
                }
            }
        }
    }
    /* Full distances, four rows per step, one branch (hits are rare at any useful d). */
    for (; r + 4 <= r1; r += 4) {
        uint64_t w[16];
        memcpy(w, h + (size_t)r * HASH_BYTES, 4 * HASH_BYTES);
        int x[4];
        for (int i = 0; i < 4; i++)
            x[i] = __builtin_popcountll(q[0] ^ w[4 * i]) + __builtin_popcountll(q[1] ^ w[4 * i + 1]) +
                   __builtin_popcountll(q[2] ^ w[4 * i + 2]) +
                   __builtin_popcountll(q[3] ^ w[4 * i + 3]);
        if (__builtin_expect((x[0] <= d) | (x[1] <= d) | (x[2] <= d) | (x[3] <= d), 0)) {
            for (int i = 0; i < 4; i++)
                if (x[i] <= d && push64(hits, ((r + i) << 9) | x[i])) return -1;
        }
    }
    for (; r < r1; r++) {
        int x = dist_upto(q, h + (size_t)r * HASH_BYTES, d);
        if (x <= d && push64(hits, (r << 9) | x)) return -1;
    }
    return 0;
}

static int scan_one(const segment *s, const uint64_t *qw, int d, vec64 *hits) {
    return scan_rows(s->hashes, 0, s->n, qw, d, hits);
}

/* One query against one segment; `fixed` radii (tests, tuning) or NULL for a per-query plan. */
static int search_one(const segment *s, const uint8_t *query, int d, const int *fixed,
                      vec32 *cand, vec64 *hits) {
    uint64_t qw[4];
    load4(query, qw);
    const int k = s->k;
    uint32_t keys[NCHUNK + 1], filt[NCHUNK + 1];
    for (int c = 0; c <= NCHUNK; c++) {
        keys[c] = bits_at(query, chunk_start(k, c), k);
        filt[c] = c ? bits_at(query, chunk_start(k, c) + k, FILTER_BITS) : 0;
    }
    int radii[NCHUNK + 1];
    if (fixed)
        memcpy(radii, fixed, sizeof radii);
    else if (!plan_query(s, keys, d, radii))
        return scan_one(s, qw, d, hits);
    /* chunk 0: bucket rows are contiguous, so they are verified in place, in order */
    if (radii[0] >= 0) {
        uint32_t k0 = keys[0];
        uint32_t nm = upto[k][radii[0]];
        const uint32_t *mk = radii[0] <= VR_MAX ? vmasks[k][radii[0]] : masks[k];
        const uint32_t *off0 = s->off0;
        for (uint32_t i = 0; i < nm; i++) {
            if (i + 2 * PREFETCH_BUCKETS < nm)
                __builtin_prefetch(off0 + (k0 ^ mk[i + 2 * PREFETCH_BUCKETS]));
            if (i + 2 < nm) {
                uint32_t b = k0 ^ mk[i + 2];
                const char *a = (const char *)(s->hashes + (size_t)off0[b] * HASH_BYTES);
                const char *z = (const char *)(s->hashes + (size_t)off0[b + 1] * HASH_BYTES);
                for (; a < z; a += 64) __builtin_prefetch(a);
            }
            uint32_t b = k0 ^ mk[i];
            for (uint32_t r = off0[b], e = off0[b + 1]; r < e; r++) {
                int x = dist_upto(qw, s->hashes + (size_t)r * HASH_BYTES, d);
                if (x <= d && push64(hits, ((int64_t)r << 9) | x)) return -1;
            }
        }
    }
    cand->len = 0;
    for (int c = 1; c <= NCHUNK; c++) {
        int r = radii[c];
        if (r < 0) continue;
        uint32_t key = keys[c];
        uint32_t qf = filt[c];
        const uint32_t *off = table_of(s, c);
        const uint32_t *post = s->posts + (size_t)(c - 1) * s->n;
        int rk = r > k ? k : r;
        uint32_t nm = upto[k][rk];
        const uint32_t *mk = rk <= VR_MAX ? vmasks[k][rk] : masks[k];
        for (uint32_t i = 0; i < nm; i++) {
            /* Offsets two steps ahead, then every cache line of the bucket one step ahead:
             * buckets are a few lines long, too short for the hardware prefetcher. */
            if (i + 2 * PREFETCH_BUCKETS < nm)
                __builtin_prefetch(off + (key ^ mk[i + 2 * PREFETCH_BUCKETS]));
            if (i + PREFETCH_BUCKETS < nm) {
                uint32_t nb = key ^ mk[i + PREFETCH_BUCKETS];
                const char *a = (const char *)(post + off[nb]), *z = (const char *)(post + off[nb + 1]);
                for (; a < z; a += 64) __builtin_prefetch(a);
            }
            uint32_t b = key ^ mk[i];
            int allow = r - __builtin_popcount(mk[i]);
            uint32_t start = off[b], end = off[b + 1];
            if (reserve32(cand, end - start)) return -1;
            uint32_t *dst = cand->v + cand->len;
            size_t kept = 0;
            if (allow >= FILTER_BITS) {
                for (uint32_t p = start; p < end; p++) dst[kept++] = post[p] >> 8;
            } else {
                /* Branch-free: every row is written, and kept only if its filter byte passes. */
                const uint8_t *ok = pass[allow];
                for (uint32_t p = start; p < end; p++) {
                    uint32_t v = post[p];
                    dst[kept] = v >> 8;
                    kept += ok[(v ^ qf) & 0xff];
                }
            }
            cand->len += kept;
        }
    }
    /* Verification reads rows at random: prefetch a few candidates ahead so that the cache
     * misses overlap instead of queueing one after another. */
    size_t nc = cand->len;
    for (size_t i = 0; i < nc; i++) {
        if (i + PREFETCH_ROWS < nc)
            __builtin_prefetch(s->hashes + (size_t)cand->v[i + PREFETCH_ROWS] * HASH_BYTES);
        int64_t row = cand->v[i];
        int x = dist_upto(qw, s->hashes + (size_t)row * HASH_BYTES, d);
        if (x <= d && push64(hits, (row << 9) | x)) return -1;
    }
    return 0;
}

static int get_buf(PyObject *obj, Py_buffer *view, const char *name, Py_ssize_t min_len) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len < min_len) {
        PyErr_Format(PyExc_ValueError, "%s: buffer too small (%zd < %zd bytes)", name, view->len,
                     min_len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *result_bytes(vec64 *out) {
    PyObject *res = PyBytes_FromStringAndSize((const char *)out->v, out->len * sizeof(int64_t));
    free(out->v);
    return res;
}

static int check_key_bits(int k) {
    if (k < MIN_KEY_BITS || k > MAX_KEY_BITS) {
        PyErr_Format(PyExc_ValueError, "key_bits must be in %d..%d", MIN_KEY_BITS, MAX_KEY_BITS);
        return -1;
    }
    return 0;
}

/* search(hashes, off0, offs, posts, n, key_bits, queries, d, radii) -> bytes of int64
 * (query, row, dist); radii: a tuple of NCHUNK + 1 ints (-1: chunk not probed), or None for a
 * per-query plan that may also scan the segment for a query where that is cheaper. */
static PyObject *py_search(PyObject *self, PyObject *args) {
    PyObject *ho, *o0, *oo, *po, *qo, *ro;
    Py_ssize_t n;
    int k, d;
    if (!PyArg_ParseTuple(args, "OOOOniOiO", &ho, &o0, &oo, &po, &n, &k, &qo, &d, &ro))
        return NULL;
    if (check_key_bits(k) < 0) return NULL;
    if (n < 0 || n >= (Py_ssize_t)1 << 24) {
        PyErr_SetString(PyExc_ValueError, "n must be in 0..2**24 - 1");
        return NULL;
    }
    int radii[NCHUNK + 1], *fixed = NULL;
    if (ro != Py_None) {
        if (!PyTuple_Check(ro) || PyTuple_GET_SIZE(ro) != NCHUNK + 1) {
            PyErr_SetString(PyExc_ValueError, "radii must be None or a tuple of 7 ints");
            return NULL;
        }
        for (int i = 0; i <= NCHUNK; i++) {
            long v = PyLong_AsLong(PyTuple_GET_ITEM(ro, i));
            if (v == -1 && PyErr_Occurred()) return NULL;
            if (v < -1 || v > radius_cap(k, i)) {
                PyErr_SetString(PyExc_ValueError, "radius out of range");
                return NULL;
            }
            radii[i] = (int)v;
        }
        fixed = radii;
    }
    Py_ssize_t table = ((Py_ssize_t)1 << k) + 1;
    Py_buffer hb, b0, bo, bp, qb;
    if (get_buf(ho, &hb, "hashes", n * HASH_BYTES) < 0) return NULL;
    if (get_buf(o0, &b0, "off0", table * 4) < 0) goto e1;
    if (get_buf(oo, &bo, "offs", NCHUNK * table * 4) < 0) goto e2;
    if (get_buf(po, &bp, "posts", NCHUNK * n * 4) < 0) goto e3;
    if (get_buf(qo, &qb, "queries", 0) < 0) goto e4;
    segment s = {hb.buf, b0.buf, bo.buf, bp.buf, n, k};
    Py_ssize_t nq = qb.len / HASH_BYTES;
    vec64 out = {0}, hits = {0};
    vec32 cand = {0};
    int err = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t q = 0; q < nq && !err; q++) {
        err = search_one(&s, (const uint8_t *)qb.buf + q * HASH_BYTES, d, fixed, &cand, &hits);
        if (!err) err = flush_hits(&hits, q, &out);
    }
    Py_END_ALLOW_THREADS;
    free(cand.v);
    free(hits.v);
    PyBuffer_Release(&qb);
    PyBuffer_Release(&bp);
    PyBuffer_Release(&bo);
    PyBuffer_Release(&b0);
    PyBuffer_Release(&hb);
    if (err) {
        free(out.v);
        return PyErr_NoMemory();
    }
    return result_bytes(&out);
e4:
    PyBuffer_Release(&bp);
e3:
    PyBuffer_Release(&bo);
e2:
    PyBuffer_Release(&b0);
e1:
    PyBuffer_Release(&hb);
    return NULL;
}

/* bucketize(hashes, chunk, key_bits, offsets, posts) -> sum(count**2) / n: a stable counting
 * sort of the rows by chunk `chunk`'s key. Writes offsets (uint32, 2**key_bits + 1 bucket
 * starts) and posts (uint32, one per row, grouped by bucket, rows ascending within one):
 * `row` for chunk 0, `row << 8 | filter byte` for the posting chunks. */
static PyObject *py_bucketize(PyObject *self, PyObject *args) {
    PyObject *ho, *oo, *po;
    int c, k;
    if (!PyArg_ParseTuple(args, "OiiOO", &ho, &c, &k, &oo, &po)) return NULL;
    if (check_key_bits(k) < 0) return NULL;
    if (c < 0 || c > NCHUNK) {
        PyErr_SetString(PyExc_ValueError, "chunk out of range");
        return NULL;
    }
    Py_buffer hb, ob, pb;
    if (get_buf(ho, &hb, "hashes", 0) < 0) return NULL;
    Py_ssize_t n = hb.len / HASH_BYTES, table = ((Py_ssize_t)1 << k) + 1;
    if (n >= (Py_ssize_t)1 << 24) {
        PyBuffer_Release(&hb);
        PyErr_SetString(PyExc_ValueError, "a segment holds fewer than 2**24 rows");
        return NULL;
    }
    if (get_buf(oo, &ob, "offsets", table * 4) < 0) {
        PyBuffer_Release(&hb);
        return NULL;
    }
    if (get_buf(po, &pb, "posts", n * 4) < 0) {
        PyBuffer_Release(&ob);
        PyBuffer_Release(&hb);
        return NULL;
    }
    if (ob.readonly || pb.readonly) {
        PyBuffer_Release(&pb);
        PyBuffer_Release(&ob);
        PyBuffer_Release(&hb);
        PyErr_SetString(PyExc_ValueError, "offsets and posts must be writable");
        return NULL;
    }
    const uint8_t *h = hb.buf;
    uint32_t *off = ob.buf, *post = pb.buf;
    int start = chunk_start(k, c);
    double sq = 0;
    Py_BEGIN_ALLOW_THREADS;
    memset(off, 0, table * 4);
    for (Py_ssize_t r = 0; r < n; r++) off[bits_at(h + r * HASH_BYTES, start, k) + 1]++;
    for (Py_ssize_t b = 1; b < table; b++) sq += (double)off[b] * off[b];
    for (Py_ssize_t b = 1; b < table; b++) off[b] += off[b - 1];
    /* off[key] is now the next free slot of bucket key; after the scatter it is the end of
     * bucket key, i.e. the start of key + 1, so shift back by one. */
    for (Py_ssize_t r = 0; r < n; r++) {
        const uint8_t *row = h + r * HASH_BYTES;
        uint32_t key = bits_at(row, start, k);
        uint32_t v = (uint32_t)r;
        if (c) v = v << 8 | bits_at(row, start + k, FILTER_BITS);
        post[off[key]++] = v;
    }
    memmove(off + 1, off, (table - 1) * 4);
    off[0] = 0;
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&pb);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&hb);
    return PyFloat_FromDouble(n ? sq / (double)n : 0.0);
}

/* scan(hashes, queries, d) -> bytes of int64 (query, row, dist), every row compared */
static PyObject *py_scan(PyObject *self, PyObject *args) {
    PyObject *ho, *qo;
    int d;
    if (!PyArg_ParseTuple(args, "OOi", &ho, &qo, &d)) return NULL;
    Py_buffer hb, qb;
    if (get_buf(ho, &hb, "hashes", 0) < 0) return NULL;
    if (get_buf(qo, &qb, "queries", 0) < 0) {
        PyBuffer_Release(&hb);
        return NULL;
    }
    Py_ssize_t n = hb.len / HASH_BYTES, nq = qb.len / HASH_BYTES;
    vec64 out = {0}, hits = {0};
    int err = 0;
    Py_BEGIN_ALLOW_THREADS;
    /* Rows in blocks that stay in L2 while every query passes over them. */
    const Py_ssize_t block = 2048;
    for (Py_ssize_t r0 = 0; r0 < n && !err; r0 += block) {
        Py_ssize_t r1 = r0 + block < n ? r0 + block : n;
        for (Py_ssize_t q = 0; q < nq && !err; q++) {
            uint64_t qw[4];
            load4((const uint8_t *)qb.buf + q * HASH_BYTES, qw);
            hits.len = 0;
            err = scan_rows(hb.buf, r0, r1, qw, d, &hits);
            for (size_t i = 0; i < hits.len && !err; i++)
                err = push64(&out, q) || push64(&out, hits.v[i] >> 9) || push64(&out, hits.v[i] & 511);
        }
    }
    Py_END_ALLOW_THREADS;
    free(hits.v);
    PyBuffer_Release(&qb);
    PyBuffer_Release(&hb);
    if (err) {
        free(out.v);
        return PyErr_NoMemory();
    }
    return result_bytes(&out);
}

/* find(values, itemsize, wanted) -> bytes of int64 rows whose value is in ``wanted`` (sorted,
 * distinct int64). ``values`` are unsigned of ``itemsize`` bytes, or int64 when itemsize is 8:
 * one pass with a binary search per row, for columns that are not sorted by value. */
static PyObject *py_find(PyObject *self, PyObject *args) {
    PyObject *vo, *wo;
    int itemsize;
    if (!PyArg_ParseTuple(args, "OiO", &vo, &itemsize, &wo)) return NULL;
    if (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8) {
        PyErr_SetString(PyExc_ValueError, "itemsize must be 1, 2, 4 or 8");
        return NULL;
    }
    Py_buffer vb, wb;
    if (get_buf(vo, &vb, "values", 0) < 0) return NULL;
    if (get_buf(wo, &wb, "wanted", 0) < 0) {
        PyBuffer_Release(&vb);
        return NULL;
    }
    const int64_t *w = wb.buf;
    Py_ssize_t n = vb.len / itemsize, k = wb.len / 8;
    vec64 out = {0};
    int err = 0;
    Py_BEGIN_ALLOW_THREADS;
    if (k > 0) {
        int64_t lo = w[0], hi = w[k - 1];
        for (Py_ssize_t i = 0; i < n && !err; i++) {
            int64_t x;
            switch (itemsize) {
            case 1: x = ((const uint8_t *)vb.buf)[i]; break;
            case 2: x = ((const uint16_t *)vb.buf)[i]; break;
            case 4: x = ((const uint32_t *)vb.buf)[i]; break;
            default: x = ((const int64_t *)vb.buf)[i]; break;
            }
            if (x < lo || x > hi) continue;
            Py_ssize_t a = 0, b = k;
            while (a < b) {
                Py_ssize_t m = a + (b - a) / 2;
                if (w[m] < x) a = m + 1;
                else b = m;
            }
            if (a < k && w[a] == x) err = push64(&out, i);
        }
    }
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&wb);
    PyBuffer_Release(&vb);
    if (err) {
        free(out.v);
        return PyErr_NoMemory();
    }
    return result_bytes(&out);
}

static PyMethodDef methods[] = {
    {"search", py_search, METH_VARARGS, "Multi-index search of one segment."},
    {"bucketize", py_bucketize, METH_VARARGS, "Counting sort of rows by one chunk's key."},
    {"scan", py_scan, METH_VARARGS, "Exhaustive scan of a hash array."},
    {"find", py_find, METH_VARARGS, "Rows whose value is in a sorted set."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_mihcore",
                                    "Compiled kernels of dignity.matching.index.", -1, methods};

PyMODINIT_FUNC PyInit__mihcore(void) {
    if (init_tables() < 0) return PyErr_NoMemory();
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "NCHUNK", NCHUNK) < 0 ||
        PyModule_AddIntConstant(m, "MIN_KEY_BITS", MIN_KEY_BITS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_KEY_BITS", MAX_KEY_BITS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyObject *caps = PyTuple_New(MAX_KEY_BITS + 1);
    if (caps == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    for (int k = 0; k <= MAX_KEY_BITS; k++)
        PyTuple_SET_ITEM(caps, k, PyLong_FromLong(k >= MIN_KEY_BITS ? rmax[k] : -1));
    if (PyModule_AddObject(m, "MAX_RADIUS", caps) < 0) {
        Py_DECREF(caps);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

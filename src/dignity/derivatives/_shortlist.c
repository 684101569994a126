/* Compiled kernels of dignity.derivatives.matching. agreeing(): the shortlist, for one view of
 * a scanned image, which registered photos have enough stored keypoints near the scan's
 * keypoints, and how many of those agree on one shift. knn2(): the nearest and second-nearest
 * query descriptor of each stored one, for verification's ratio test (see py_knn2).
 *
 * agreeing() computes exactly what matching._Segment.agreeing_numpy does
 * (the reference and fallback, and the oracle of the tests); that version spends most of a
 * scan building and gathering large temporary arrays, one pass per step, where this one reads
 * each bucket entry once.
 *
 * Layout (built by matching._Segment): records at a fixed stride (record r's keypoints are
 * rows r * stride ..., descriptors of 32 bytes, positions as two uint8 in XY_STEP px steps);
 * a hash table keyed by KEY_BITS descriptor bits (starts[2^K + 1] row ranges of postings,
 * each a keypoint row, with its 16 check bits beside it in check[]).
 *
 * Steps, for each query keypoint and each of the K + 1 keys within one bit of its own:
 * 1. every entry of a bucket holding at most max_bucket entries whose check bits are within
 *    check_distance is a candidate; each record counts its candidates (raw votes);
 * 2. when there are more than preselect records, only those whose raw votes reach the
 *    preselect-th largest count (ties included) and min_votes go on;
 * 3. their candidates' full descriptors are compared: within shortlist_distance bits, the
 *    stored keypoint's nearest query keypoint is kept (the first of equals, in query order);
 * 4. a record with at least min_count such stored keypoints gets its agreeing votes: the
 *    most that fall in one 3 x 3 block of shift cells (query position minus stored position,
 *    cells of shift_bin px, one empty cell each side).
 * The result is packed int64 (record row, agreeing, votes) for the records of step 4, in
 * increasing row order. Only the buffer protocol is used (no numpy C API), the GIL is released,
 * and every index read from the tables is checked against the arrays' sizes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DESC_BYTES 32
#define MIN_KEY_BITS 8
#define MAX_KEY_BITS 24
/* How far ahead the three random-access passes prefetch (probes, buckets, descriptor rows). */
#ifndef PREFETCH_PROBES
#define PREFETCH_PROBES 16
#endif
#ifndef PREFETCH_BUCKETS
#define PREFETCH_BUCKETS 8
#endif
#ifndef PREFETCH_ROWS
#define PREFETCH_ROWS 12
#endif

typedef struct {
    int32_t row; /* stored keypoint row */
    int32_t q;   /* query keypoint */
} pair_t;

typedef struct {
    pair_t *v;
    size_t len, cap;
} pairs_t;

static int reserve(pairs_t *p, size_t more) {
    if (p->len + more <= p->cap) return 0;
    size_t cap = p->cap ? 2 * p->cap : 4096;
    while (cap < p->len + more) cap *= 2;
    pair_t *v = realloc(p->v, cap * sizeof(pair_t));
    if (v == NULL) return -1;
    p->v = v;
    p->cap = cap;
    return 0;
}

/* row / stride without a division instruction (tens of cycles each, on the hot path): Lemire's
 * multiply-high by a 64-bit reciprocal, exact for every 32-bit numerator and divisor. */
static inline int32_t div_by(uint32_t n, uint64_t inv) {
    return (int32_t)(((unsigned __int128)n * inv) >> 64);
}

static inline int dist256(const uint8_t *a, const uint8_t *b) {
    uint64_t x[4], y[4];
    memcpy(x, a, DESC_BYTES);
    memcpy(y, b, DESC_BYTES);
    return __builtin_popcountll(x[0] ^ y[0]) + __builtin_popcountll(x[1] ^ y[1]) +
           __builtin_popcountll(x[2] ^ y[2]) + __builtin_popcountll(x[3] ^ y[3]);
}

typedef struct {
    const int32_t *starts, *postings;
    const uint16_t *check;
    const uint8_t *desc, *xy;
    Py_ssize_t nstarts, npost, nrows;
    int32_t stride, nrec;
    const uint8_t *qdesc;
    const float *qxy;
    const int64_t *qkeys;
    const uint16_t *qcheck;
    Py_ssize_t nq;
    int key_bits, max_bucket, check_distance, preselect, min_votes, shortlist_distance;
    int min_count, shift_bin, norm_side;
    float xy_step;
} job_t;

typedef struct {
    int64_t *v;
    size_t len;
} out_t;

typedef struct {
    uint32_t key;
    int32_t lo, hi;
} bound_t;

/* The shift cell of one coordinate, clamped to 1..cells - 2 (one empty cell each side); the
 * float is clamped before it is converted, as converting an out-of-range float is undefined. */
static inline int cell_of(float shift, int norm_side, int shift_bin, int cells) {
    float f = (shift + (float)norm_side) / (float)shift_bin;
    if (!(f >= 0.0f)) f = 0.0f; /* also NaN */
    if (f > (float)cells) f = (float)cells;
    int b = (int)f + 1;
    return b < 1 ? 1 : b > cells - 2 ? cells - 2 : b;
}

static int cmp_row(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The k-th largest of v[0..n) (1 <= k <= n), or -1 when out of memory. From a histogram of
 * the values when they are small (they are vote counts: in the hundreds), else by selection
 * on a copy. */
static int32_t kth_largest(const int32_t *v, int32_t n, int32_t k) {
    int32_t top = 0;
    for (int32_t i = 0; i < n; i++)
        if (v[i] > top) top = v[i];
    if (top <= 65535) {
        int64_t *hist = calloc((size_t)top + 1, sizeof(int64_t));
        if (hist == NULL) return -1;
        for (int32_t i = 0; i < n; i++) hist[v[i] > 0 ? v[i] : 0]++;
        int64_t above = 0;
        int32_t t = top;
        for (; t > 0; t--) {
            above += hist[t];
            if (above >= k) break;
        }
        free(hist);
        return t;
    }
    int32_t *a = malloc((size_t)n * sizeof(int32_t));
    if (a == NULL) return -1;
    memcpy(a, v, (size_t)n * sizeof(int32_t));
    /* Quickselect (Hoare partition, middle pivot) for the element of rank k - 1 descending. */
    int32_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        int32_t pivot = a[lo + (hi - lo) / 2], i = lo, r = hi;
        while (i <= r) {
            while (a[i] > pivot) i++;
            while (a[r] < pivot) r--;
            if (i <= r) {
                int32_t x = a[i];
                a[i++] = a[r];
                a[r--] = x;
            }
        }
        if (want <= r) hi = r;
        else if (want >= i) lo = i;
        else break;
    }
    int32_t t = a[want];
    free(a);
    return t;
}

/* Returns 0, or -1 when out of memory. */
static int run(const job_t *j, out_t *out) {
    int rc = -1;
    pairs_t cand = {0};
    int32_t *raw = calloc((size_t)j->nrec + 1, sizeof(int32_t));
    int32_t *local = NULL, *owners = NULL;
    uint32_t *best = NULL;
    bound_t *bounds = NULL;
    int32_t *grid = NULL;
    if (raw == NULL) goto done;
    const uint32_t table = (uint32_t)1 << j->key_bits;
    const uint64_t inv = UINT64_MAX / (uint64_t)j->stride + 1;

    /* 1. Bucket walk with the check-bit filter. The table is far larger than the caches and
     * every probe lands somewhere else in it: the buckets' bounds are read in one pass with
     * prefetching, then the buckets are walked with their entries prefetched a few ahead, so
     * that the cache misses overlap instead of queueing one after another. */
    const Py_ssize_t nprobe = j->nq * (j->key_bits + 1);
    bounds = malloc((size_t)(nprobe ? nprobe : 1) * sizeof(bound_t));
    if (bounds == NULL) goto done;
    for (Py_ssize_t q = 0, at = 0; q < j->nq; q++) {
        uint32_t key = (uint32_t)j->qkeys[q] & (table - 1);
        for (int p = -1; p < j->key_bits; p++, at++) bounds[at].key = p < 0 ? key : key ^ ((uint32_t)1 << p);
    }
    for (Py_ssize_t i = 0; i < nprobe; i++) {
        if (i + PREFETCH_PROBES < nprobe) __builtin_prefetch(j->starts + bounds[i + PREFETCH_PROBES].key);
        uint32_t k = bounds[i].key;
        int32_t lo = j->starts[k], hi = j->starts[k + 1];
        if (lo < 0 || hi > j->npost || hi <= lo || hi - lo > j->max_bucket) lo = hi = 0;
        bounds[i].lo = lo;
        bounds[i].hi = hi;
    }
    for (Py_ssize_t i = 0; i < nprobe; i++) {
        if (i + PREFETCH_BUCKETS < nprobe) {
            __builtin_prefetch(j->check + bounds[i + PREFETCH_BUCKETS].lo);
            __builtin_prefetch(j->postings + bounds[i + PREFETCH_BUCKETS].lo);
        }
        int32_t q = (int32_t)(i / (j->key_bits + 1)), lo = bounds[i].lo, hi = bounds[i].hi;
        uint16_t qc = j->qcheck[q];
        if (reserve(&cand, (size_t)(hi - lo))) goto done;
        /* Branch-free: about a third of the entries pass, in no predictable pattern, and a
         * mispredicted branch per entry cost more than the rest of the walk. */
        pair_t *dst = cand.v + cand.len;
        size_t kept = 0;
        for (int32_t e = lo; e < hi; e++) {
            uint32_t row = (uint32_t)j->postings[e];
            int ok = (__builtin_popcount((unsigned)(uint16_t)(qc ^ j->check[e])) <=
                      j->check_distance) &
                     (row < (uint32_t)j->nrows);
            uint32_t safe = ok ? row : 0;
            raw[div_by(safe, inv)] += ok;
            dst[kept].row = (int32_t)safe;
            dst[kept].q = q;
            kept += (size_t)ok;
        }
        cand.len += kept;
    }

    /* 2. The preselect-th largest raw count (ties included). */
    int32_t floor_votes = 0; /* 0: every record goes on */
    if (j->nrec > j->preselect) {
        int32_t t = kth_largest(raw, j->nrec, j->preselect);
        if (t < 0) goto done;
        floor_votes = t > j->min_votes ? t : j->min_votes;
        if (floor_votes < 1) floor_votes = 1;
    }

    /* 3. Full descriptors of the chosen records' candidates; nearest query per stored row.
     * Records get slots (one per keypoint of the stride) on their first survivor. */
    local = malloc(((size_t)j->nrec + 1) * sizeof(int32_t));
    if (local == NULL) goto done;
    for (int32_t r = 0; r < j->nrec; r++) local[r] = -1;
    size_t kept = 0;
    for (size_t c = 0; c < cand.len; c++)
        if (raw[div_by((uint32_t)cand.v[c].row, inv)] >= floor_votes) cand.v[kept++] = cand.v[c];
    size_t nloc = 0, capl = 0;
    for (size_t c = 0; c < kept; c++) {
        if (c + PREFETCH_ROWS < kept)
            __builtin_prefetch(j->desc + (size_t)cand.v[c + PREFETCH_ROWS].row * DESC_BYTES);
        int32_t row = cand.v[c].row, rec = div_by((uint32_t)row, inv);
        int32_t q = cand.v[c].q;
        int d = dist256(j->qdesc + (size_t)q * DESC_BYTES, j->desc + (size_t)row * DESC_BYTES);
        if (d > j->shortlist_distance) continue;
        if (local[rec] < 0) {
            if (nloc == capl) {
                size_t cap = capl ? 2 * capl : 256;
                uint32_t *b = realloc(best, cap * (size_t)j->stride * sizeof(uint32_t));
                if (b == NULL) goto done;
                best = b;
                int32_t *o = realloc(owners, cap * sizeof(int32_t));
                if (o == NULL) goto done;
                owners = o;
                capl = cap;
            }
            memset(best + nloc * (size_t)j->stride, 0xff, (size_t)j->stride * sizeof(uint32_t));
            owners[nloc] = rec;
            local[rec] = (int32_t)nloc++;
        }
        /* distance in the high bits, query in the low: the smaller is the nearer, and of
         * equals the earlier query (candidates come in query order). */
        uint32_t v = (uint32_t)d << 24 | (uint32_t)q;
        uint32_t *slot = best + (size_t)local[rec] * j->stride + (row - rec * j->stride);
        if (v < *slot) *slot = v;
    }

    /* 4. Agreeing votes of the records with enough votes. */
    const int cells = 2 * ((j->norm_side + j->shift_bin - 1) / j->shift_bin) + 3;
    grid = malloc((size_t)cells * cells * sizeof(int32_t));
    out->v = malloc((nloc ? nloc : 1) * 3 * sizeof(int64_t));
    if (grid == NULL || out->v == NULL) goto done;
    for (size_t l = 0; l < nloc; l++) {
        const uint32_t *slots = best + l * (size_t)j->stride;
        int32_t rec = owners[l], votes = 0;
        for (int32_t s = 0; s < j->stride; s++) votes += slots[s] != 0xffffffffu;
        if (votes < j->min_count) continue;
        memset(grid, 0, (size_t)cells * cells * sizeof(int32_t));
        for (int32_t s = 0; s < j->stride; s++) {
            if (slots[s] == 0xffffffffu) continue;
            size_t row = (size_t)rec * j->stride + s;
            int32_t q = (int32_t)(slots[s] & 0xffffff);
            /* The same single-precision steps as the numpy version, so cells agree exactly. */
            float sx = j->qxy[2 * q] - (float)j->xy[2 * row] * j->xy_step;
            float sy = j->qxy[2 * q + 1] - (float)j->xy[2 * row + 1] * j->xy_step;
            int bx = cell_of(sx, j->norm_side, j->shift_bin, cells);
            int by = cell_of(sy, j->norm_side, j->shift_bin, cells);
            grid[by * cells + bx]++;
        }
        int32_t agree = 0;
        for (int y = 0; y + 2 < cells; y++)
            for (int x = 0; x + 2 < cells; x++) {
                int32_t s = 0;
                for (int dy = 0; dy < 3; dy++)
                    for (int dx = 0; dx < 3; dx++) s += grid[(y + dy) * cells + x + dx];
                if (s > agree) agree = s;
            }
        out->v[3 * out->len] = rec;
        out->v[3 * out->len + 1] = agree;
        out->v[3 * out->len + 2] = votes;
        out->len++;
    }
    qsort(out->v, out->len, 3 * sizeof(int64_t), cmp_row);
    rc = 0;
done:
    free(cand.v);
    free(raw);
    free(local);
    free(owners);
    free(best);
    free(grid);
    free(bounds);
    return rc;
}

static int get_buf(PyObject *obj, Py_buffer *view, const char *name, Py_ssize_t itemsize) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len % itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %zd-byte items",
                     name, view->len, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* agreeing(starts, postings, check, desc, xy, stride, nrec, qdesc, qxy, qkeys, qcheck,
 *          key_bits, max_bucket, check_distance, preselect, min_votes, shortlist_distance,
 *          min_count, shift_bin, norm_side, xy_step) -> bytes of int64 (row, agreeing, votes)
 * starts int32, postings int32, check uint16, desc uint8 (32 a row), xy uint8 (2 a row),
 * qdesc uint8 (32 a query keypoint), qxy float32 (2), qkeys int64, qcheck uint16. */
static PyObject *py_agreeing(PyObject *self, PyObject *args) {
    PyObject *o[9];
    job_t j;
    int stride, nrec;
    double xy_step;
    if (!PyArg_ParseTuple(args, "OOOOOiiOOOOiiiiiiiiid", &o[0], &o[1], &o[2], &o[3], &o[4],
                          &stride, &nrec, &o[5], &o[6], &o[7], &o[8], &j.key_bits,
                          &j.max_bucket, &j.check_distance, &j.preselect, &j.min_votes,
                          &j.shortlist_distance, &j.min_count, &j.shift_bin, &j.norm_side,
                          &xy_step))
        return NULL;
    static const char *names[9] = {"starts", "postings", "check", "desc", "xy",
                                   "qdesc",  "qxy",      "qkeys", "qcheck"};
    static const Py_ssize_t sizes[9] = {4, 4, 2, DESC_BYTES, 2, DESC_BYTES, 8, 8, 2};
    Py_buffer b[9];
    int got = 0;
    for (; got < 9; got++)
        if (get_buf(o[got], &b[got], names[got], sizes[got]) < 0) break;
    PyObject *res = NULL;
    if (got < 9) goto release;
    if (j.key_bits < MIN_KEY_BITS || j.key_bits > MAX_KEY_BITS || stride < 2 || nrec < 0 ||
        j.shift_bin < 1 || j.norm_side < 1 || j.preselect < 1 || j.shortlist_distance < 0 ||
        j.shortlist_distance > 255) {
        PyErr_SetString(PyExc_ValueError,
                        "agreeing: bad key_bits, stride, nrec, preselect, shortlist_distance or "
                        "shift grid");
        goto release;
    }
    j.stride = stride;
    j.nrec = nrec;
    j.xy_step = (float)xy_step;
    j.starts = b[0].buf;
    j.nstarts = b[0].len / 4;
    j.postings = b[1].buf;
    j.npost = b[1].len / 4;
    j.check = b[2].buf;
    j.desc = b[3].buf;
    j.xy = b[4].buf;
    j.nrows = (Py_ssize_t)stride * nrec;
    j.qdesc = b[5].buf;
    j.nq = b[5].len / DESC_BYTES;
    j.qxy = b[6].buf;
    j.qkeys = b[7].buf;
    j.qcheck = b[8].buf;
    if (j.nstarts != ((Py_ssize_t)1 << j.key_bits) + 1 || b[2].len / 2 != j.npost ||
        b[3].len / DESC_BYTES < j.nrows || b[4].len / 2 < j.nrows || b[6].len / 8 != j.nq ||
        b[7].len / 8 != j.nq || b[8].len / 2 != j.nq || j.nq >= (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "agreeing: array sizes do not agree");
        goto release;
    }
    out_t out = {0};
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = run(&j, &out);
    Py_END_ALLOW_THREADS;
    if (rc < 0) {
        free(out.v);
        PyErr_NoMemory();
        goto release;
    }
    res = PyBytes_FromStringAndSize((const char *)out.v, (Py_ssize_t)(out.len * 3 * sizeof(int64_t)));
    free(out.v);
release:
    for (int i = 0; i < got; i++) PyBuffer_Release(&b[i]);
    return res;
}

/* knn2(desc, qdesc) -> bytes of int32 (nearest query row, its distance, second-nearest
 * distance) per row of desc; the second distance is 257 when qdesc has one row, and the
 * nearest row is -1 with distances 257 when it has none. Of equally near rows, the first.
 * What verification's ratio test needs: OpenCV's BFMatcher.knnMatch(k=2) gives the same
 * distances, ~4 times slower (96 x 1000 descriptors: it spent most of a verification). */
static PyObject *py_knn2(PyObject *self, PyObject *args) {
    PyObject *so, *qo;
    if (!PyArg_ParseTuple(args, "OO", &so, &qo)) return NULL;
    Py_buffer sb, qb;
    if (get_buf(so, &sb, "desc", DESC_BYTES) < 0) return NULL;
    if (get_buf(qo, &qb, "qdesc", DESC_BYTES) < 0) {
        PyBuffer_Release(&sb);
        return NULL;
    }
    Py_ssize_t n = sb.len / DESC_BYTES, nq = qb.len / DESC_BYTES;
    PyObject *res = PyBytes_FromStringAndSize(NULL, n * 3 * (Py_ssize_t)sizeof(int32_t));
    if (res != NULL) {
        int32_t *out = (int32_t *)PyBytes_AS_STRING(res);
        const uint8_t *sd = sb.buf, *qd = qb.buf;
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t i = 0; i < n; i++) {
            int32_t best = -1, d1 = 257, d2 = 257;
            for (Py_ssize_t k = 0; k < nq; k++) {
                int32_t d = dist256(sd + i * DESC_BYTES, qd + k * DESC_BYTES);
                if (d < d1) {
                    d2 = d1;
                    d1 = d;
                    best = (int32_t)k;
                } else if (d < d2) {
                    d2 = d;
                }
            }
            out[3 * i] = best;
            out[3 * i + 1] = d1;
            out[3 * i + 2] = d2;
        }
        Py_END_ALLOW_THREADS;
    }
    PyBuffer_Release(&qb);
    PyBuffer_Release(&sb);
    return res;
}

static PyMethodDef methods[] = {
    {"agreeing", py_agreeing, METH_VARARGS, "Shortlist votes and agreeing votes of one view."},
    {"knn2", py_knn2, METH_VARARGS, "Nearest and second-nearest query descriptor of each row."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_shortlist",
                                    "Compiled shortlist of dignity.derivatives.matching.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__shortlist(void) { return PyModule_Create(&module); }

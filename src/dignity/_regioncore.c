/* Compiled kernels of dignity.regions: the separator runs of one block along one axis, the
 * long edge runs of the sample, the first picture line when refining an edge, a block's
 * dominant grey level, and the fill of a rounded corner.
 *
 * runs() computes exactly what regions._Runs decides in numpy and Python (the reference and
 * fallback, and the oracle of the tests): each line's mean grey level and spread over the
 * block's extent from the sample's integral images, the runs of plain lines whose level holds
 * within STEP from line to line and within DRIFT overall and whose colour holds between the
 * run's quarter points, and which of them meet content sharply at both ends. The XY cuts ask
 * this of some twenty blocks per upload; in numpy each answer was some fifty small calls, most
 * of the cuts' cost.
 *
 * Every sum is an integer (grey levels, their squares and the RGB channels summed by the
 * integral images), so the divisions and comparisons below give the same doubles as numpy's
 * (IEEE arithmetic, no fused multiply-add: -std=c11 keeps floating-point contraction off).
 * Only the buffer protocol is used (no numpy C API); the caller's arrays are C-contiguous and
 * every index is checked against their sizes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
    double plain_std, step, drift, sharp_std, sharp_step;
    int sharp_lines;
} params_t;

/* Whether content meets a run at `line` (the line before it, way -1, or after it, way 1) at
 * `level`: the block's edge, a plain line (another level), or within sharp_lines lines that
 * way a busy line or one far off the run's level. As regions._sharp. */
static int sharp_at(const double *mean, const double *spread, Py_ssize_t n, Py_ssize_t line,
                    int way, double level, const params_t *p) {
    if (line < 0 || line >= n || spread[line] <= p->plain_std) return 1;
    double busy = -1.0, off = -1.0;
    for (int j = 0; j < p->sharp_lines; j++) {
        Py_ssize_t at = line + (Py_ssize_t)way * j;
        if (at < 0) at = 0;
        if (at > n - 1) at = n - 1;
        if (spread[at] > busy) busy = spread[at];
        double d = fabs(mean[at] - level);
        if (d > off) off = d;
    }
    return busy > p->sharp_std || off > p->sharp_step;
}

static int get_buf(PyObject *o, Py_buffer *b, const char *name, Py_ssize_t itemsize,
                   Py_ssize_t need) {
    if (PyObject_GetBuffer(o, b, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (b->len < need * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, %zd needed", name, b->len,
                     need * itemsize);
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

static PyObject *pairs(const Py_ssize_t *a, const Py_ssize_t *b, const char *keep, Py_ssize_t n) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!keep[i]) continue;
        PyObject *t = Py_BuildValue("(nn)", a[i], b[i]);
        if (t == NULL || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
    }
    return out;
}

/* runs(s, q, rgb, height1, width1, x0, y0, x1, y1, axis,
 *      plain_std, step, drift, sharp_std, sharp_step, sharp_lines) -> (loose, strict)
 * s: int32 (height1 x width1) integral of grey; q: float64 integral of grey squared; rgb:
 * int32 (height1 x width1 x 3) integral of each channel. loose and strict are lists of
 * (start, end) lines of the block, as regions._Runs.loose and .strict. */
static PyObject *py_runs(PyObject *self, PyObject *args) {
    PyObject *so, *qo, *ro;
    Py_ssize_t h1, w1, x0, y0, x1, y1;
    int axis;
    params_t p;
    if (!PyArg_ParseTuple(args, "OOOnnnnnnidddddi", &so, &qo, &ro, &h1, &w1, &x0, &y0, &x1,
                          &y1, &axis, &p.plain_std, &p.step, &p.drift, &p.sharp_std,
                          &p.sharp_step, &p.sharp_lines))
        return NULL;
    if (h1 < 2 || w1 < 2 || x0 < 0 || y0 < 0 || x1 > w1 - 1 || y1 > h1 - 1 || x1 <= x0 ||
        y1 <= y0 || (axis != 0 && axis != 1) || p.sharp_lines < 1) {
        PyErr_SetString(PyExc_ValueError, "runs: bad block, sizes or axis");
        return NULL;
    }
    Py_buffer sb, qb, rb;
    if (get_buf(so, &sb, "s", 4, h1 * w1) < 0) return NULL;
    if (get_buf(qo, &qb, "q", 8, h1 * w1) < 0) {
        PyBuffer_Release(&sb);
        return NULL;
    }
    if (get_buf(ro, &rb, "rgb", 4, h1 * w1 * 3) < 0) {
        PyBuffer_Release(&qb);
        PyBuffer_Release(&sb);
        return NULL;
    }
    const int32_t *s = sb.buf, *rgb = rb.buf;
    const double *q = qb.buf;
    /* Lines along the axis (n of them) and the extent across (k pixels). Line i's sums are
     * the integral at [line i + 1] minus [line i], each the far minus the near corner. */
    Py_ssize_t n = axis == 0 ? y1 - y0 : x1 - x0;
    Py_ssize_t k = axis == 0 ? x1 - x0 : y1 - y0;
    Py_ssize_t lo = axis == 0 ? y0 : x0;
    double *mean = malloc(sizeof(double) * (size_t)n * 2);
    Py_ssize_t *starts = malloc(sizeof(Py_ssize_t) * (size_t)n * 2);
    char *flags = malloc((size_t)n * 2);
    PyObject *result = NULL;
    if (mean == NULL || starts == NULL || flags == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double *spread = mean + n;
    Py_ssize_t *ends = starts + n;
    char *loose = flags, *strict = flags + n;
    /* The integral's value at line l, across position c (axis 0: row l, column c). */
#define AT(l, c) (axis == 0 ? (l) * w1 + (c) : (c) * w1 + (l))
    Py_ssize_t near_c = axis == 0 ? x0 : y0, far_c = axis == 0 ? x1 : y1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t l = lo + i;
        int64_t total = ((int64_t)s[AT(l + 1, far_c)] - s[AT(l + 1, near_c)]) -
                        ((int64_t)s[AT(l, far_c)] - s[AT(l, near_c)]);
        double sq = (q[AT(l + 1, far_c)] - q[AT(l + 1, near_c)]) -
                    (q[AT(l, far_c)] - q[AT(l, near_c)]);
        double m = (double)total / (double)k;
        double v = sq / (double)k - m * m;
        mean[i] = m;
        spread[i] = sqrt(v > 0.0 ? v : 0.0);
    }
    /* Runs: a line starts one when it is plain and not joined to the line before (joined:
     * both plain and within step); it ends at the next line not joined. */
    Py_ssize_t runs = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int plain = spread[i] <= p.plain_std;
        int joined = i > 0 && plain && spread[i - 1] <= p.plain_std &&
                     fabs(mean[i] - mean[i - 1]) <= p.step;
        if (plain && !joined) {
            starts[runs] = i;
            ends[runs] = n;
            if (runs > 0 && ends[runs - 1] == n) ends[runs - 1] = i;
            runs++;
        } else if (!joined && runs > 0 && ends[runs - 1] == n) {
            ends[runs - 1] = i;
        }
    }
    for (Py_ssize_t r = 0; r < runs; r++) {
        Py_ssize_t a = starts[r], b = ends[r];
        double top = mean[a], bottom = mean[a];
        for (Py_ssize_t i = a + 1; i < b; i++) {
            if (mean[i] > top) top = mean[i];
            if (mean[i] < bottom) bottom = mean[i];
        }
        loose[r] = top - bottom <= p.drift;
        if (loose[r] && b - a >= 4) {
            /* Colour between the quarter points (a hue gradient's does not hold). */
            Py_ssize_t quarter = (b - a) / 4, one = lo + a + quarter, two = lo + b - 1 - quarter;
            for (int c = 0; c < 3 && loose[r]; c++) {
                int64_t t1 = (int64_t)rgb[AT(one + 1, far_c) * 3 + c] -
                             rgb[AT(one, far_c) * 3 + c] - rgb[AT(one + 1, near_c) * 3 + c] +
                             rgb[AT(one, near_c) * 3 + c];
                int64_t t2 = (int64_t)rgb[AT(two + 1, far_c) * 3 + c] -
                             rgb[AT(two, far_c) * 3 + c] - rgb[AT(two + 1, near_c) * 3 + c] +
                             rgb[AT(two, near_c) * 3 + c];
                if (fabs((double)t1 / (double)k - (double)t2 / (double)k) > 2 * p.drift)
                    loose[r] = 0;
            }
        }
        strict[r] = loose[r] && sharp_at(mean, spread, n, a - 1, -1, mean[a], &p) &&
                    sharp_at(mean, spread, n, b, 1, mean[b - 1], &p);
    }
#undef AT
    {
        PyObject *l = pairs(starts, ends, loose, runs);
        PyObject *t = l == NULL ? NULL : pairs(starts, ends, strict, runs);
        if (t != NULL) result = PyTuple_Pack(2, l, t);
        Py_XDECREF(l);
        Py_XDECREF(t);
    }
done:
    free(flags);
    free(starts);
    free(mean);
    PyBuffer_Release(&rb);
    PyBuffer_Release(&qb);
    PyBuffer_Release(&sb);
    return result;
}

/* edge_runs(grey, height, width, axis, min_len, step, most) -> [(line, start, end), ...]
 * As regions._edge_rects' steps and regions._runs: for axis 0, the step between rows y and
 * y + 1 at column x is an edge when the grey levels differ by more than `step`; gaps of one
 * value are bridged (from the unbridged edges: no chains); each run of at least min_len
 * edges along a line is (y, x0, x1), in order of line then start, the first `most`. Axis 1
 * is the same for the steps between columns x and x + 1, runs along y. */
static PyObject *py_edge_runs(PyObject *self, PyObject *args) {
    PyObject *go;
    Py_ssize_t h, w, min_len, most;
    int axis, step;
    if (!PyArg_ParseTuple(args, "Onninin", &go, &h, &w, &axis, &min_len, &step, &most))
        return NULL;
    if (h < 1 || w < 1 || (axis != 0 && axis != 1) || min_len < 1 || most < 0) {
        PyErr_SetString(PyExc_ValueError, "edge_runs: bad sizes or axis");
        return NULL;
    }
    Py_buffer gb;
    if (get_buf(go, &gb, "grey", 1, h * w) < 0) return NULL;
    const uint8_t *g = gb.buf;
    /* Lines: the h - 1 steps between rows (axis 0) or the w - 1 between columns (axis 1),
     * each `len` long. */
    Py_ssize_t lines = axis == 0 ? h - 1 : w - 1, len = axis == 0 ? w : h;
    char *edge = malloc((size_t)len * 2 + 2);
    PyObject *out = PyList_New(0);
    if (edge == NULL || out == NULL) {
        free(edge);
        Py_XDECREF(out);
        PyBuffer_Release(&gb);
        return PyErr_NoMemory();
    }
    char *bridged = edge + len;
    for (Py_ssize_t line = 0; line < lines && PyList_GET_SIZE(out) < most; line++) {
        for (Py_ssize_t i = 0; i < len; i++) {
            int a = axis == 0 ? g[line * w + i] : g[i * w + line];
            int b = axis == 0 ? g[(line + 1) * w + i] : g[i * w + line + 1];
            edge[i] = abs(b - a) > step;
        }
        for (Py_ssize_t i = 0; i < len; i++)
            bridged[i] = edge[i] || (i > 0 && i < len - 1 && edge[i - 1] && edge[i + 1]);
        for (Py_ssize_t i = 0; i < len && PyList_GET_SIZE(out) < most;) {
            if (!bridged[i]) {
                i++;
                continue;
            }
            Py_ssize_t j = i;
            while (j < len && bridged[j]) j++;
            if (j - i >= min_len) {
                PyObject *t = Py_BuildValue("(nnn)", line, i, j);
                if (t == NULL || PyList_Append(out, t) < 0) {
                    Py_XDECREF(t);
                    Py_DECREF(out);
                    free(edge);
                    PyBuffer_Release(&gb);
                    return NULL;
                }
                Py_DECREF(t);
            }
            i = j;
        }
    }
    free(edge);
    PyBuffer_Release(&gb);
    return out;
}

/* first_off(grey, height, width, x0, y0, x1, y1, axis, backward, plain_std, sharp_step)
 * -> index or -1. As regions._refine's first_off: the lines of the box (axis 1: its rows,
 * each averaged over the box's columns; axis 0: its columns), from the far side when
 * `backward`; the first line whose variance is over plain_std squared or whose level is
 * more than sharp_step off the first line's, or -1 if none. Integer sums, so the same
 * doubles as the Python walk. */
static PyObject *py_first_off(PyObject *self, PyObject *args) {
    PyObject *go;
    Py_ssize_t h, w, x0, y0, x1, y1;
    int axis, backward;
    double plain_std, sharp_step;
    if (!PyArg_ParseTuple(args, "Onnnnnniidd", &go, &h, &w, &x0, &y0, &x1, &y1, &axis,
                          &backward, &plain_std, &sharp_step))
        return NULL;
    if (x0 < 0 || y0 < 0 || x1 > w || y1 > h || (axis != 0 && axis != 1)) {
        PyErr_SetString(PyExc_ValueError, "first_off: bad box or axis");
        return NULL;
    }
    if (x1 <= x0 || y1 <= y0) return PyLong_FromLong(-1);
    Py_buffer gb;
    if (get_buf(go, &gb, "grey", 1, h * w) < 0) return NULL;
    const uint8_t *g = gb.buf;
    Py_ssize_t lines = axis == 1 ? y1 - y0 : x1 - x0, n = axis == 1 ? x1 - x0 : y1 - y0;
    Py_ssize_t found = -1;
    double first = 0.0, limit = plain_std * plain_std;
    for (Py_ssize_t k = 0; k < lines; k++) {
        Py_ssize_t line = backward ? lines - 1 - k : k;
        int64_t total = 0, squares = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            int v = axis == 1 ? g[(y0 + line) * w + x0 + i] : g[(y0 + i) * w + x0 + line];
            total += v;
            squares += v * v;
        }
        double level = (double)total / (double)n;
        if (k == 0) first = level;
        if ((double)squares / (double)n - level * level > limit ||
            fabs(level - first) > sharp_step) {
            found = k;
            break;
        }
    }
    PyBuffer_Release(&gb);
    return PyLong_FromSsize_t(found);
}

/* fill_corner(sample, height, width, corner, c, low, high) -> filled pixels. As
 * regions._fill_corner on the grey sample PDQ reads, in place: in the c x c square at
 * `corner` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right; seen from that corner,
 * as regions._corner_views flips it), the pixels within [low, high] joined to the corner in
 * a staircase (every pixel between them and the corner close too) take the value of the
 * first pixel past the staircase along their diagonal, unless they are over a quarter of
 * the square (the picture's own). */
static PyObject *py_fill_corner(PyObject *self, PyObject *args) {
    PyObject *po;
    Py_ssize_t h, w, c;
    int corner, low, high;
    if (!PyArg_ParseTuple(args, "Onninii", &po, &h, &w, &corner, &c, &low, &high)) return NULL;
    if (corner < 0 || corner > 3 || c < 1 || c > h || c > w) {
        PyErr_SetString(PyExc_ValueError, "fill_corner: bad corner or square");
        return NULL;
    }
    Py_buffer pb;
    if (PyObject_GetBuffer(po, &pb, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) return NULL;
    if (pb.len < h * w) {
        PyErr_SetString(PyExc_ValueError, "fill_corner: the sample is smaller than its sizes");
        PyBuffer_Release(&pb);
        return NULL;
    }
    uint8_t *px = pb.buf;
    int flip_y = corner >= 2, flip_x = corner == 1 || corner == 3;
#define V(i, j) px[(flip_y ? h - 1 - (i) : (i)) * w + (flip_x ? w - 1 - (j) : (j))]
#define CLOSE(i, j) (V(i, j) >= low && V(i, j) <= high)
    Py_ssize_t rx = 0, ry = 0, filled = 0;
    while (rx < c && CLOSE(0, rx)) rx++;
    while (ry < c && CLOSE(ry, 0)) ry++;
    Py_ssize_t *bound = NULL, *count = NULL;
    if (rx && ry) {
        bound = malloc(sizeof(Py_ssize_t) * (size_t)(rx + 2 * c));
        if (bound == NULL) {
            PyBuffer_Release(&pb);
            return PyErr_NoMemory();
        }
        count = bound + rx;
        /* The staircase: column j holds rows below bound[j], the smallest leading run of close
         * pixels of the columns up to j (within the first ry rows). */
        Py_ssize_t area = 0, lowest = ry;
        for (Py_ssize_t j = 0; j < rx; j++) {
            Py_ssize_t run = 0;
            while (run < lowest && CLOSE(run, j)) run++;
            lowest = run;
            bound[j] = lowest;
            area += lowest;
        }
        if ((double)area <= 0.25 * (double)c * (double)c) {
            for (Py_ssize_t d = 0; d < 2 * c; d++) count[d] = 0;
            for (Py_ssize_t j = 0; j < rx; j++)
                for (Py_ssize_t i = 0; i < bound[j]; i++) count[j - i + c - 1]++;
            for (Py_ssize_t j = 0; j < rx; j++) {
                for (Py_ssize_t i = 0; i < bound[j]; i++) {
                    Py_ssize_t k = count[j - i + c - 1] - (i < j ? i : j);
                    if (i + k < c && j + k < c) {
                        V(i, j) = V(i + k, j + k);
                        filled++;
                    }
                }
            }
        }
        free(bound);
    }
#undef CLOSE
#undef V
    PyBuffer_Release(&pb);
    return PyLong_FromSsize_t(filled);
}

/* dominant(sample, height, width, x0, y0, x1, y1) -> share. As regions._dominant: of every
 * other pixel of every other row of the box, the share in the most common of 32 grey
 * levels. */
static PyObject *py_dominant(PyObject *self, PyObject *args) {
    PyObject *ao;
    Py_ssize_t h, w, x0, y0, x1, y1;
    if (!PyArg_ParseTuple(args, "Onnnnnn", &ao, &h, &w, &x0, &y0, &x1, &y1)) return NULL;
    if (x0 < 0 || y0 < 0 || x1 > w || y1 > h) {
        PyErr_SetString(PyExc_ValueError, "dominant: bad box");
        return NULL;
    }
    Py_buffer ab;
    if (get_buf(ao, &ab, "sample", 1, h * w) < 0) return NULL;
    const uint8_t *a = ab.buf;
    Py_ssize_t hist[32] = {0}, total = 0, most = 0;
    for (Py_ssize_t y = y0; y < y1; y += 2)
        for (Py_ssize_t x = x0; x < x1; x += 2) {
            hist[a[y * w + x] >> 3]++;
            total++;
        }
    for (int i = 0; i < 32; i++)
        if (hist[i] > most) most = hist[i];
    PyBuffer_Release(&ab);
    return PyFloat_FromDouble((double)most / (double)(total > 1 ? total : 1));
}

static PyMethodDef methods[] = {
    {"fill_corner", py_fill_corner, METH_VARARGS, "Undo a rounded corner of a grey sample."},
    {"dominant", py_dominant, METH_VARARGS, "Share of a box's most common grey level."},
    {"runs", py_runs, METH_VARARGS, "Separator runs (loose, strict) of one block along one axis."},
    {"edge_runs", py_edge_runs, METH_VARARGS, "Long runs of edges between lines of a sample."},
    {"first_off", py_first_off, METH_VARARGS, "First busy or off-level line of a box."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_regioncore",
                                    "Compiled kernels of dignity.regions.", -1, methods};

PyMODINIT_FUNC PyInit__regioncore(void) { return PyModule_Create(&module); }

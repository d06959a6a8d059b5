/* Clean JSON telemetry points straight into stored rows, in one pass.
 *
 * Why this exists: decoding a point into Python objects (msgspec's struct,
 * a float object per field) and copying those into numpy columns costs
 * about 1.5 us a point, the largest share of UDP and HTTP ingest. Scanning
 * the bytes and writing doubles into the row buffer costs a fifth of that
 * (bench/parse.py).
 *
 * It only ever accepts: anything outside the plainest JSON (an escape or a
 * non-ASCII byte in a string, a nested value, a repeated field, an ISO
 * time, NDJSON that is not one value a line, a missing chassis, a value
 * out of range) refuses the whole
 * payload, and the Python tiers (strict_decode, then validate) take it as
 * before. So a point is accepted or rejected exactly as without this
 * module; only the cost differs. tests/test_row_scan.py checks that
 * against the strict decoder.
 *
 * Every read is bounds-checked against the payload's end: this parses
 * bytes straight off the network. For the same reason a call keeps at most
 * as many distinct names as the name tables can hold: past that a payload
 * is refused (its points would be table_full anyway), so names crafted to
 * collide in the hash cannot make a call's lookups quadratic without bound.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum Kind { K_CHASSIS, K_VEHICLE_ID, K_TRACK, K_TIME, K_FLOAT, K_INT };

#define MAX_KEYS 32
#define MAX_SLOTS 32
#define MAX_KEY_LEN 64

typedef struct {
    char name[MAX_KEY_LEN];
    Py_ssize_t len;
    int kind;
    int slot; /* value slot for numbers; column written for canonical ones */
    double low, high;
} Key;

typedef struct {
    PyObject_HEAD
    Key keys[MAX_KEYS];
    int nkeys;
    int ncolumns;              /* canonical numeric fields, packed in the row */
    int nslots;                /* canonical + alias slots */
    int alias_column[MAX_SLOTS]; /* for slot >= ncolumns: the column it fills */
    Py_ssize_t row_size, off_t, off_recv_t, off_chassis, off_track, off_source, off_numeric;
    Py_ssize_t max_name_len;
    double ms_threshold;       /* epoch numbers above this are milliseconds */
} Scanner;

/* -- names: distinct names seen in one call, each with a small local id -- */

typedef struct {
    const char *ptr;
    Py_ssize_t len;
} Name;

typedef struct {
    Name *names;     /* by local id */
    Py_ssize_t count, cap, limit;
    int32_t *slots;  /* open addressing: local id + 1, 0 = empty */
    Py_ssize_t nslots;
} NameSet;

static uint64_t hash_bytes(const char *p, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int nameset_init(NameSet *s, Py_ssize_t limit) {
    s->count = 0;
    s->limit = limit;
    s->cap = 16;
    s->nslots = 64;
    s->names = PyMem_Malloc(sizeof(Name) * s->cap);
    s->slots = PyMem_Calloc(s->nslots, sizeof(int32_t));
    return (s->names && s->slots) ? 0 : -1;
}

static void nameset_free(NameSet *s) {
    PyMem_Free(s->names);
    PyMem_Free(s->slots);
}

static int nameset_grow(NameSet *s) {
    Py_ssize_t nslots = s->nslots * 2;
    int32_t *slots = PyMem_Calloc(nslots, sizeof(int32_t));
    if (!slots) return -1;
    for (Py_ssize_t id = 0; id < s->count; id++) {
        uint64_t i = hash_bytes(s->names[id].ptr, s->names[id].len) & (nslots - 1);
        while (slots[i]) i = (i + 1) & (nslots - 1);
        slots[i] = (int32_t)(id + 1);
    }
    PyMem_Free(s->slots);
    s->slots = slots;
    s->nslots = nslots;
    return 0;
}

/* The local id of a name, added if new; -1 past the limit or out of memory. */
static int32_t nameset_id(NameSet *s, const char *p, Py_ssize_t n) {
    uint64_t mask = s->nslots - 1;
    uint64_t i = hash_bytes(p, n) & mask;
    while (s->slots[i]) {
        Name *known = &s->names[s->slots[i] - 1];
        if (known->len == n && memcmp(known->ptr, p, n) == 0) return s->slots[i] - 1;
        i = (i + 1) & mask;
    }
    if (s->count >= s->limit) return -1;
    if (s->count == s->cap) {
        Name *names = PyMem_Realloc(s->names, sizeof(Name) * s->cap * 2);
        if (!names) return -1;
        s->names = names;
        s->cap *= 2;
    }
    s->names[s->count].ptr = p;
    s->names[s->count].len = n;
    s->slots[i] = (int32_t)(s->count + 1);
    s->count++;
    if (s->count * 2 > s->nslots && nameset_grow(s) < 0) return -1;
    return (int32_t)(s->count - 1);
}

/* Forget the names added since ``count`` was ``mark`` (a refused payload's).
 * They are the newest entries, so no probe chain of an older one passes
 * through their slots, and clearing them is safe. */
static void nameset_rollback(NameSet *s, Py_ssize_t mark) {
    uint64_t mask = s->nslots - 1;
    while (s->count > mark) {
        s->count--;
        Name *gone = &s->names[s->count];
        uint64_t i = hash_bytes(gone->ptr, gone->len) & mask;
        while (s->slots[i] != s->count + 1) i = (i + 1) & mask;
        s->slots[i] = 0;
    }
}

/* -- JSON pieces: each returns the position after what it read, or NULL -- */

static inline const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/* A string with no escape, control or non-ASCII byte; p is at its quote. */
static inline const char *plain_string(const char *p, const char *end, const char **s,
                                       Py_ssize_t *n) {
    const char *start = ++p;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            *s = start;
            *n = p - start;
            return p + 1;
        }
        if (c == '\\' || c < 0x20 || c >= 0x80) return NULL;
        p++;
    }
    return NULL;
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#define EXACT_MANTISSA (1ULL << 53)

/* -- decimal to double by one 128-bit multiply (Eisel and Lemire's method) --
 *
 * Why: real telemetry is full of 17-digit decimals (a float32 sensor value
 * printed as a double: 0.5640000128746033), and a mantissa past 2^53 has no
 * exact IEEE path. CPython's correctly rounded conversion took those at
 * about twice the cost of a whole short-decimal point. Multiplying the
 * normalised mantissa by a 128-bit approximation of 5^q nearly always
 * fixes the 53 bits that matter; when the product is too close to a
 * rounding boundary to decide, or the result would be subnormal or
 * infinite, this says so and the caller takes the slow path, so the result
 * is the correctly rounded double either way (tests/test_powers_of_five.py
 * compares it bit for bit with float(): senders' numbers, halfway cases,
 * hypothesis doubles). The
 * table comes from pitwall_rt/powers_of_five.py, computed with exact
 * integers at import. */

#define POW5_SMALLEST (-342)
#define POW5_LARGEST 308
#define POW5_COUNT (POW5_LARGEST - POW5_SMALLEST + 1)

static uint64_t POW5[2 * POW5_COUNT]; /* high word, low word, from 5^-342 up */
static int pow5_ready = 0;

/* 1 with *out = w * 10^q when the product decides it; 0 for the slow path. */
static int decimal_to_double(uint64_t w, int q, double *out) {
#ifdef __SIZEOF_INT128__
    if (!pow5_ready || w == 0 || q < POW5_SMALLEST || q > POW5_LARGEST) return 0;
    int lz = __builtin_clzll(w);
    w <<= lz;
    const uint64_t *power = &POW5[2 * (q - POW5_SMALLEST)];
    unsigned __int128 product = (unsigned __int128)w * power[0];
    uint64_t high = (uint64_t)(product >> 64), low = (uint64_t)product;
    if ((high & 0x1FF) == 0x1FF) {
        /* The bits that decide the rounding may still carry: add the
         * product with the low word of the power. */
        uint64_t more = (uint64_t)(((unsigned __int128)w * power[1]) >> 64);
        low += more;
        if (low < more) high++;
        if (low == UINT64_MAX) return 0; /* still too close to call */
    }
    int upper = (int)(high >> 63);
    int shift = upper + 9;
    uint64_t mantissa = high >> shift;
    /* floor(q * log2(10)) by a fixed-point multiply, exact over the table */
    int64_t power2 = ((((int64_t)152170 + 65536) * q) >> 16) + 63 + upper - lz + 1023;
    if (power2 <= 0 || power2 >= 2046) return 0; /* subnormal or near infinity */
    if (low <= 1 && (mantissa & 3) == 1 && (mantissa << shift) == high)
        return 0; /* maybe exactly halfway: round-to-even needs the exact value */
    mantissa += mantissa & 1;
    mantissa >>= 1;
    if (mantissa >= (2ULL << 52)) { /* rounding carried into a new bit */
        mantissa = 1ULL << 52;
        power2++;
    }
    if (power2 >= 2047) return 0;
    uint64_t bits = (mantissa & ~(1ULL << 52)) | ((uint64_t)power2 << 52);
    memcpy(out, &bits, sizeof bits);
    return 1;
#else
    (void)w, (void)q, (void)out;
    return 0;
#endif
}

/* A JSON number. *integer says it had neither fraction nor exponent.
 * With ``value`` NULL it is only checked against the grammar (a skipped
 * field). Otherwise it is converted as msgspec converts it, correctly
 * rounded: an integer of up to 19 digits exactly through int64 (so -0 is
 * 0, as msgspec's int gives); a mantissa below 2^53 with a power of ten
 * within 1e22 by one IEEE multiply or divide, which is exact; a longer
 * mantissa (up to 19 digits) or a larger power by decimal_to_double when
 * it can decide; anything else by CPython's own correctly rounded
 * string-to-double. */
static const char *number(const char *p, const char *end, double *value, int *integer) {
    const char *start = p;
    int negative = 0, digits = 0, exp10 = 0, exact = 1;
    uint64_t mantissa = 0;
    if (p < end && *p == '-') {
        negative = 1;
        p++;
    }
    if (p >= end) return NULL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                digits++;
            } else {
                exact = 0;
            }
            p++;
        }
    } else {
        return NULL;
    }
    *integer = 1;
    if (p < end && *p == '.') {
        *integer = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') {
            int d = *p - '0';
            if (digits == 0 && d == 0) {
                exp10--; /* a leading zero is no significant digit */
            } else if (digits < 19) {
                mantissa = mantissa * 10 + (uint64_t)d;
                digits++;
                exp10--;
            } else {
                exact = 0;
            }
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        int negative_exp = 0, exp = 0, exp_digits = 0;
        *integer = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) negative_exp = (*p++ == '-');
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') {
            if (exp_digits < 6) exp = exp * 10 + (*p - '0');
            exp_digits++;
            p++;
        }
        if (exp_digits >= 6) exact = 0;
        exp10 += negative_exp ? -exp : exp;
    }
    if (value == NULL) return p;
    if (exact && *integer && mantissa <= (uint64_t)INT64_MAX) {
        int64_t whole = negative ? -(int64_t)mantissa : (int64_t)mantissa;
        *value = (double)whole;
        return p;
    }
    if (exact && !*integer && mantissa == 0) {
        *value = negative ? -0.0 : 0.0;
        return p;
    }
    if (exact && !*integer && mantissa <= EXACT_MANTISSA && exp10 >= -22 && exp10 <= 22) {
        double v = (double)mantissa;
        v = exp10 < 0 ? v / POW10[-exp10] : v * POW10[exp10];
        *value = negative ? -v : v;
        return p;
    }
    if (exact && !*integer) {
        double v;
        if (decimal_to_double(mantissa, exp10, &v)) {
            *value = negative ? -v : v;
            return p;
        }
    }
    /* The text is a JSON number, which CPython's parser reads whole; it
     * stops at the delimiter after it (the payload's bytes object ends in
     * a NUL in any case). */
    char *stop = NULL;
    double v = PyOS_string_to_double(start, &stop, NULL);
    if (stop != p) {
        PyErr_Clear();
        return NULL;
    }
    *value = v;
    return p;
}

static inline int literal(const char *p, const char *end, const char *word, Py_ssize_t n) {
    return end - p >= n && memcmp(p, word, n) == 0;
}

/* Skip a field's value: a number, plain string, true, false or null.
 * Arrays and objects refuse (rare in telemetry, and msgspec reads them). */
static const char *skip_value(const char *p, const char *end) {
    const char *s;
    Py_ssize_t n;
    int integer;
    if (p >= end) return NULL;
    switch (*p) {
    case '"':
        return plain_string(p, end, &s, &n);
    case 't':
        return literal(p, end, "true", 4) ? p + 4 : NULL;
    case 'f':
        return literal(p, end, "false", 5) ? p + 5 : NULL;
    case 'n':
        return literal(p, end, "null", 4) ? p + 4 : NULL;
    default:
        return number(p, end, NULL, &integer);
    }
}

static inline const Key *find_key(const Scanner *sc, const char *s, Py_ssize_t n, int *hint) {
    /* Senders repeat one key order, so the key after the last match is
     * tried first. */
    int k = *hint;
    for (int tried = 0; tried < sc->nkeys; tried++) {
        const Key *key = &sc->keys[k];
        if (key->len == n && memcmp(key->name, s, n) == 0) {
            *hint = k + 1 == sc->nkeys ? 0 : k + 1;
            return key;
        }
        k = k + 1 == sc->nkeys ? 0 : k + 1;
    }
    return NULL;
}

typedef struct {
    PyObject *buffer; /* bytearray of rows, grown as points come */
    char *rows;
    Py_ssize_t capacity;
    Py_ssize_t count;
    int out_of_memory;
    NameSet chassis, track;
    int hint;
} Out;

/* Room for one more row; 0 and ``out_of_memory`` set when there is none. */
static int reserve_row(const Scanner *sc, Out *out) {
    if (out->count < out->capacity) return 1;
    Py_ssize_t capacity = out->capacity * 2;
    if (PyByteArray_Resize(out->buffer, capacity * sc->row_size) < 0) {
        PyErr_Clear();
        out->out_of_memory = 1;
        return 0;
    }
    out->rows = PyByteArray_AS_STRING(out->buffer);
    out->capacity = capacity;
    return 1;
}

/* One point object (p at its brace) into the next row. */
static const char *point(const Scanner *sc, const char *p, const char *end, Out *out) {
    double slots[MAX_SLOTS];
    double t = NAN;
    const char *names[3] = {NULL, NULL, NULL};
    Py_ssize_t name_len[3] = {0, 0, 0};
    uint32_t seen = 0;
    for (int i = 0; i < sc->nslots; i++) slots[i] = NAN;
    if (!reserve_row(sc, out)) return NULL;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') return NULL; /* no chassis */
    for (;;) {
        const char *key_s;
        Py_ssize_t key_n;
        if (p >= end || *p != '"') return NULL;
        p = plain_string(p, end, &key_s, &key_n);
        if (!p) return NULL;
        p = skip_ws(p, end);
        if (p >= end || *p != ':') return NULL;
        p = skip_ws(p + 1, end);
        if (p >= end) return NULL;
        const Key *key = find_key(sc, key_s, key_n, &out->hint);
        if (key == NULL) {
            p = skip_value(p, end);
            if (!p) return NULL;
        } else {
            uint32_t bit = 1u << (key - sc->keys);
            if (seen & bit) return NULL; /* a repeated field: msgspec keeps the last */
            seen |= bit;
            if (*p == 'n') {
                if (!literal(p, end, "null", 4)) return NULL;
                p += 4;
            } else if (key->kind <= K_TRACK) {
                const char *s;
                Py_ssize_t n;
                if (*p != '"') return NULL;
                p = plain_string(p, end, &s, &n);
                if (!p || n < 1 || n > sc->max_name_len) return NULL;
                names[key->kind] = s;
                name_len[key->kind] = n;
            } else {
                double v;
                int integer;
                p = number(p, end, &v, &integer);
                if (!p) return NULL;
                if (key->kind == K_TIME) {
                    if (v > sc->ms_threshold) v = v / 1000.0;
                    if (!(v > 0 && v <= sc->ms_threshold)) return NULL;
                    t = v;
                } else {
                    if (key->kind == K_INT && !integer) return NULL;
                    if (!(v >= key->low && v <= key->high)) return NULL;
                    slots[key->slot] = v;
                }
            }
        }
        p = skip_ws(p, end);
        if (p >= end) return NULL;
        if (*p == '}') break;
        if (*p != ',') return NULL;
        p = skip_ws(p + 1, end);
    }
    const char *chassis = names[K_CHASSIS];
    Py_ssize_t chassis_len = name_len[K_CHASSIS];
    if (chassis == NULL) {
        chassis = names[K_VEHICLE_ID];
        chassis_len = name_len[K_VEHICLE_ID];
    }
    if (chassis == NULL) return NULL;
    int32_t chassis_id = nameset_id(&out->chassis, chassis, chassis_len);
    int32_t track_id = -1;
    if (names[K_TRACK] != NULL) track_id = nameset_id(&out->track, names[K_TRACK], name_len[K_TRACK]);
    if (chassis_id < 0 || (names[K_TRACK] != NULL && track_id < 0)) return NULL;
    /* An alias fills its field only where the canonical name was absent. */
    for (int i = sc->ncolumns; i < sc->nslots; i++) {
        int column = sc->alias_column[i];
        if (isnan(slots[column])) slots[column] = slots[i];
    }
    char *row = out->rows + out->count * sc->row_size;
    memcpy(row + sc->off_t, &t, sizeof t);
    memcpy(row + sc->off_chassis, &chassis_id, sizeof chassis_id);
    memcpy(row + sc->off_track, &track_id, sizeof track_id);
    memcpy(row + sc->off_numeric, slots, sizeof(double) * sc->ncolumns);
    out->count++;
    return p + 1;
}

enum Status { ACCEPTED = 0, EMPTY = 1, REFUSED = 2 };

/* One JSON value at p: a point or an array of points. Returns the end of
 * it, NULL to refuse; *empty says it was an empty array. */
static const char *value(const Scanner *sc, const char *p, const char *end, Out *out,
                         int *empty) {
    *empty = 0;
    if (p >= end) return NULL;
    if (*p == '{') return point(sc, p, end, out);
    if (*p != '[') return NULL;
    p = skip_ws(p + 1, end);
    if (p < end && *p == ']') {
        *empty = 1;
        return p + 1;
    }
    for (;;) {
        if (p >= end || *p != '{') return NULL;
        p = point(sc, p, end, out);
        if (!p) return NULL;
        p = skip_ws(p, end);
        if (p >= end) return NULL;
        if (*p == ']') return p + 1;
        if (*p != ',') return NULL;
        p = skip_ws(p + 1, end);
    }
}

static inline int has_newline(const char *from, const char *to) {
    return memchr(from, '\n', (size_t)(to - from)) != NULL;
}

/* A whole payload: one JSON value, or with ``lines`` NDJSON.
 *
 * The general path reads a payload whole first and only when that fails
 * line by line (bytes.splitlines, blank lines skipped), so NDJSON is taken
 * here only where that reading is the obvious one: every value on a line
 * of its own, none spanning lines, no CR anywhere (splitlines ends a line
 * at a lone CR), no empty array (the general path counts each). */
static int payload(const Scanner *sc, const char *p, const char *end, int lines, Out *out) {
    const char *first = skip_ws(p, end);
    int empty;
    const char *stop = value(sc, first, end, out, &empty);
    if (!stop) return REFUSED;
    const char *next = skip_ws(stop, end);
    if (next == end) return empty ? EMPTY : ACCEPTED;
    if (!lines || empty || memchr(p, '\r', (size_t)(end - p)) || has_newline(first, stop))
        return REFUSED;
    while (next < end) {
        if (!has_newline(stop, next)) return REFUSED; /* two values on one line */
        first = next;
        stop = value(sc, first, end, out, &empty);
        if (!stop || empty || has_newline(first, stop)) return REFUSED;
        next = skip_ws(stop, end);
    }
    return ACCEPTED;
}

/* -- the Python type -- */

static int Scanner_init(Scanner *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"keys",      "alias_columns", "row_size",    "off_t",
                             "off_recv_t", "off_chassis",  "off_track",   "off_source",
                             "off_numeric", "ncolumns",    "max_name_len", "ms_threshold",
                             NULL};
    PyObject *keys, *alias_columns;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOnnnnnnnind", kwlist, &keys, &alias_columns,
                                     &self->row_size, &self->off_t, &self->off_recv_t,
                                     &self->off_chassis, &self->off_track, &self->off_source,
                                     &self->off_numeric, &self->ncolumns, &self->max_name_len,
                                     &self->ms_threshold))
        return -1;
    if (!PyList_Check(keys) || PyList_GET_SIZE(keys) > MAX_KEYS || !PyList_Check(alias_columns) ||
        self->ncolumns < 0 || self->ncolumns + PyList_GET_SIZE(alias_columns) > MAX_SLOTS) {
        PyErr_SetString(PyExc_ValueError, "keys and alias_columns must be short lists");
        return -1;
    }
    self->nkeys = (int)PyList_GET_SIZE(keys);
    for (int i = 0; i < self->nkeys; i++) {
        Key *key = &self->keys[i];
        const char *name;
        Py_ssize_t len;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(keys, i), "s#iidd", &name, &len, &key->kind,
                              &key->slot, &key->low, &key->high))
            return -1;
        if (len >= MAX_KEY_LEN || key->kind < K_CHASSIS || key->kind > K_INT ||
            key->slot < 0 || key->slot >= MAX_SLOTS) {
            PyErr_Format(PyExc_ValueError, "bad key %d", i);
            return -1;
        }
        memcpy(key->name, name, len);
        key->len = len;
    }
    self->nslots = self->ncolumns + (int)PyList_GET_SIZE(alias_columns);
    for (int i = self->ncolumns; i < self->nslots; i++) {
        long column = PyLong_AsLong(PyList_GET_ITEM(alias_columns, i - self->ncolumns));
        if (column < 0 || column >= self->ncolumns) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad alias column");
            return -1;
        }
        self->alias_column[i] = (int)column;
    }
    Py_ssize_t size = self->row_size;
    if (size < 1 || self->off_t < 0 || self->off_t + 8 > size || self->off_recv_t < 0 ||
        self->off_recv_t + 8 > size || self->off_chassis < 0 || self->off_chassis + 4 > size ||
        self->off_track < 0 || self->off_track + 4 > size || self->off_source < 0 ||
        self->off_source + 1 > size || self->off_numeric < 0 ||
        self->off_numeric + 8 * self->ncolumns > size) {
        PyErr_SetString(PyExc_ValueError, "field offsets outside the row");
        return -1;
    }
    return 0;
}

/* Table ids for a call's distinct names, from ``intern`` (a StringTable's);
 * NULL with its exception (TableFullError) when it raises. */
static int32_t *table_ids(NameSet *names, PyObject *intern) {
    int32_t *ids = PyMem_Malloc(sizeof(int32_t) * (names->count ? names->count : 1));
    if (!ids) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < names->count; i++) {
        PyObject *name = PyUnicode_DecodeASCII(names->names[i].ptr, names->names[i].len, NULL);
        PyObject *id = name ? PyObject_CallOneArg(intern, name) : NULL;
        Py_XDECREF(name);
        long value = id ? PyLong_AsLong(id) : -1;
        Py_XDECREF(id);
        if (value < 0 || value > INT32_MAX) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "intern gave a bad id");
            PyMem_Free(ids);
            return NULL;
        }
        ids[i] = (int32_t)value;
    }
    return ids;
}

/* Local name ids to table ids (no track: id 0), and the times: ``now_s``
 * is ``recv_t``, and ``t`` where no meta_time came. */
static void finish_rows(const Scanner *sc, Out *out, const int32_t *chassis_ids,
                        const int32_t *track_ids, double now_s) {
    const unsigned char source = 0; /* Ingestor.store sets the real one */
    for (Py_ssize_t i = 0; i < out->count; i++) {
        char *row = out->rows + i * sc->row_size;
        int32_t local;
        double t;
        memcpy(&local, row + sc->off_chassis, sizeof local);
        memcpy(row + sc->off_chassis, &chassis_ids[local], sizeof local);
        memcpy(&local, row + sc->off_track, sizeof local);
        int32_t track = local < 0 ? 0 : track_ids[local];
        memcpy(row + sc->off_track, &track, sizeof track);
        memcpy(&t, row + sc->off_t, sizeof t);
        if (isnan(t)) memcpy(row + sc->off_t, &now_s, sizeof now_s);
        memcpy(row + sc->off_recv_t, &now_s, sizeof now_s);
        memcpy(row + sc->off_source, &source, 1);
    }
}

PyDoc_STRVAR(scan_doc,
             "scan(payloads, intern_chassis, max_chassis, intern_track, max_tracks, now_s,\n"
             "     lines)\n"
             "    -> (rows, status)\n\n"
             "The points of every payload this scanner accepts, in order, as a\n"
             "bytearray of stored rows with table ids from the intern callables\n"
             "(which may raise). A payload that would bring the call's distinct\n"
             "names past max_chassis or max_tracks is refused. ``status`` has a\n"
             "byte per payload: 0 accepted, 1 an empty array, 2 refused (nothing\n"
             "of it kept). With ``lines`` false, NDJSON is refused.");

static PyObject *Scanner_scan(Scanner *self, PyObject *args) {
    PyObject *payloads, *intern_chassis, *intern_track;
    Py_ssize_t max_chassis, max_tracks;
    double now_s;
    int lines;
    if (!PyArg_ParseTuple(args, "O!OnOndp", &PyList_Type, &payloads, &intern_chassis,
                          &max_chassis, &intern_track, &max_tracks, &now_s, &lines))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(payloads), total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(payloads, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "payloads must be bytes");
            return NULL;
        }
        total += PyBytes_GET_SIZE(item);
    }
    PyObject *result = NULL, *status = NULL;
    int32_t *chassis_ids = NULL, *track_ids = NULL;
    /* A first guess of 128 bytes a point (the bench's are 241); grown x2. */
    Py_ssize_t guess = total / 128 + 16;
    Out out = {.buffer = PyByteArray_FromStringAndSize(NULL, guess * self->row_size),
               .capacity = guess};
    int ready = nameset_init(&out.chassis, max_chassis) == 0;
    ready = nameset_init(&out.track, max_tracks) == 0 && ready;
    status = PyBytes_FromStringAndSize(NULL, n);
    if (!out.buffer || !status) goto done;
    if (!ready) {
        PyErr_NoMemory();
        goto done;
    }
    out.rows = PyByteArray_AS_STRING(out.buffer);
    char *codes = PyBytes_AS_STRING(status);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(payloads, i);
        const char *p = PyBytes_AS_STRING(item);
        Py_ssize_t marks[3] = {out.count, out.chassis.count, out.track.count};
        int code = payload(self, p, p + PyBytes_GET_SIZE(item), lines, &out);
        if (out.out_of_memory) {
            PyErr_NoMemory();
            goto done;
        }
        if (code != ACCEPTED) {
            out.count = marks[0];
            nameset_rollback(&out.chassis, marks[1]);
            nameset_rollback(&out.track, marks[2]);
        }
        codes[i] = (char)code;
    }
    chassis_ids = table_ids(&out.chassis, intern_chassis);
    track_ids = chassis_ids ? table_ids(&out.track, intern_track) : NULL;
    if (!track_ids) goto done;
    finish_rows(self, &out, chassis_ids, track_ids, now_s);
    if (PyByteArray_Resize(out.buffer, out.count * self->row_size) < 0) goto done;
    result = PyTuple_Pack(2, out.buffer, status);
done:
    Py_XDECREF(out.buffer);
    Py_XDECREF(status);
    PyMem_Free(chassis_ids);
    PyMem_Free(track_ids);
    nameset_free(&out.chassis);
    nameset_free(&out.track);
    return result;
}

static PyMethodDef Scanner_methods[] = {
    {"scan", (PyCFunction)Scanner_scan, METH_VARARGS, scan_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    .ob_base = PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pitwall_rt._row_scan.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Scans clean JSON points into stored rows (see pitwall_rt.row_scan).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_methods = Scanner_methods,
};

static PyObject *set_powers_of_five(PyObject *module, PyObject *table) {
    (void)module;
    char *data;
    Py_ssize_t size;
    if (PyBytes_AsStringAndSize(table, &data, &size) < 0) return NULL;
    if (size != (Py_ssize_t)sizeof POW5) {
        PyErr_Format(PyExc_ValueError, "expected %zd bytes of powers of five", sizeof POW5);
        return NULL;
    }
    memcpy(POW5, data, sizeof POW5);
    pow5_ready = 1;
    Py_RETURN_NONE;
}

static PyObject *to_double(PyObject *module, PyObject *text) {
    (void)module;
    char *s;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(text, &s, &n) < 0) return NULL;
    double value;
    int integer;
    const char *end = number(s, s + n, &value, &integer);
    if (end != s + n) Py_RETURN_NONE;
    return PyFloat_FromDouble(value);
}

static PyMethodDef module_methods[] = {
    {"set_powers_of_five", set_powers_of_five, METH_O,
     "Install the 128-bit powers of five (pitwall_rt.powers_of_five.table())."},
    {"to_double", to_double, METH_O,
     "A JSON number's bytes as the scanner converts them; None if they are not one."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_row_scan", "JSON points to stored rows in one pass.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__row_scan(void) {
    if (PyType_Ready(&ScannerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

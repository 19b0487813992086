/*
 * hs_redact: a Hyperscan peer for logveil's benchmark (benches/compare.sh).
 *
 *   hs_redact RULES_FILE [DB_CACHE] < in.log > out.log
 *
 * RULES_FILE holds one extended regex per line (benches/peer_rules.txt). All of
 * them go into one Hyperscan block-mode database with HS_FLAG_SOM_LEFTMOST; each
 * input line is scanned on its own, every reported [from, to) span is collected,
 * overlapping or touching spans are merged, and each merged span is written as
 * "[REDACTED]". Lines are never added or removed.
 *
 * Compiling the database can take seconds (SOM tracking is costly to build). With
 * DB_CACHE, a serialized database is loaded from that file when it is newer than
 * RULES_FILE, and written there otherwise, so a benchmark can compile once up
 * front and time the scan alone (as a deployment that ships a compiled database).
 *
 * Build: gcc -O2 -o hs_redact hs_redact.c $(pkg-config --cflags --libs libhs)
 */
#include <errno.h>
#include <hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    unsigned long long from, to;
} span_t;

typedef struct {
    span_t *v;
    size_t n, cap;
} spans_t;

static void die(const char *msg) {
    fprintf(stderr, "hs_redact: %s\n", msg);
    exit(2);
}

static int on_match(unsigned int id, unsigned long long from, unsigned long long to,
                    unsigned int flags, void *ctx) {
    (void)id;
    (void)flags;
    spans_t *s = ctx;
    /* Repeats report every end offset; extend the last span instead of growing. */
    if (s->n && s->v[s->n - 1].from == from) {
        if (to > s->v[s->n - 1].to) s->v[s->n - 1].to = to;
        return 0;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof(span_t));
        if (!s->v) die("out of memory");
    }
    s->v[s->n].from = from;
    s->v[s->n].to = to;
    s->n++;
    return 0;
}

static int by_from(const void *a, const void *b) {
    const span_t *x = a, *y = b;
    return x->from < y->from ? -1 : x->from > y->from;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "hs_redact: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static hs_database_t *compile(const char *path) {
    size_t rlen;
    char *rules = read_file(path, &rlen);
    size_t cap = 64, n = 0;
    const char **exprs = malloc(cap * sizeof(char *));
    for (char *line = strtok(rules, "\n"); line; line = strtok(NULL, "\n")) {
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = 0;
        if (!l) continue;
        if (n == cap) {
            cap *= 2;
            exprs = realloc(exprs, cap * sizeof(char *));
        }
        exprs[n++] = line;
    }
    if (!n) die("no patterns");
    unsigned int *flags = malloc(n * sizeof(unsigned int));
    unsigned int *ids = malloc(n * sizeof(unsigned int));
    for (size_t i = 0; i < n; i++) {
        flags[i] = HS_FLAG_SOM_LEFTMOST;
        ids[i] = (unsigned int)i;
    }
    hs_database_t *db = NULL;
    hs_compile_error_t *err = NULL;
    if (hs_compile_multi(exprs, flags, ids, (unsigned int)n, HS_MODE_BLOCK, NULL, &db, &err) !=
        HS_SUCCESS) {
        if (err->expression >= 0)
            fprintf(stderr, "hs_redact: pattern %d (%s): %s\n", err->expression + 1,
                    exprs[err->expression], err->message);
        else
            fprintf(stderr, "hs_redact: %s\n", err->message);
        exit(2);
    }
    return db;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: hs_redact RULES_FILE [DB_CACHE] < in > out\n");
        return 2;
    }
    hs_database_t *db = NULL;
    const char *cache = argc == 3 ? argv[2] : NULL;
    struct stat rs, cs;
    if (cache && stat(argv[1], &rs) == 0 && stat(cache, &cs) == 0 &&
        cs.st_mtime >= rs.st_mtime) {
        size_t dlen;
        char *bytes = read_file(cache, &dlen);
        if (hs_deserialize_database(bytes, dlen, &db) != HS_SUCCESS) db = NULL;
        free(bytes);
    }
    if (!db) {
        db = compile(argv[1]);
        if (cache) {
            char *bytes;
            size_t dlen;
            if (hs_serialize_database(db, &bytes, &dlen) != HS_SUCCESS) die("cannot serialize");
            FILE *f = fopen(cache, "wb");
            if (!f || fwrite(bytes, 1, dlen, f) != dlen || fclose(f) != 0)
                die("cannot write the database cache");
            free(bytes);
        }
    }
    hs_scratch_t *scratch = NULL;
    if (hs_alloc_scratch(db, &scratch) != HS_SUCCESS) die("cannot allocate scratch");

    static char obuf[1 << 20];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    size_t bcap = 1 << 20, blen = 0;
    char *buf = malloc(bcap);
    spans_t spans = {0};
    int eof = 0;
    while (!eof) {
        if (blen == bcap) {
            bcap *= 2;
            buf = realloc(buf, bcap);
            if (!buf) die("out of memory");
        }
        size_t r = fread(buf + blen, 1, bcap - blen, stdin);
        if (r == 0) eof = 1;
        blen += r;
        size_t start = 0;
        for (;;) {
            char *nl = memchr(buf + start, '\n', blen - start);
            size_t end;
            if (nl)
                end = (size_t)(nl - buf);
            else if (eof && start < blen)
                end = blen; /* last line without a newline */
            else
                break;
            const char *line = buf + start;
            size_t len = end - start;
            spans.n = 0;
            if (len && hs_scan(db, line, (unsigned int)len, 0, scratch, on_match, &spans) !=
                           HS_SUCCESS)
                die("scan failed");
            if (spans.n) {
                qsort(spans.v, spans.n, sizeof(span_t), by_from);
                size_t pos = 0, i = 0;
                while (i < spans.n) {
                    unsigned long long f = spans.v[i].from, t = spans.v[i].to;
                    for (i++; i < spans.n && spans.v[i].from <= t; i++)
                        if (spans.v[i].to > t) t = spans.v[i].to;
                    fwrite(line + pos, 1, f - pos, stdout);
                    fputs("[REDACTED]", stdout);
                    pos = t;
                }
                fwrite(line + pos, 1, len - pos, stdout);
            } else {
                fwrite(line, 1, len, stdout);
            }
            if (nl) putchar('\n');
            start = end + (nl ? 1 : 0);
            if (!nl) break;
        }
        memmove(buf, buf + start, blen - start);
        blen -= start;
    }
    if (fflush(stdout) != 0) return 1;
    hs_free_scratch(scratch);
    hs_free_database(db);
    return 0;
}

/*
 * loadgen.c - jrpc-unix's load generator: JSON-RPC 2.0 over a UNIX domain socket,
 * newline-delimited or in another framing the server detects (-f).  One thread,
 * non-blocking sockets, poll() (paced: epoll and a heap of due times, so its own
 * cost per call does not grow with the connections).  Every request is encoded before the clock
 * starts, into one contiguous stream shared by all connections, so sending is a
 * memcpy-free send() of a slice of that stream.
 *
 *   loadgen [options] MODE SOCKET_PATH
 *
 * MODE
 *   pingpong  1 connection, 1 call in flight, N calls: calls/s and latency
 *   pipeline  1 connection, W calls in flight, N calls: calls/s
 *   conns     C connections in parallel, each pingpong with N calls: total calls/s
 *   notify    1 connection: N notifications in one burst, then one call that
 *             reads back what the last notification set: notifications/s
 *   paced     C connections, each making N calls at R calls/s (one in flight; the
 *             connections' schedules spread evenly over 1/R); a call due before
 *             the previous answer came counts its latency from when it was due
 *             (no coordinated omission); first one uncounted ping on every
 *             connection, answered before the clock starts
 *
 * Options
 *   -n N     calls per connection; notifications in notify mode      [20000]
 *   -w W     calls in flight (pipeline)                              [64]
 *   -c C     connections (conns, paced)                              [16]
 *   -r R     paced: calls per second per connection                  [10]
 *   -m NAME  method of the calls                                     [ping]
 *   -p JSON  params of the calls (compact JSON)
 *   -s B     echo a string of B bytes: -m echo -p {"msg":"xx..."} and expect it back
 *   -e JSON  the result every answer must carry        [per method: "pong", the msg]
 *   -N NAME  notify: method of the notifications                     [config.set]
 *   -G NAME  notify: method of the final call                        [config.get]
 *   -k KEY   notify: the key the notifications set and the call reads [bench]
 *   -b BASE  notify: notification i sets BASE+i; the call must return BASE+N [0]
 *   -t SEC   give up after SEC seconds                               [60]
 *   -K       keep CPUs awake: one SCHED_IDLE busy child per CPU while the load
 *            runs (on a VM a halted vCPU makes each wake-up slow and erratic)
 *   -l TEXT  label copied into the result
 *   -f NAME  the framing of every message, both ways                  [newline]
 *            newline   one JSON text a line
 *            lsp       "Content-Length: N\r\n\r\n", then N bytes of JSON (LSP)
 *            json-seq  RFC 7464: 0x1E, a JSON text, "\n"
 *            unixsock  the Go original's: each call a frame (4-byte big-endian
 *                      length, ':', an envelope with "respond":true,"close":false),
 *                      answered in order; not with notify
 *            Not with paced (its warm-up ping is newline JSON).  The same requests,
 *            the same checks: only the bytes around each JSON text differ.
 *
 * Each answer must be a JSON object line whose "id" is one of this connection's
 * calls in flight (any order), with no "error" and, when an expected result is
 * known, exactly that "result".  Anything else counts in "errors".  With -f
 * unixsock: a reply frame per call, in order, "status":"success", the expected
 * "payload".
 *
 * Output: one JSON object on stdout.  Exit status: 0 every call answered well,
 * 1 errors, missing answers or timeout, 2 usage or connect failure.
 *
 * Build: gcc -O2 -Wall -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 65536
#define MAX_STREAM ((size_t)1 << 30)   /* refuse to pre-encode more than 1 GiB */

typedef struct {
    int fd, done;
    size_t woff;        /* stream bytes written */
    size_t wend;        /* stream bytes released for writing */
    long released;      /* calls released: ids 1..released */
    long answered;
    uint64_t *t_rel;    /* release time per call, ns */
    uint64_t start;     /* paced: when call 1 is due, ns */
    uint64_t last;      /* when the last answer arrived, ns */
    unsigned char *seen;
    char *rbuf;
    size_t rlen, rcap;
} conn_t;

/* the pre-encoded request stream, shared by every connection */
static char *stream;
static size_t stream_len, stream_cap;
static size_t *call_end;          /* call i ends at stream offset call_end[i] */
static long ncalls;               /* calls per connection */
static uint64_t period;           /* paced: ns between one connection's calls; 0 unpaced */

static const char *expect;        /* expected "result" JSON, or NULL */
static size_t expect_len;
static long bad_lines, error_answers, wrong_results;
enum framing { NEWLINE, LSP, JSON_SEQ, UNIXSOCK };
static const char *const framing_names[] = {"newline", "lsp", "json-seq", "unixsock"};
static enum framing framing;      /* -f */
static int go_frames;             /* framing == UNIXSOCK: the Go original's frames */
static char *text;                /* one message's JSON text, before it is framed */
static size_t text_cap;
static uint64_t *lat;
static long nlat;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void *xmalloc(size_t size) {
    void *p = calloc(1, size ? size : 1);
    if (!p) die("calloc");
    return p;
}

static void usage(void) {
    fputs("usage: loadgen [-n N] [-w W] [-c C] [-m method] [-p params] [-s bytes] [-e result]\n"
          "               [-N notif_method] [-G get_method] [-k key] [-b base] [-t sec] [-K]\n"
          "               [-r rate] [-l label] [-f newline|lsp|json-seq|unixsock]\n"
          "               pingpong|pipeline|conns|notify|paced SOCKET\n", stderr);
    exit(2);
}

/* Append printf-formatted text to the request stream. */
static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(stream + stream_len, stream_cap - stream_len, fmt, ap);
        va_end(ap);
        if (k < 0) die("vsnprintf");
        if ((size_t)k < stream_cap - stream_len) { stream_len += (size_t)k; return; }
        stream_cap = stream_cap * 2 + (size_t)k + 1;
        if (stream_cap > MAX_STREAM) { fputs("request stream over 1 GiB: lower -n\n", stderr); exit(2); }
        stream = realloc(stream, stream_cap);
        if (!stream) die("realloc");
    }
}

/* Append one message to the request stream: its JSON text (printf-formatted) in the framing. */
static void message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void message(const char *fmt, ...) {
    size_t len;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(text, text_cap, fmt, ap);
        va_end(ap);
        if (k < 0) die("vsnprintf");
        len = (size_t)k;
        if (len < text_cap) break;
        text_cap = len + 1;
        text = realloc(text, text_cap);
        if (!text) die("realloc");
    }
    switch (framing) {
    case NEWLINE: emit("%s\n", text); break;
    case LSP: emit("Content-Length: %zu\r\n\r\n%s", len, text); break;
    case JSON_SEQ: emit("\x1e%s\n", text); break;
    case UNIXSOCK:
        if (len > 0xffffffffu) { fputs("message too long for a Go frame\n", stderr); exit(2); }
        emit("%c%c%c%c:%s", (int)(len >> 24 & 0xff), (int)(len >> 16 & 0xff), (int)(len >> 8 & 0xff),
             (int)(len & 0xff), text);
        break;
    }
}

static int connect_unix(const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) { fputs("socket path too long\n", stderr); exit(2); }
    strcpy(addr.sun_path, path);
    for (int attempt = 0;; attempt++) {   /* the server may still be starting: retry ~5 s */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
            if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
            return fd;
        }
        int err = errno;
        close(fd);
        if ((err == ENOENT || err == ECONNREFUSED || err == EAGAIN) && attempt < 250) {
            usleep(20000);
            continue;
        }
        fprintf(stderr, "connect %s: %s\n", path, strerror(err));
        exit(2);
    }
}

/* -K: a lowest-priority busy loop pinned to each CPU; they die with us. */
static pid_t spinners[1024];
static int nspinners;

static void keep_awake_start(void) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    for (long cpu = 0; cpu < ncpu && nspinners < 1024; cpu++) {
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET((int)cpu, &set);
            sched_setaffinity(0, sizeof set, &set);
            struct sched_param param = {0};
            sched_setscheduler(0, SCHED_IDLE, &param);
            for (volatile unsigned long spin = 0;; spin++) {}
        }
        spinners[nspinners++] = pid;
    }
    usleep(10000);
}

static void keep_awake_stop(void) {
    for (int i = 0; i < nspinners; i++) kill(spinners[i], SIGKILL);
    for (int i = 0; i < nspinners; i++) waitpid(spinners[i], NULL, 0);
}

/* Where `key` ("\"id\"" etc.) is followed by blanks and ':', the value after it; else NULL. */
static const char *value_of(const char *s, const char *end, const char *key, size_t klen) {
    for (const char *p = s; p < end && (p = memmem(p, (size_t)(end - p), key, klen)) != NULL; p += klen) {
        const char *q = p + klen;
        while (q < end && (*q == ' ' || *q == '\t')) q++;
        if (q < end && *q == ':') {
            for (q++; q < end && (*q == ' ' || *q == '\t'); q++) {}
            return q;
        }
    }
    return NULL;
}

static void complain(const char *why, const char *s, size_t len, long count) {
    if (count <= 3) fprintf(stderr, "loadgen: %s: %.*s\n", why, (int)(len > 160 ? 160 : len), s);
}

static void on_line(conn_t *c, const char *s, size_t len, uint64_t t) {
    while (len && (s[len - 1] == '\r' || s[len - 1] == ' ')) len--;
    if (len == 0) return;
    if (framing == JSON_SEQ) {   /* every record begins with RS */
        if (s[0] != 0x1e) { complain("a json-seq record without RS", s, len, ++bad_lines); return; }
        s++, len--;
        if (len == 0) return;
    }
    const char *end = s + len;
    const char *v = value_of(s, end, "\"id\"", 4);
    long id = 0;
    if (go_frames) id = s[0] == '{' ? c->answered + 1 : 0;   /* answered in order */
    else if (s[0] == '{' && v && *v >= '0' && *v <= '9') id = strtol(v, NULL, 10);
    if (id < 1 || id > c->released || c->seen[id - 1]) {
        complain("unexpected line", s, len, ++bad_lines);
        return;
    }
    c->seen[id - 1] = 1;
    c->answered++;
    c->last = t;
    lat[nlat++] = t - c->t_rel[id - 1];
    const char *status = go_frames ? value_of(s, end, "\"status\"", 8) : NULL;
    if (go_frames ? !status || memcmp(status, "\"success\"", 9) != 0 : value_of(s, end, "\"error\"", 7) != NULL) {
        complain("error answer", s, len, ++error_answers);
        return;
    }
    if (expect) {
        const char *r = go_frames ? value_of(s, end, "\"payload\"", 9) : value_of(s, end, "\"result\"", 8);
        int ok = r && (size_t)(end - r) >= expect_len && memcmp(r, expect, expect_len) == 0;
        if (ok && r + expect_len < end) ok = strchr(",} \t\r", r[expect_len]) != NULL;
        if (!ok) complain("wrong result", s, len, ++wrong_results);
    }
}

/* Read what is available; -1 on EOF or error. */
static int drain(conn_t *c) {
    for (;;) {
        if (c->rcap - c->rlen < READ_CHUNK) {
            c->rcap = c->rcap * 2 + READ_CHUNK;
            c->rbuf = realloc(c->rbuf, c->rcap);
            if (!c->rbuf) die("realloc");
        }
        size_t room = c->rcap - c->rlen;
        ssize_t k = recv(c->fd, c->rbuf + c->rlen, room, 0);
        if (k == 0) return -1;
        if (k < 0) return errno == EINTR ? 0 : errno == EAGAIN ? 0 : -1;
        uint64_t t = now_ns();
        c->rlen += (size_t)k;
        char *p = c->rbuf, *end = c->rbuf + c->rlen, *nl;
        if (framing == LSP) {
            while (p < end) {
                char *blank = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
                if (!blank) break;
                const char *v = NULL;   /* the Content-Length header's value */
                for (char *h = p; h; ) {
                    if ((size_t)(blank - h) >= 15 && !strncasecmp(h, "Content-Length:", 15)) v = h + 15;
                    char *eol = memchr(h, '\n', (size_t)(blank - h));
                    h = eol ? eol + 1 : NULL;
                }
                char *body = blank + 4;
                if (!v) {   /* the framing is broken: nothing after it can be read */
                    complain("an LSP header block without Content-Length", p, (size_t)(body - p), ++bad_lines);
                    return -1;
                }
                size_t blen = (size_t)strtoul(v, NULL, 10);
                if ((size_t)(end - body) < blen) break;
                on_line(c, body, blen, t);
                p = body + blen;
            }
        } else if (go_frames) {
            while (end - p >= 5) {
                const unsigned char *h = (const unsigned char *)p;
                size_t flen = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
                if ((size_t)(end - p) < 5 + flen) break;
                on_line(c, p + 5, flen, t);
                p += 5 + flen;
            }
        } else {
            while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
                on_line(c, p, (size_t)(nl - p), t);
                p = nl + 1;
            }
        }
        c->rlen = (size_t)(end - p);
        memmove(c->rbuf, p, c->rlen);
        if ((size_t)k < room) return 0;   /* short read: nothing more waiting */
    }
}

/* When the next call of a paced connection is due (ns); 0 when it has none left. */
static uint64_t due(const conn_t *c) {
    return c->released < ncalls ? c->start + (uint64_t)c->released * period : 0;
}

/* Release calls up to the window (paced: those due), then write them; -1 on a broken socket. */
static int pump(conn_t *c, long window) {
    if (c->released < ncalls && c->released - c->answered < window) {
        uint64_t t = now_ns();
        if (period) {
            uint64_t d = due(c);   /* late for the server's sake: counted from d; for ours: now */
            if (d <= t) { c->t_rel[c->released] = c->last > d ? d : t; c->released++; }
        } else {
            while (c->released < ncalls && c->released - c->answered < window) c->t_rel[c->released++] = t;
        }
        if (c->released) c->wend = call_end[c->released - 1];
    }
    while (c->woff < c->wend) {
        ssize_t k = send(c->fd, stream + c->woff, c->wend - c->woff, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN ? 0 : -1;
        }
        c->woff += (size_t)k;
    }
    return 0;
}

/* paced: the connections waiting for their next call's time (none in flight), a min-heap by
 * due(): the next due connection in O(log C), so the loop's cost does not grow with C. */
static long *heap, heap_n;
static conn_t *heap_conns;

static int heap_before(long a, long b) { return due(&heap_conns[heap[a]]) < due(&heap_conns[heap[b]]); }

static void heap_swap(long a, long b) { long t = heap[a]; heap[a] = heap[b]; heap[b] = t; }

static void heap_push(long i) {
    long k = heap_n++;
    heap[k] = i;
    for (; k > 0 && heap_before(k, (k - 1) / 2); k = (k - 1) / 2) heap_swap(k, (k - 1) / 2);
}

static long heap_pop(void) {
    long top = heap[0];
    heap[0] = heap[--heap_n];
    for (long k = 0;;) {
        long l = 2 * k + 1, r = l + 1, m = k;
        if (l < heap_n && heap_before(l, m)) m = l;
        if (r < heap_n && heap_before(r, m)) m = r;
        if (m == k) break;
        heap_swap(k, m);
        k = m;
    }
    return top;
}

static void watch(int ep, int op, conn_t *conns, long i, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)i};
    if (epoll_ctl(ep, op, conns[i].fd, &ev) < 0 && op != EPOLL_CTL_DEL) die("epoll_ctl");
}

/* paced: release each connection's calls at their times, read answers as they come (epoll, and a
 * heap of due times: the load generator's cost per call stays flat however many connections
 * wait, so the latency measured is the server's). 1 if the deadline passed. */
static int run_paced(conn_t *conns, long nconns, uint64_t deadline, long *active, long *broken) {
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    heap = xmalloc(sizeof *heap * (size_t)nconns);
    heap_conns = conns;
    for (long i = 0; i < nconns; i++) {
        watch(ep, EPOLL_CTL_ADD, conns, i, EPOLLIN);
        heap_push(i);
    }
    struct epoll_event evs[256];
    struct pollfd wait_ep = {.fd = ep, .events = POLLIN};
    int timed_out = 0;
    while (*active > 0) {
        uint64_t t = now_ns();
        while (heap_n && due(&conns[heap[0]]) <= t) {   /* release the calls due */
            long i = heap_pop();
            conn_t *c = &conns[i];
            if (pump(c, 1) < 0) { c->done = 1; (*broken)++; (*active)--; watch(ep, EPOLL_CTL_DEL, conns, i, 0); }
            else if (c->woff < c->wend) watch(ep, EPOLL_CTL_MOD, conns, i, EPOLLIN | EPOLLOUT);   /* no room */
        }
        if (t >= deadline) { timed_out = 1; break; }
        uint64_t wake = heap_n && due(&conns[heap[0]]) < deadline ? due(&conns[heap[0]]) : deadline;
        uint64_t left = wake > t ? wake - t : 0;
        struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
        int ready = ppoll(&wait_ep, 1, &ts, NULL);   /* (ppoll: a timeout finer than epoll's ms) */
        if (ready < 0 && errno != EINTR) die("ppoll");
        if (ready <= 0) continue;
        int n = epoll_wait(ep, evs, 256, 0);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int k = 0; k < n; k++) {
            long i = (long)evs[k].data.u64;
            conn_t *c = &conns[i];
            if (c->done) continue;
            int rc = 0;
            if (evs[k].events & EPOLLOUT) {
                rc = pump(c, 1);
                if (rc == 0 && c->woff >= c->wend) watch(ep, EPOLL_CTL_MOD, conns, i, EPOLLIN);
            }
            long before = c->answered;
            if (rc == 0 && evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) rc = drain(c);
            if (c->answered == ncalls) { c->done = 1; (*active)--; watch(ep, EPOLL_CTL_DEL, conns, i, 0); }
            else if (rc < 0) { c->done = 1; (*broken)++; (*active)--; watch(ep, EPOLL_CTL_DEL, conns, i, 0); }
            else if (c->answered > before && c->answered == c->released) heap_push(i);   /* wait for its time */
        }
    }
    close(ep);
    free(heap);
    return timed_out;
}

/* paced: one ping answered on every connection before the clock starts (the server has
 * accepted them all, and set each one up); its answer is not counted. -1 on failure. */
static int warm_up(conn_t *conns, struct pollfd *pfd, long nconns, uint64_t deadline) {
    static const char ping[] = "{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":0}\n";
    for (long i = 0; i < nconns; i++) {
        if (send(conns[i].fd, ping, sizeof ping - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof ping - 1)) return -1;
        pfd[i].fd = conns[i].fd;
        pfd[i].events = POLLIN;
    }
    for (long waiting = nconns; waiting > 0;) {
        if (now_ns() >= deadline) return -1;
        if (poll(pfd, (nfds_t)nconns, 100) < 0 && errno != EINTR) return -1;
        for (long i = 0; i < nconns; i++) {
            if (pfd[i].fd < 0 || !pfd[i].revents) continue;
            char buf[4096];
            ssize_t k = recv(conns[i].fd, buf, sizeof buf, 0);
            if (k <= 0) { if (k == 0 || errno != EAGAIN) return -1; continue; }
            if (buf[k - 1] == '\n') { pfd[i].fd = -1; waiting--; }   /* one short line */
        }
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double percentile_us(double q) {   /* nearest rank over the sorted latencies */
    if (nlat == 0) return 0;
    long i = (long)(q * (double)nlat + 0.999999) - 1;
    i = i < 0 ? 0 : i >= nlat ? nlat - 1 : i;
    return (double)lat[i] / 1000.0;
}

static double cpu_seconds(int who) {
    struct rusage ru;
    getrusage(who, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv) {
    long n = 20000, window = 64, nconns = 16, payload = -1, base = 0;
    const char *method = NULL, *params = NULL, *nmethod = "config.set", *getmethod = "config.get";
    const char *key = "bench", *label = "";
    double timeout_s = 60;
    double rate = 10;
    int keep_awake = 0, opt;
    while ((opt = getopt(argc, argv, "n:w:c:m:p:s:e:N:G:k:b:t:Kl:r:f:h")) != -1) {
        switch (opt) {
        case 'n': n = atol(optarg); break;
        case 'w': window = atol(optarg); break;
        case 'c': nconns = atol(optarg); break;
        case 'm': method = optarg; break;
        case 'p': params = optarg; break;
        case 's': payload = atol(optarg); break;
        case 'e': expect = optarg; break;
        case 'N': nmethod = optarg; break;
        case 'G': getmethod = optarg; break;
        case 'k': key = optarg; break;
        case 'b': base = atol(optarg); break;
        case 't': timeout_s = atof(optarg); break;
        case 'K': keep_awake = 1; break;
        case 'l': label = optarg; break;
        case 'r': rate = atof(optarg); break;
        case 'f':
            for (framing = 0; framing <= UNIXSOCK && strcmp(optarg, framing_names[framing]); framing++) {}
            if (framing > UNIXSOCK) usage();
            break;
        default: usage();
        }
    }
    if (argc - optind != 2 || n < 1 || n > 10000000 || window < 1 || nconns < 1 || nconns > 65536
        || timeout_s <= 0 || rate <= 0 || payload > (1 << 24))
        usage();
    const char *mode = argv[optind], *path = argv[optind + 1];
    int notify = 0;
    if (!strcmp(mode, "pingpong")) { nconns = 1; window = 1; }
    else if (!strcmp(mode, "pipeline")) nconns = 1;
    else if (!strcmp(mode, "conns")) window = 1;
    else if (!strcmp(mode, "notify")) { notify = 1; nconns = 1; window = 1; }
    else if (!strcmp(mode, "paced")) { window = 1; period = (uint64_t)(1e9 / rate); }
    else usage();
    struct rlimit nofile;   /* room for every connection: the soft limit up to the hard one */
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    go_frames = framing == UNIXSOCK;
    if ((go_frames && notify) || (framing != NEWLINE && period)) usage();
    signal(SIGPIPE, SIG_IGN);

    /* Encode every request now, before the clock starts. */
    char *msg = NULL, *expect_buf = NULL;
    if (payload >= 0) {
        msg = xmalloc((size_t)payload + 16);
        memcpy(msg, "{\"msg\":\"", 8);
        memset(msg + 8, 'x', (size_t)payload);
        strcpy(msg + 8 + payload, "\"}");
        if (!params) params = msg;
        if (!method) method = "echo";
        if (!expect) { expect_buf = strdup(msg + 7); expect_buf[payload + 2] = '\0'; expect = expect_buf; }
    }
    if (!method) method = "ping";
    if (!expect && !strcmp(method, "ping") && !params) expect = "\"pong\"";
    stream_cap = 1 << 16;
    stream = xmalloc(stream_cap);
    text_cap = 256;
    text = xmalloc(text_cap);
    char expect_notify[32];
    if (notify) {
        for (long i = 1; i <= n; i++)
            message("{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":{\"key\":\"%s\",\"value\":%ld}}",
                    nmethod, key, base + i);
        message("{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":{\"key\":\"%s\"},\"id\":1}", getmethod, key);
        snprintf(expect_notify, sizeof expect_notify, "%ld", base + n);
        expect = expect_notify;
        ncalls = 1;
    } else {
        ncalls = n;
    }
    call_end = xmalloc(sizeof *call_end * (size_t)ncalls);
    if (notify) {
        call_end[0] = stream_len;
    } else {
        for (long i = 0; i < ncalls; i++) {
            if (go_frames)
                message("{\"cmd\":\"%s\",\"args\":%s,\"respond\":true,\"close\":false}", method, params ? params : "{}");
            else if (params) message("{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":%s,\"id\":%ld}", method, params, i + 1);
            else message("{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"id\":%ld}", method, i + 1);
            call_end[i] = stream_len;
        }
    }
    if (expect) expect_len = strlen(expect);

    if (keep_awake) keep_awake_start();   /* before connecting: the children hold no sockets */
    conn_t *conns = xmalloc(sizeof *conns * (size_t)nconns);
    struct pollfd *pfd = xmalloc(sizeof *pfd * (size_t)nconns);
    lat = xmalloc(sizeof *lat * (size_t)(nconns * ncalls));
    for (long i = 0; i < nconns; i++) {
        conns[i].fd = connect_unix(path);
        conns[i].t_rel = xmalloc(sizeof(uint64_t) * (size_t)ncalls);
        conns[i].seen = xmalloc((size_t)ncalls);
    }

    if (period && warm_up(conns, pfd, nconns, now_ns() + (uint64_t)(timeout_s * 1e9)) < 0) {
        fputs("loadgen: warm-up ping unanswered on some connection\n", stderr);
        return 2;
    }
    double cpu0 = cpu_seconds(RUSAGE_SELF);
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(timeout_s * 1e9);
    for (long i = 0; i < nconns; i++) conns[i].start = t0 + (uint64_t)i * period / (uint64_t)nconns;
    long active = nconns, broken = 0;
    int timed_out = period ? run_paced(conns, nconns, deadline, &active, &broken) : 0;
    while (!period && active > 0) {
        for (long i = 0; i < nconns; i++) {
            conn_t *c = &conns[i];
            pfd[i].fd = -1;
            if (c->done) continue;
            if (pump(c, window) < 0) { c->done = 1; broken++; active--; continue; }
            pfd[i].fd = c->fd;
            pfd[i].events = POLLIN | (c->woff < c->wend ? POLLOUT : 0);
        }
        if (active == 0) break;
        uint64_t t = now_ns();
        if (t >= deadline) { timed_out = 1; break; }
        uint64_t left = deadline - t;
        struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
        int ready = ppoll(pfd, (nfds_t)nconns, &ts, NULL);
        if (ready < 0 && errno != EINTR) die("poll");
        for (long i = 0; ready > 0 && i < nconns; i++) {
            conn_t *c = &conns[i];
            if (c->done || !pfd[i].revents) continue;
            int rc = 0;
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) rc = drain(c);
            if (c->answered == ncalls) { c->done = 1; active--; }
            else if (rc < 0) { c->done = 1; broken++; active--; }
        }
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;
    double cpu = cpu_seconds(RUSAGE_SELF) - cpu0;
    if (keep_awake) keep_awake_stop();

    long answered = 0;
    for (long i = 0; i < nconns; i++) { answered += conns[i].answered; close(conns[i].fd); }
    long calls = nconns * ncalls, missing = calls - answered;
    long errors = bad_lines + error_answers + wrong_results;
    long notifications = notify ? n : 0;
    if (timed_out) fprintf(stderr, "loadgen: timed out after %.1f s\n", elapsed);
    if (broken) fprintf(stderr, "loadgen: %ld connection(s) closed early\n", broken);
    qsort(lat, (size_t)nlat, sizeof *lat, cmp_u64);
    printf("{\"label\":\"%s\",\"mode\":\"%s\",\"framing\":\"%s\",\"method\":\"%s\",\"payload\":%ld,\"conns\":%ld,\"window\":%ld,"
           "\"calls\":%ld,\"answered\":%ld,\"errors\":%ld,\"bad_lines\":%ld,\"error_answers\":%ld,"
           "\"wrong_results\":%ld,\"missing\":%ld,\"broken\":%ld,\"timed_out\":%s,\"elapsed_s\":%.6f,"
           "\"calls_per_s\":%.1f,\"notifications\":%ld,\"notifs_per_s\":%.1f,\"cpu_s\":%.4f,"
           "\"lat_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f}}\n",
           label, mode, framing_names[framing], notify ? getmethod : method, payload < 0 ? 0 : payload, nconns, window, calls,
           answered, errors, bad_lines, error_answers, wrong_results, missing, broken,
           timed_out ? "true" : "false", elapsed, (double)answered / elapsed, notifications,
           (double)notifications / elapsed, cpu, percentile_us(0.50), percentile_us(0.90),
           percentile_us(0.99), nlat ? (double)lat[nlat - 1] / 1000.0 : 0.0);
    free(msg);
    free(expect_buf);
    free(text);
    return (errors || missing || timed_out) ? 1 : 0;
}

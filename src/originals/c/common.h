/* The HTTP/1.1 part shared by single.c and proc_spawn.c: options, the listening socket,
 * and serving one connection to its end (keep-alive included), with the same endpoints
 * and limits as serverscope's Python models:
 *   GET /                              -> 200 "hello from serverscope\n"
 *   GET /work?cpu_ms=&io_ms=&bytes=    -> burn cpu_ms of this thread's CPU time, sleep
 *                                         io_ms (blocking, as a process model waits),
 *                                         answer exactly `bytes` bytes of 'x'
 * Apache's limits: 8 KiB of headers (431), 1 MiB of body (413), KeepAliveTimeout,
 * MaxKeepAliveRequests (100), Timeout (60 s) for a request to arrive whole; and the models'
 * --max-cpu-ms (10,000; a larger cpu_ms is 400). Work stops for a client that is gone: the
 * burn runs in 10 ms slices and the io_ms wait is a poll on the connection, either ending
 * when the client has reset it (POLLERR/POLLHUP; a FIN alone is a half-close, answered),
 * and the rest of a pipeline is dropped once a write fails, as the models do.
 * Every response is Content-Length framed and carries X-Worker: <pid of the process
 * that served it>, the ground truth for per-worker counts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADER 8192
#define MAX_BODY (1024 * 1024)
#define MAX_CPU_MS 10000.0 /* default of --max-cpu-ms, as the models' */
#define MAX_IO_MS 60000.0
#define BURN_SLICE_MS 10.0 /* the connection is checked between slices of a burn */
#define MAX_BYTES (16.0 * 1024 * 1024)
#define HELLO "hello from serverscope\n"

struct opts {
    const char *host;
    int port;
    int backlog;
    int workers;
    double keepalive_timeout;
    int max_keepalive_requests; /* 0: unlimited */
    double timeout;
    double max_cpu_ms; /* a larger /work?cpu_ms= is 400 */
};

static void die(int code, const char *fmt, const char *arg) {
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(code);
}

static double number_arg(const char *name, const char *v, double lo, double hi) {
    char *end;
    double x = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || !(x >= lo && x <= hi)) die(2, "bad value for %s", name);
    return x;
}

static void parse_opts(int argc, char **argv, struct opts *o) {
    o->host = "127.0.0.1";
    o->port = 8080;
    o->backlog = 511;
    o->workers = 250;
    o->keepalive_timeout = 5.0;
    o->max_keepalive_requests = 100;
    o->timeout = 60.0;
    o->max_cpu_ms = MAX_CPU_MS;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) die(2, "option %s needs a value", k);
        const char *v = argv[++i];
        if (!strcmp(k, "--host")) o->host = v;
        else if (!strcmp(k, "--port")) o->port = (int)number_arg(k, v, 0, 65535);
        else if (!strcmp(k, "--backlog")) o->backlog = (int)number_arg(k, v, 1, 65535);
        else if (!strcmp(k, "--workers")) o->workers = (int)number_arg(k, v, 1, 4096);
        else if (!strcmp(k, "--keepalive-timeout"))
            o->keepalive_timeout = number_arg(k, v, 0.001, 3600);
        else if (!strcmp(k, "--max-keepalive-requests"))
            o->max_keepalive_requests = (int)number_arg(k, v, 0, 1000000);
        else if (!strcmp(k, "--timeout")) o->timeout = number_arg(k, v, 0.001, 3600);
        else if (!strcmp(k, "--max-cpu-ms")) o->max_cpu_ms = number_arg(k, v, 0, 600000);
        else die(2, "unknown option %s", k);
    }
}

static int listen_on(const struct opts *o) {
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(o->host, port, &hints, &ai);
    if (rc) die(2, "cannot listen: unknown host %s", o->host);
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, o->backlog) < 0) {
        fprintf(stderr, "cannot listen on %s:%d: %s\n", o->host, o->port, strerror(errno));
        exit(errno == EADDRINUSE ? 98 : 1);
    }
    freeaddrinfo(ai);
    return fd;
}

static double now_mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double thread_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* 1 once the client has reset the connection (an error or hang-up on it), else 0. */
static int client_gone(int fd, int wait_ms) {
    struct pollfd p = {fd, 0, 0}; /* POLLERR and POLLHUP are always reported */
    int rc = poll(&p, 1, wait_ms);
    return rc > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL));
}

/* Burn `ms` of this thread's CPU time in slices, checking the client between them;
 * -1 when it is gone (the rest is not burnt), else 0. */
static int burn_cpu(int fd, double ms) {
    if (ms <= 0) return 0;
    double end = thread_cpu() + ms / 1000.0;
    volatile unsigned x = 0;
    for (double now = thread_cpu(); now < end; now = thread_cpu()) {
        double slice_end = fmin(end, now + BURN_SLICE_MS / 1000.0);
        while (thread_cpu() < slice_end)
            for (unsigned i = 0; i < 2000; i++) x ^= i;
        if (client_gone(fd, 0)) return -1;
    }
    return 0;
}

/* Wait `ms` (blocking, as a process model waits for I/O), on the connection: -1 as soon as
 * the client is gone, else 0. */
static int wait_io(int fd, double ms) {
    double deadline = now_mono() + ms / 1000.0;
    for (double left = ms; left > 0; left = (deadline - now_mono()) * 1000.0) {
        if (client_gone(fd, (int)left + 1)) return -1;
    }
    return 0;
}

static void sleep_ms(double ms) {
    if (ms <= 0) return;
    struct timespec t = {(time_t)(ms / 1000), (long)(fmod(ms, 1000.0) * 1e6)};
    while (nanosleep(&t, &t) < 0 && errno == EINTR) {
    }
}

/* Wait until fd is readable, at most `seconds`; 0 on timeout. */
static int wait_readable(int fd, double seconds) {
    double deadline = now_mono() + seconds;
    for (;;) {
        double left = deadline - now_mono();
        if (left <= 0) return 0;
        struct pollfd p = {fd, POLLIN, 0};
        int rc = poll(&p, 1, (int)(left * 1000) + 1);
        if (rc > 0) return 1;
        if (rc == 0) continue;
        if (errno != EINTR) return 0;
    }
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static char XS[65536];

/* One response; body is `text`, or `nx` bytes of 'x' when text is NULL. */
static int respond(int fd, int status, const char *ctype, const char *text, size_t nx,
                   int keep_alive, int http10, int head_only) {
    size_t len = text ? strlen(text) : nx;
    char head[512];
    const char *conn = !keep_alive ? "Connection: close\r\n"
                       : http10    ? "Connection: keep-alive\r\n"
                                   : "";
    int h = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nServer: serverscope-c\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nX-Worker: %d\r\n%s\r\n",
                     status, reason(status), ctype, len, (int)getpid(), conn);
    if (send_all(fd, head, (size_t)h) < 0) return -1;
    if (head_only) return 0;
    if (text) return send_all(fd, text, len);
    if (!XS[0]) memset(XS, 'x', sizeof XS);
    while (nx) {
        size_t k = nx < sizeof XS ? nx : sizeof XS;
        if (send_all(fd, XS, k) < 0) return -1;
        nx -= k;
    }
    return 0;
}

/* Answer an error and end the connection. Closing with unread bytes in the receive buffer
 * makes the kernel send a reset, which can destroy the answer before the client reads it:
 * so shut down our side, then read and drop what is still coming for at most 0.5 s or
 * 256 KiB (Apache's lingering close), then close. */
static int error_close(int fd, int status, const char *msg) {
    respond(fd, status, "text/plain", msg, 0, 0, 0, 0);
    shutdown(fd, SHUT_WR);
    double deadline = now_mono() + 0.5;
    size_t drained = 0;
    char sink[4096];
    while (drained < 256 * 1024 && wait_readable(fd, deadline - now_mono())) {
        ssize_t n = recv(fd, sink, sizeof sink, 0);
        if (n <= 0) break;
        drained += (size_t)n;
    }
    return -1;
}

/* Route one request; returns 0 to go on, -1 to close. */
static int route(int fd, const struct opts *o, const char *method, char *target, int keep_alive,
                 int http10) {
    int head_only = !strcmp(method, "HEAD");
    if (strcmp(method, "GET") && !head_only)
        return respond(fd, 405, "text/plain", "only GET and HEAD\n", 0, keep_alive, http10, 0);
    char *query = strchr(target, '?');
    if (query) *query++ = '\0';
    if (!strcmp(target, "/"))
        return respond(fd, 200, "text/plain", HELLO, 0, keep_alive, http10, head_only);
    if (strcmp(target, "/work"))
        return respond(fd, 404, "text/plain", "not found; try / or /work?cpu_ms=&io_ms=&bytes=\n",
                       0, keep_alive, http10, head_only);
    double cpu_ms = 0, io_ms = 0, nbytes = 0;
    char msg[160];
    while (query && *query) {
        char *amp = strchr(query, '&');
        if (amp) *amp = '\0';
        char *eq = strchr(query, '=');
        if (!eq) return respond(fd, 400, "text/plain", "malformed query string\n", 0, keep_alive, http10, 0);
        *eq = '\0';
        const char *key = query, *raw = eq + 1;
        double *slot, limit;
        if (!strcmp(key, "cpu_ms")) slot = &cpu_ms, limit = o->max_cpu_ms;
        else if (!strcmp(key, "io_ms")) slot = &io_ms, limit = MAX_IO_MS;
        else if (!strcmp(key, "bytes")) slot = &nbytes, limit = MAX_BYTES;
        else {
            snprintf(msg, sizeof msg, "unknown parameter '%.40s'; use cpu_ms, io_ms, bytes\n", key);
            return respond(fd, 400, "text/plain", msg, 0, keep_alive, http10, 0);
        }
        char *end;
        double v = strtod(raw, &end);
        if (!*raw || *end) {
            snprintf(msg, sizeof msg, "%s must be a number, got '%.40s'\n", key, raw);
            return respond(fd, 400, "text/plain", msg, 0, keep_alive, http10, 0);
        }
        if (!(v >= 0 && v <= limit)) {
            snprintf(msg, sizeof msg, "%s must be between 0 and %g, got %.40s\n", key, limit, raw);
            return respond(fd, 400, "text/plain", msg, 0, keep_alive, http10, 0);
        }
        *slot = v;
        query = amp ? amp + 1 : NULL;
    }
    if (nbytes != floor(nbytes))
        return respond(fd, 400, "text/plain", "bytes must be a whole number\n", 0, keep_alive, http10, 0);
    if (burn_cpu(fd, cpu_ms) < 0 || wait_io(fd, io_ms) < 0) return -1; /* nobody to answer */
    return respond(fd, 200, "application/octet-stream", NULL, (size_t)nbytes, keep_alive, http10,
                   head_only);
}

/* Serve one connection to its end, then close it. */
static void serve_connection(int fd, const struct opts *o) {
    static char buf[MAX_HEADER + 1];
    size_t len = 0;
    int served = 0;
    struct timeval snd = {(time_t)o->timeout, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof snd);
    for (;;) {
        /* keep-alive wait between requests; Timeout for the first one */
        if (len == 0 && !wait_readable(fd, served ? o->keepalive_timeout : o->timeout)) break;
        double deadline = now_mono() + o->timeout;
        char *end;
        while ((end = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
            if (len >= MAX_HEADER) {
                error_close(fd, 431, "header section larger than 8192 bytes\n");
                goto out;
            }
            if (!wait_readable(fd, deadline - now_mono())) {
                if (len) error_close(fd, 408, "request not completed in time\n");
                goto out;
            }
            ssize_t n = recv(fd, buf + len, MAX_HEADER - len, 0);
            if (n <= 0) goto out;
            len += (size_t)n;
        }
        size_t head_len = (size_t)(end - buf) + 4;
        *end = '\0';
        char *p = buf;
        while (p[0] == '\r' && p[1] == '\n') p += 2;
        char *line_end = strstr(p, "\r\n");
        if (line_end) *line_end = '\0';
        char *method = p, *sp1 = strchr(p, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || sp1 == method || sp2 == sp1 + 1) {
            error_close(fd, 400, "malformed request line\n");
            goto out;
        }
        *sp1 = *sp2 = '\0';
        char *target = sp1 + 1, *version = sp2 + 1;
        int keep_alive, http10 = 0;
        if (!strcmp(version, "HTTP/1.1")) keep_alive = 1;
        else if (!strcmp(version, "HTTP/1.0")) keep_alive = 0, http10 = 1;
        else if (!strncmp(version, "HTTP/", 5)) { error_close(fd, 505, "unsupported HTTP version\n"); goto out; }
        else { error_close(fd, 400, "malformed HTTP version\n"); goto out; }
        if (target[0] != '/') { error_close(fd, 400, "malformed request target\n"); goto out; }
        long content_length = 0;
        for (char *h = line_end ? line_end + 2 : NULL; h && *h;) {
            char *next = strstr(h, "\r\n");
            if (next) *next = '\0';
            char *colon = strchr(h, ':');
            if (!colon || colon == h) { error_close(fd, 400, "malformed header line\n"); goto out; }
            *colon = '\0';
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t') v++;
            if (!strcasecmp(h, "content-length")) {
                char *e;
                content_length = strtol(v, &e, 10);
                if (e == v || content_length < 0) { error_close(fd, 400, "bad Content-Length\n"); goto out; }
            } else if (!strcasecmp(h, "transfer-encoding")) {
                error_close(fd, 501, "Transfer-Encoding in requests is not supported\n");
                goto out;
            } else if (!strcasecmp(h, "connection")) {
                if (strcasestr(v, "close")) keep_alive = 0;
                else if (strcasestr(v, "keep-alive")) keep_alive = 1;
            }
            h = next ? next + 2 : NULL;
        }
        if (content_length > MAX_BODY) { error_close(fd, 413, "body larger than 1048576 bytes\n"); goto out; }
        if (o->max_keepalive_requests && served + 1 >= o->max_keepalive_requests) keep_alive = 0;
        /* the body is read and dropped: no endpoint takes one */
        size_t have = len - head_len;
        size_t drop = (size_t)content_length < have ? (size_t)content_length : have;
        size_t rest_off = head_len + drop;
        long missing = content_length - (long)drop;
        while (missing > 0) {
            char sink[4096];
            if (!wait_readable(fd, deadline - now_mono())) goto out;
            ssize_t n = recv(fd, sink, missing < (long)sizeof sink ? (size_t)missing : sizeof sink, 0);
            if (n <= 0) goto out;
            missing -= n;
        }
        int rc = route(fd, o, method, target, keep_alive, http10);
        served++;
        memmove(buf, buf + rest_off, len - rest_off);
        len -= rest_off;
        if (rc < 0 || !keep_alive) break;
    }
out:
    close(fd);
}

/* Block in accept(), serve the connection to its end, accept the next: forever. */
static void accept_loop(int lfd, const struct opts *o) {
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            perror("accept");
            sleep_ms(100);
            continue;
        }
        serve_connection(fd, o);
    }
}

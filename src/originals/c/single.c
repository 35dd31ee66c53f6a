/* C single (the seed's first row): one process, one thread. listen(), then accept one
 * connection, serve it to its end (keep-alive included), accept the next. Concurrency 1:
 * everyone else waits in the accept queue (the listen backlog).
 *   single --port P [--host H] [--backlog B] [--keepalive-timeout S]
 *          [--max-keepalive-requests N] [--timeout S] [--max-cpu-ms MS]
 */
#include "common.h"

int main(int argc, char **argv) {
    struct opts o;
    parse_opts(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(&o);
    accept_loop(lfd, &o);
    return 0;
}

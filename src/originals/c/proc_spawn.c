/* C proc_spawn (the seed's second row): listen() once, fork N worker processes (default
 * 250, "we need many workers due to blocking api"), each blocking in accept() on the one
 * shared socket and serving its connection to the end. The kernel wakes processes blocked
 * in accept() in FIFO order, so sequential connections spread evenly.
 *   proc_spawn --port P [--workers N] [--host H] [--backlog B] [--keepalive-timeout S]
 *              [--max-keepalive-requests N] [--timeout S] [--max-cpu-ms MS]
 * Workers die with the master (PR_SET_PDEATHSIG); SIGTERM/SIGINT to the master stops all.
 */
#include "common.h"

static volatile sig_atomic_t stopping = 0;
static void on_stop(int sig) { (void)sig; stopping = 1; }

int main(int argc, char **argv) {
    struct opts o;
    parse_opts(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(&o);
    pid_t master = getpid();
    pid_t *pids = calloc((size_t)o.workers, sizeof *pids);
    for (int i = 0; i < o.workers; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            break;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != master) _exit(0);
            accept_loop(lfd, &o);
            _exit(0);
        }
        pids[i] = pid;
    }
    close(lfd); /* only the workers accept */
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int alive = o.workers;
    while (alive > 0 && !stopping) {
        pid_t pid = waitpid(-1, NULL, 0);
        if (pid > 0) {
            alive--;
            fprintf(stderr, "proc_spawn: worker %d exited (%d left)\n", (int)pid, alive);
        }
    }
    for (int i = 0; i < o.workers; i++)
        if (pids[i] > 0) kill(pids[i], SIGTERM);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
    }
    return 0;
}

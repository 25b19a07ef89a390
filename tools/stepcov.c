/* stepcov: single-steps every process of a command that runs a given executable (the
 * launcher, its forked init and helpers) under ptrace and prints, in first-execution order,
 * each distinct instruction offset executed inside that executable's image. Used by
 * tools/symbol-order.sh to list the functions a launch runs (callgrind cannot: valgrind 3.19
 * knows no Landlock syscall, and perf sampling misses short functions).
 *
 * usage: stepcov OUT EXE -- COMMAND [ARG...]   (run as root: it follows user namespaces)
 * Other executables in the tree (setpriv, the sandboxed command) run under PTRACE_CONT. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPAN (64u << 20) /* image size covered */
#define MAXP 4096

static unsigned char *seen;
static uint32_t *order;
static size_t norder;
static char exe[4096];

struct proc {
    pid_t pid;
    int step;           /* 1: single-step (runs EXE), 0: PTRACE_CONT */
    uintptr_t base;     /* load address of EXE in this process */
};
static struct proc procs[MAXP];

static struct proc *find(pid_t pid, int create)
{
    for (int i = 0; i < MAXP; i++)
        if (procs[i].pid == pid) return &procs[i];
    if (!create) return NULL;
    for (int i = 0; i < MAXP; i++)
        if (procs[i].pid == 0) { procs[i].pid = pid; return &procs[i]; }
    fprintf(stderr, "stepcov: too many processes\n");
    exit(2);
}

/* Reads /proc/PID/maps: is EXE mapped, and where does its offset 0 sit? */
static void classify(struct proc *p)
{
    char path[64], line[8192];
    snprintf(path, sizeof path, "/proc/%d/maps", p->pid);
    FILE *f = fopen(path, "r");
    p->step = 0;
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        unsigned long start, end, off;
        char perms[8];
        int n = 0;
        if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %n", &start, &end, perms, &off, &n) < 4) continue;
        char *name = line + n;
        name[strcspn(name, "\n")] = 0;
        if (strcmp(name, exe) == 0 && off == 0) { p->step = 1; p->base = start; break; }
    }
    fclose(f);
}

static void resume(struct proc *p, int sig)
{
    if (ptrace(p->step ? PTRACE_SINGLESTEP : PTRACE_CONT, p->pid, 0, (void *)(long)sig) < 0 && errno != ESRCH)
        perror("stepcov: ptrace resume");
}

int main(int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: stepcov OUT EXE -- COMMAND [ARG...]\n");
        return 2;
    }
    if (!realpath(argv[2], exe)) { perror(argv[2]); return 2; }
    seen = calloc(SPAN, 1);
    order = malloc(sizeof(uint32_t) * 4000000);
    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        execvp(argv[4], argv + 4);
        _exit(127);
    }
    int st;
    waitpid(child, &st, 0);
    ptrace(PTRACE_SETOPTIONS, child, 0,
           (void *)(long)(PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE |
                          PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL));
    struct proc *p0 = find(child, 1);
    p0->step = 0;
    resume(p0, 0);
    int live = 1, rc = 0;
    unsigned long steps = 0;
    while (live > 0) {
        pid_t pid = waitpid(-1, &st, __WALL);
        if (pid < 0) { if (errno == EINTR) continue; break; }
        struct proc *p = find(pid, 0);
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            if (p) { p->pid = 0; live--; }
            if (pid == child) rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            continue;
        }
        if (!WIFSTOPPED(st)) continue;
        if (!p) { /* a new child's first stop can come before its parent's event */
            p = find(pid, 1);
            live++;
            classify(p);
            resume(p, 0);
            continue;
        }
        int sig = WSTOPSIG(st), ev = st >> 16;
        if (sig == SIGTRAP && ev) {
            if (ev == PTRACE_EVENT_EXEC) classify(p);
            resume(p, 0);
            continue;
        }
        if (sig == SIGTRAP && p->step) {
            struct user_regs_struct r;
            if (ptrace(PTRACE_GETREGS, pid, 0, &r) == 0) {
                uintptr_t off = r.rip - p->base;
                if (r.rip >= p->base && off < SPAN && !seen[off]) {
                    seen[off] = 1;
                    if (norder < 4000000) order[norder++] = off;
                }
            }
            steps++;
            resume(p, 0);
            continue;
        }
        /* a signal: deliver it, except SIGSTOP (a traced child's attach stop; the launch
         * paths traced send no real one) */
        resume(p, sig == SIGSTOP ? 0 : sig);
    }
    FILE *out = fopen(argv[1], "w");
    if (!out) { perror(argv[1]); return 2; }
    for (size_t i = 0; i < norder; i++) fprintf(out, "%x\n", order[i]);
    fclose(out);
    fprintf(stderr, "stepcov: %lu steps, %zu distinct instructions, exit %d\n", steps, norder, rc);
    return rc;
}

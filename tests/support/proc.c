/*
 * proc.c - child processes with captured output, for tests that run the
 * real executables.
 */
#include "support.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define TS_LOG_MAX (8u << 20)

struct ts_proc {
    pid_t pid;
    int log_fd; /* the unlinked capture file, read with pread */
    int reaped; /* 1 once waitpid returned the status */
    int status; /* exit code or 128 + signal, once reaped */
    char *log;  /* last ts_proc_log result */
};

/* Build the child's environment: environ minus keys overridden by extra,
 * then extra. The strings are borrowed; only the array is allocated. */
static char **build_env(const char *const extra[])
{
    size_t n_env = 0, n_extra = 0, k = 0;
    while (environ[n_env] != NULL)
        n_env++;
    while (extra != NULL && extra[n_extra] != NULL)
        n_extra++;
    char **envp = calloc(n_env + n_extra + 1, sizeof(*envp));
    if (envp == NULL)
        return NULL;
    for (size_t i = 0; i < n_env; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int overridden = 0;
        for (size_t j = 0; j < n_extra && !overridden; j++)
            overridden = strncmp(extra[j], environ[i], klen) == 0 && extra[j][klen] == '=';
        if (!overridden)
            envp[k++] = environ[i];
    }
    for (size_t j = 0; j < n_extra; j++)
        envp[k++] = (char *)extra[j];
    envp[k] = NULL;
    return envp;
}

static int make_capture_file(void)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/ts-proc-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    unlink(path);
    return fd;
}

int ts_proc_start(const char *const argv[], const char *const env[], struct ts_proc **out)
{
    struct ts_proc *p = NULL;
    char **envp = NULL;
    int pipefd[2] = {-1, -1};
    int rc;
    pid_t parent = getpid();

    *out = NULL;
    p = calloc(1, sizeof(*p));
    if (p != NULL)
        p->log_fd = -1;
    envp = build_env(env);
    if (p == NULL || envp == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    p->log_fd = make_capture_file();
    if (p->log_fd < 0) {
        rc = p->log_fd;
        p->log_fd = -1;
        goto fail;
    }
    /* The child reports an exec failure through this close-on-exec pipe. */
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        rc = -errno;
        goto fail;
    }
    fflush(NULL);
    p->pid = fork();
    if (p->pid < 0) {
        rc = -errno;
        goto fail;
    }
    if (p->pid == 0) {
        int err;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        signal(SIGPIPE, SIG_DFL);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(p->log_fd, 1);
        dup2(p->log_fd, 2);
        if (strchr(argv[0], '/') != NULL)
            execve(argv[0], (char *const *)argv, envp);
        else
            execvpe(argv[0], (char *const *)argv, envp);
        err = errno;
        if (write(pipefd[1], &err, sizeof(err)) < 0) {
            /* nothing more to do */
        }
        _exit(127);
    }
    close(pipefd[1]);
    pipefd[1] = -1;
    {
        int child_err = 0;
        ssize_t n;
        do {
            n = read(pipefd[0], &child_err, sizeof(child_err));
        } while (n < 0 && errno == EINTR);
        if (n == (ssize_t)sizeof(child_err)) {
            waitpid(p->pid, NULL, 0);
            p->reaped = 1;
            rc = -child_err;
            goto fail;
        }
    }
    close(pipefd[0]);
    free(envp);
    *out = p;
    return 0;
fail:
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    free(envp);
    if (p != NULL) {
        p->reaped = 1;
        ts_proc_free(p);
    }
    return rc;
}

int ts_proc_pid(const struct ts_proc *p)
{
    return (int)p->pid;
}

const char *ts_proc_log(struct ts_proc *p)
{
    struct stat st;
    size_t size = 0, got = 0;
    if (fstat(p->log_fd, &st) == 0)
        size = (size_t)st.st_size;
    if (size > TS_LOG_MAX)
        size = TS_LOG_MAX;
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return p->log ? p->log : "";
    while (got < size) {
        ssize_t n = pread(p->log_fd, buf + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    free(p->log);
    p->log = buf;
    return buf;
}

static void reap(struct ts_proc *p, int wstatus)
{
    p->reaped = 1;
    if (WIFEXITED(wstatus))
        p->status = WEXITSTATUS(wstatus);
    else if (WIFSIGNALED(wstatus))
        p->status = 128 + WTERMSIG(wstatus);
    else
        p->status = 255;
}

int ts_proc_wait(struct ts_proc *p, int timeout_ms, int *exit_status)
{
    long long deadline = ts_now_ms() + timeout_ms;
    while (!p->reaped) {
        int wstatus;
        pid_t r = waitpid(p->pid, &wstatus, WNOHANG);
        if (r == p->pid) {
            reap(p, wstatus);
            break;
        }
        if (r < 0 && errno != EINTR)
            return -errno;
        if (ts_now_ms() >= deadline)
            return -ETIMEDOUT;
        ts_sleep_ms(10);
    }
    *exit_status = p->status;
    return 0;
}

int ts_proc_wait_log(struct ts_proc *p, const char *needle, int timeout_ms)
{
    long long deadline = ts_now_ms() + timeout_ms;
    for (;;) {
        int st;
        if (strstr(ts_proc_log(p), needle) != NULL)
            return 0;
        if (ts_proc_wait(p, 0, &st) == 0) {
            /* exited: one last look at what it wrote before it went */
            return strstr(ts_proc_log(p), needle) != NULL ? 0 : -ECHILD;
        }
        if (ts_now_ms() >= deadline)
            return -ETIMEDOUT;
        ts_sleep_ms(20);
    }
}

int ts_proc_signal(struct ts_proc *p, int sig)
{
    if (p->reaped)
        return -ESRCH;
    return kill(p->pid, sig) == 0 ? 0 : -errno;
}

void ts_proc_free(struct ts_proc *p)
{
    if (p == NULL)
        return;
    if (!p->reaped && p->pid > 0) {
        int wstatus;
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, &wstatus, 0) < 0 && errno == EINTR)
            ;
    }
    if (p->log_fd >= 0)
        close(p->log_fd);
    free(p->log);
    free(p);
}

int ts_agent_start(const char *const args[], const char *const env[], struct ts_proc **out,
                   int *port)
{
    const char *bin = ts_env("AGENT_BIN");
    size_t n_args = 0, n_env = 0;
    int rc = -ECHILD;

    *out = NULL;
    while (args != NULL && args[n_args] != NULL)
        n_args++;
    while (env != NULL && env[n_env] != NULL)
        n_env++;
    const char **argv = calloc(n_args + 2, sizeof(*argv));
    const char **envv = calloc(n_env + 2, sizeof(*envv));
    if (argv == NULL || envv == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    argv[0] = bin;
    for (size_t i = 0; i < n_args; i++)
        argv[i + 1] = args[i];
    for (size_t i = 0; i < n_env; i++)
        envv[i] = env[i];

    /* The free port may be taken by a parallel test before the agent binds
     * it: retry a few times when that is why the agent exited. */
    for (int attempt = 0; attempt < 4; attempt++) {
        char port_kv[32];
        struct ts_proc *p = NULL;
        int st;
        int fp = ts_free_port();
        if (fp < 0) {
            rc = fp;
            goto out;
        }
        snprintf(port_kv, sizeof(port_kv), "PORT=%d", fp);
        envv[n_env] = port_kv;
        rc = ts_proc_start(argv, envv, &p);
        if (rc != 0)
            goto out;
        long long deadline = ts_now_ms() + 15000;
        rc = -ETIMEDOUT;
        while (ts_now_ms() < deadline) {
            if (ts_wait_port(fp, 50) == 0) {
                rc = 0;
                break;
            }
            if (ts_proc_wait(p, 0, &st) == 0) {
                rc = -ECHILD;
                break;
            }
        }
        if (rc == 0) {
            *out = p;
            *port = fp;
            goto out;
        }
        const char *log = ts_proc_log(p);
        int in_use = strstr(log, "in use") != NULL;
        if (!in_use || attempt == 3)
            cr_log_error("agent did not start (%s); its output:\n%s",
                         rc == -ECHILD ? "exited" : "timeout", log);
        ts_proc_free(p);
        if (!in_use)
            goto out;
    }
out:
    free(argv);
    free(envv);
    return rc;
}

/* callwall-impaird: the userspace link-impairment stage. Packets that an
 * iptables NFQUEUE rule hands over are dropped (loss, queue limit), held in a
 * min-heap until their departure time (delay, jitter, rate), duplicated or sent
 * at once (reorder), following impair_config_t. `--simulate` feeds virtual
 * packets through the same model, for tests that need neither root nor packets.
 * See README.md next to this file for the config format and conventions. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/netfilter.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "lateness.h"
#include "model.h"
#include "nfq.h"
#include "realtime.h"

/* Duplicates are re-sent through a raw socket carrying this mark; the NFQUEUE
 * rule must skip it (`-m mark ! --mark 0x1d0f`) or the copy would loop. */
#define DUP_MARK 0x1d0f
/* The kernel queue holds what we hold plus what we have not read yet. */
#define KERNEL_QUEUE_HEADROOM 4096
/* Enough for an IPv4 or IPv6 header; the length comes from NFQA_CAP_LEN. */
#define HEADER_COPY_RANGE 64
#define FULL_COPY_RANGE 65535
#define RECEIVE_ROUNDS 8   /* recvmmsg calls before servicing departures again */
/* Packets due within this much of the one that woke us leave with it: one wake
 * and one sendmsg for a burst, at the cost of leaving up to 20 us early. */
#define RIDE_ALONG_NS (20 * NS_PER_US)
/* After a read that found more than one packet (or any read in a flood), leave
 * the queue alone this long: packets arriving in that window are timestamped
 * up to 50 us late; a lone packet never is. */
#define COALESCE_NS (50 * NS_PER_US)
/* A waker's timer goes off this much before a departure at most (its recent
 * wake-up latency, learnt), and it spins the rest of the way. */
#define SPIN_MAX_NS (50 * NS_PER_US)
#define SPIN_START_NS (20 * NS_PER_US)
#define EXIT_CONFIG 2
/* Lateness above this counts in the stats' over_tolerance (--late-tolerance-us). */
#define DEFAULT_LATE_TOLERANCE_US 500
/* Verdicts queued for one sendmsg; their lateness is measured when it is sent. */
#define PENDING_MAX 4096
#define MAX_WAKERS 2
#define HELPER_STACK (256 * 1024)
/* While traffic is under this rate the wakers run SCHED_FIFO, on two CPUs (see
 * README.md, Timing); above it one ordinary task reads in batches. */
#define REALTIME_MAX_PPS 5000
#define RATE_WINDOW_NS (100 * 1000 * NS_PER_US)

typedef struct {
    const char *config_path;
    const char *stats_path;
    long simulate;  /* packets, or -1 */
    long interval_us;
    long size;
    long late_tolerance_us;
    int realtime;
    int single_waker;
} options_t;

typedef struct daemon daemon_t;

/* One thread that sleeps until the next event (a departure, a packet, a
 * signal) and then does whatever is due, holding the daemon's lock. Two of
 * them, pinned to two CPUs, so that a CPU that does not run for a while (its
 * vCPU preempted by the host, or a long non-preemptible kernel path) delays
 * nothing: the other one does the work. */
typedef struct {
    daemon_t *d;
    int index;          /* 0: the main thread (it also handles signals) */
    int cpu;            /* its CPU while two wakers are active, else -1 */
    int kick_fd, signal_fd;
    int epoll_all, epoll_quiet;
    int realtime_now, pinned_now;
    int64_t early_ns;   /* how long before a departure it arms its timer */
    lateness_t wake;    /* woken by its timer minus the departure it slept for */
    uint64_t released, reads;  /* packets it released; receive passes that found packets */
    pthread_t thread;
} waker_t;

struct daemon {
    pthread_mutex_t lock;  /* every field below, and the wakers' counters */
    impair_model_t model;
    departure_heap_t heap;
    nfq_t nfq;
    int raw4, raw6;
    int64_t now_ns;
    uint64_t duplicates_failed;
    const options_t *options;
    int flood;             /* over REALTIME_MAX_PPS: one ordinary waker, batching */
    int realtime_refused;  /* errno of a refused sched_setscheduler, else 0 */
    int memory_lock_error; /* errno of a refused mlockall, else 0 */
    int64_t window_end_ns;
    uint64_t window_received;
    int64_t quiet_until_ns;
    int stopping, status;
    int64_t started_ns, steal_at_start_ms;
    lateness_t late;       /* verdict sent minus scheduled departure, per packet */
    int64_t pending[PENDING_MAX];  /* departures of the verdicts not sent yet */
    size_t pending_count;
    size_t wakers;
    waker_t waker[MAX_WAKERS];
};

static uint32_t copy_range_for(const impair_config_t *cfg)
{
    return cfg->duplicate_p > 0.0 ? FULL_COPY_RANGE : HEADER_COPY_RANGE;
}

static uint32_t kernel_queue_length(const impair_config_t *cfg)
{
    return cfg->limit_packets + KERNEL_QUEUE_HEADROOM;
}

/* Two wakers work, on their two CPUs, unless traffic is a flood. */
static int pair_active(const daemon_t *d)
{
    return d->wakers > 1 && !d->flood;
}

static int realtime_wanted(const daemon_t *d)
{
    return d->options->realtime && !d->flood && !d->realtime_refused;
}

/* ---- statistics ---- */

static void write_scheduling(FILE *file, const daemon_t *d)
{
    const waker_t *main_waker = &d->waker[0];
    int slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    fprintf(file,
            "{\"policy\": \"%s\", \"priority\": %d, \"realtime_refused\": \"%s\", "
            "\"memory_locked\": %s, \"memory_lock_error\": \"%s\", \"timer_slack_ns\": %d, "
            "\"wakers\": %d, \"flood\": %s, \"per_waker\": [",
            main_waker->realtime_now ? "fifo" : "other",
            main_waker->realtime_now ? REALTIME_PRIORITY : 0,
            d->realtime_refused ? strerror(d->realtime_refused) : "",
            d->memory_lock_error ? "false" : "true",
            d->memory_lock_error ? strerror(d->memory_lock_error) : "", slack,
            pair_active(d) ? 2 : 1, d->flood ? "true" : "false");
    for (size_t i = 0; i < d->wakers; i++) {
        const waker_t *w = &d->waker[i];
        fprintf(file,
                "%s{\"cpu\": %d, \"realtime\": %s, \"released\": %" PRIu64 ", \"reads\": %" PRIu64
                ", \"early_us\": %" PRId64 ", \"wakeup\": ",
                i ? ", " : "", w->pinned_now ? w->cpu : -1, w->realtime_now ? "true" : "false",
                w->released, w->reads, (int64_t)(w->early_ns / NS_PER_US));
        lateness_write_json(file, &w->wake, 0);
        fputc('}', file);
    }
    fputs("]}", file);
}

static void write_stats(const daemon_t *d)
{
    if (!d->options->stats_path)
        return;
    const impair_stats_t *s = &d->model.stats;
    char temporary[4096];
    snprintf(temporary, sizeof(temporary), "%s.tmp", d->options->stats_path);
    FILE *file = fopen(temporary, "w");
    if (!file) {
        fprintf(stderr, "callwall-impaird: %s: %s\n", temporary, strerror(errno));
        return;
    }
    fprintf(file,
            "{\"received\": %" PRIu64 ", \"passed\": %" PRIu64 ", \"dropped_loss\": %" PRIu64
            ", \"dropped_limit\": %" PRIu64 ", \"duplicated\": %" PRIu64
            ", \"reordered\": %" PRIu64 ", \"held\": %zu, \"enobufs\": %" PRIu64
            ", \"netlink_errors\": %" PRIu64 ", \"duplicates_failed\": %" PRIu64,
            s->received, s->passed, s->dropped_loss, s->dropped_limit, s->duplicated,
            s->reordered, d->heap.count, d->nfq.enobufs, d->nfq.netlink_errors,
            d->duplicates_failed);
    fputs(", \"lateness\": ", file);
    lateness_write_json(file, &d->late, 1);
    fputs(", \"scheduling\": ", file);
    write_scheduling(file, d);
    int64_t steal = steal_ms();
    fprintf(file, ", \"machine\": {\"cpus\": %ld, \"elapsed_ms\": %" PRId64
                  ", \"steal_ms\": %" PRId64 "}}\n",
            sysconf(_SC_NPROCESSORS_ONLN), (monotonic_ns() - d->started_ns) / 1000000,
            steal >= 0 && d->steal_at_start_ms >= 0 ? steal - d->steal_at_start_ms : -1);
    if (fclose(file) != 0 || rename(temporary, d->options->stats_path) != 0)
        fprintf(stderr, "callwall-impaird: %s: %s\n", d->options->stats_path, strerror(errno));
}

/* ---- duplicates: re-sent through a marked raw socket ---- */

static void send_duplicate(daemon_t *d, const held_packet_t *copy)
{
    const unsigned char *ip = copy->copy;
    ssize_t sent = -1;
    if (copy->length >= 20 && (ip[0] >> 4) == 4 && d->raw4 >= 0) {
        struct sockaddr_in to = {.sin_family = AF_INET};
        memcpy(&to.sin_addr, ip + 16, 4);
        sent = sendto(d->raw4, ip, copy->length, 0, (struct sockaddr *)&to, sizeof(to));
    } else if (copy->length >= 40 && (ip[0] >> 4) == 6 && d->raw6 >= 0) {
        struct sockaddr_in6 to = {.sin6_family = AF_INET6};
        memcpy(&to.sin6_addr, ip + 24, 16);
        sent = sendto(d->raw6, ip, copy->length, 0, (struct sockaddr *)&to, sizeof(to));
    }
    if (sent < 0)
        d->duplicates_failed++;
}

static int open_raw(int family)
{
    int fd = socket(family, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_RAW);
    int mark = DUP_MARK;
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the data path (called with the lock held) ---- */

/* Send the queued verdicts; each accepted packet's lateness is the time of
 * this send minus its scheduled departure. */
static void send_verdicts(daemon_t *d)
{
    int64_t sent_ns = monotonic_ns();
    nfq_flush(&d->nfq);
    for (size_t i = 0; i < d->pending_count; i++)
        lateness_add(&d->late, sent_ns - d->pending[i]);
    d->pending_count = 0;
}

static void release(daemon_t *d, held_packet_t *packet)
{
    if (packet->kind == HELD_ORIGINAL) {
        nfq_verdict(&d->nfq, packet->packet_id, NF_ACCEPT);
        if (d->pending_count < PENDING_MAX)
            d->pending[d->pending_count++] = packet->departure_ns;
        else
            lateness_add(&d->late, monotonic_ns() - packet->departure_ns);
    } else {
        int64_t sent_ns = monotonic_ns();
        send_duplicate(d, packet);
        lateness_add(&d->late, sent_ns - packet->departure_ns);
        free(packet->copy);
    }
}

static void hold_or_release(daemon_t *d, held_packet_t *packet)
{
    if (packet->departure_ns <= d->now_ns || heap_push(&d->heap, packet) < 0)
        release(d, packet);  /* due now (or no memory to hold it: pass undelayed) */
}

static void on_packet(void *ctx, const nfq_packet_t *packet)
{
    daemon_t *d = ctx;
    decision_t decision = model_decide(&d->model, d->now_ns, packet->length, d->heap.count);
    if (decision.fate != FATE_PASS) {
        nfq_verdict(&d->nfq, packet->packet_id, NF_DROP);
        return;
    }
    held_packet_t original = {decision.departure_ns, 0, packet->packet_id, packet->length,
                              HELD_ORIGINAL, NULL};
    hold_or_release(d, &original);
    if (!decision.duplicate)
        return;
    if (packet->payload_length < packet->length) {
        d->duplicates_failed++;  /* copied before duplicates were configured */
        return;
    }
    held_packet_t copy = {decision.duplicate_departure_ns, 0, packet->packet_id,
                          packet->length, HELD_DUPLICATE, malloc(packet->length)};
    if (!copy.copy) {
        d->duplicates_failed++;
        return;
    }
    memcpy(copy.copy, packet->payload, packet->length);
    hold_or_release(d, &copy);
}

static void release_due(daemon_t *d, waker_t *w)
{
    if (!heap_due(&d->heap, d->now_ns))
        return;
    while (heap_due(&d->heap, d->now_ns + RIDE_ALONG_NS)) {
        held_packet_t packet = heap_pop(&d->heap);
        release(d, &packet);
        w->released++;
    }
}

/* Packets read (datagrams, one packet each), or -1 on a fatal error. */
static int receive_waiting(daemon_t *d, waker_t *w)
{
    int total = 0;
    for (int round = 0; round < RECEIVE_ROUNDS; round++) {
        d->now_ns = monotonic_ns();
        release_due(d, w);  /* what is due leaves before later arrivals are counted as held */
        int got = nfq_receive(&d->nfq, on_packet, d);
        if (got < 0)
            return -1;
        if (got > 0 && round == 0)
            w->reads++;
        total += got;
        if (got < NFQ_RECV_BATCH)
            break;  /* drained: spare the recvmmsg that would say EAGAIN */
    }
    return total;
}

static void reload(daemon_t *d)
{
    impair_config_t next;
    char err[512];
    if (config_load(d->options->config_path, &next, err, sizeof(err)) < 0) {
        fprintf(stderr, "callwall-impaird: reload refused, keeping the old parameters: %s\n",
                err);
        return;
    }
    if (next.queue != d->model.cfg.queue) {
        fprintf(stderr, "callwall-impaird: reload refused, keeping the old parameters: "
                        "%s: queue: cannot change from %u to %u on reload (restart instead)\n",
                d->options->config_path, d->model.cfg.queue, next.queue);
        return;
    }
    impair_config_t previous = d->model.cfg;
    send_verdicts(d);
    model_reconfigure(&d->model, &next);
    if (copy_range_for(&previous) != copy_range_for(&next) ||
        previous.limit_packets != next.limit_packets)
        nfq_set_params(&d->nfq, kernel_queue_length(&next), copy_range_for(&next));
    fprintf(stderr, "callwall-impaird: reloaded %s\n", d->options->config_path);
}

/* 1: keep running, 0: stop. */
static int handle_signal(daemon_t *d, int fd)
{
    struct signalfd_siginfo info;
    while (read(fd, &info, sizeof(info)) == (ssize_t)sizeof(info)) {
        switch (info.ssi_signo) {
        case SIGHUP: reload(d); break;
        case SIGUSR1: write_stats(d); break;
        case SIGTERM:
        case SIGINT: return 0;
        }
    }
    return 1;
}

/* ---- scheduling ----
 *
 * Real-time priority while traffic is light. On a busy machine an ordinary
 * task wakes milliseconds late (p99 delay error 4 ms measured here at load 6 on
 * 2 cores; under 1 ms at SCHED_FIFO). But a real-time reader preempts the
 * sender at every packet and reads them one by one, which cost 2-3x the CPU per
 * packet in a flood; so above REALTIME_MAX_PPS the daemon drops to one
 * ordinary task, and batches. Harmless: it sleeps whenever nothing is due, does
 * bounded work per wake, and the kernel's RT throttling caps it below a full CPU. */

static void kick(const waker_t *w)
{
    uint64_t one = 1;
    if (write(w->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        fprintf(stderr, "callwall-impaird: waking a waker: %s\n", strerror(errno));
}

/* Called once per pass: every RATE_WINDOW_NS, judge the rate seen. */
static void adapt_to_rate(daemon_t *d)
{
    if (d->now_ns < d->window_end_ns)
        return;
    double seconds = (double)(d->now_ns - d->window_end_ns + RATE_WINDOW_NS) / NS_PER_S;
    double packets = (double)(d->model.stats.received - d->window_received);
    int was_flood = d->flood;
    d->flood = d->window_end_ns != 0 && packets > REALTIME_MAX_PPS * seconds;
    d->window_received = d->model.stats.received;
    d->window_end_ns = d->now_ns + RATE_WINDOW_NS;
    if (was_flood && !d->flood && d->wakers > 1)
        kick(&d->waker[1]);  /* unpark the helper */
}

/* Bring the calling waker's class and CPU in line with what the daemon wants
 * (lock held: the stats read them). */
static void apply_scheduling(daemon_t *d, waker_t *w)
{
    int realtime = realtime_wanted(d);
    if (realtime != w->realtime_now) {
        int error = set_thread_realtime(realtime);
        if (error == 0) {
            w->realtime_now = realtime;
        } else if (realtime) {
            fprintf(stderr, "callwall-impaird: running without real-time priority (%s): "
                            "delays may be late on a busy machine\n", strerror(error));
            d->realtime_refused = error;  /* do not try again; the stats say so */
        }
    }
    int pinned = pair_active(d) && w->cpu >= 0;
    if (pinned != w->pinned_now && pin_thread(pinned ? w->cpu : -1) == 0)
        w->pinned_now = pinned;
}

/* ---- the wakers ---- */

static int watch(int epoll_fd, int fd)
{
    struct epoll_event event = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

/* Two epoll sets per waker: everything (the queue, its kick, signals), and
 * everything but the queue: after a read the waker leaves the queue alone
 * COALESCE_NS, so a flood is read in batches instead of one packet per wake;
 * a parked helper waits there for its kick. */
static int setup_waker(daemon_t *d, waker_t *w, int index, int cpu, int signal_fd)
{
    *w = (waker_t){.d = d, .index = index, .cpu = cpu, .signal_fd = signal_fd,
                   .early_ns = SPIN_START_NS};
    lateness_init(&w->wake, d->late.tolerance_ns);
    w->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->epoll_all = epoll_create1(EPOLL_CLOEXEC);
    w->epoll_quiet = epoll_create1(EPOLL_CLOEXEC);
    if (w->kick_fd < 0 || w->epoll_all < 0 || w->epoll_quiet < 0)
        return -1;
    int sets[] = {w->epoll_all, w->epoll_quiet};
    for (int i = 0; i < 2; i++)
        if (watch(sets[i], w->kick_fd) < 0 || (signal_fd >= 0 && watch(sets[i], signal_fd) < 0))
            return -1;
    return watch(w->epoll_all, d->nfq.fd);
}

/* After a timed wake for `departure_ns`: learn how long wakes take (the
 * timeout ran out at armed_ns), record how late this one was, and (at real-time
 * priority) spin the rest of the way if it was early. Lock held: the other
 * waker waits rather than spins too. */
static int64_t after_timer(waker_t *w, int64_t armed_ns, int64_t departure_ns)
{
    int64_t now = monotonic_ns();
    int64_t took = now - armed_ns;
    if (took > SPIN_MAX_NS)
        took = SPIN_MAX_NS;
    if (took < 0)
        took = 0;
    w->early_ns += (took - w->early_ns) / 8;
    lateness_add(&w->wake, now - departure_ns);
    if (w->realtime_now && now < departure_ns && departure_ns - now <= SPIN_MAX_NS)
        now = spin_until(departure_ns);
    return now;
}

typedef struct {
    int timer, queue, kick, signal;
} woken_t;

/* Sleep on `epoll_fd` until an event or CLOCK_MONOTONIC time `until_ns`
 * (INT64_MAX: no time limit). The timeout is epoll_pwait2's own hrtimer, on
 * this thread's CPU, at nanosecond resolution (0 slack at real-time priority,
 * 1 ns otherwise plus 0.1% of the wait): a timerfd re-armed at every pass
 * cost a tenth of the daemon's CPU time in a flood on this VM. */
static woken_t wait_for_events(waker_t *w, int epoll_fd, int64_t until_ns)
{
    woken_t woken = {0, 0, 0, 0};
    struct epoll_event events[4];
    struct timespec budget, *timeout = NULL;
    if (until_ns != INT64_MAX) {
        int64_t wait = until_ns - monotonic_ns();
        if (wait < 0)
            wait = 0;
        budget.tv_sec = wait / NS_PER_S;
        budget.tv_nsec = wait % NS_PER_S;
        timeout = &budget;
    }
    int ready = epoll_pwait2(epoll_fd, events, 4, timeout, NULL);
    if (ready == 0 && timeout)
        woken.timer = 1;
    for (int i = 0; i < ready; i++) {
        int fd = events[i].data.fd;
        uint64_t count;
        if (fd == w->kick_fd)
            woken.kick = read(w->kick_fd, &count, sizeof(count)) >= 0;
        else if (fd == w->signal_fd)
            woken.signal = 1;
        else
            woken.queue = 1;
    }
    if (ready < 0 && errno != EINTR)
        fprintf(stderr, "callwall-impaird: epoll_pwait2: %s\n", strerror(errno));
    return woken;
}

static void stop_all(daemon_t *d, int status)
{
    d->stopping = 1;
    if (status < 0)
        d->status = status;
    for (size_t i = 0; i < d->wakers; i++)
        kick(&d->waker[i]);
}

/* One waker's life: do what is due, then sleep until the next departure (its
 * timer), a packet, a signal or a kick. Returns when the daemon stops. */
static void *waker_run(void *arg)
{
    waker_t *w = arg;
    daemon_t *d = w->d;
    woken_t woken = {0, 1, 0, 0};  /* read whatever queued before we slept */
    int64_t slept_for = INT64_MAX;  /* the departure the timeout was for */
    int64_t wake_at = INT64_MAX;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        if (d->stopping)
            break;
        int64_t now = monotonic_ns();
        if (woken.timer && slept_for != INT64_MAX)
            now = after_timer(w, wake_at, slept_for);
        d->now_ns = now;
        release_due(d, w);
        if (woken.queue && d->now_ns >= d->quiet_until_ns) {
            int got = receive_waiting(d, w);
            if (got < 0) {
                stop_all(d, -1);
                break;
            }
            if (got > 1 || d->flood)  /* packets come faster than we wake: batch */
                d->quiet_until_ns = d->now_ns + COALESCE_NS;
        }
        send_verdicts(d);
        if (woken.signal && !handle_signal(d, w->signal_fd)) {
            stop_all(d, 0);
            break;
        }
        adapt_to_rate(d);
        apply_scheduling(d, w);
        int parked = w->index > 0 && !pair_active(d);
        int64_t departure = d->heap.count ? d->heap.items[0].departure_ns : INT64_MAX;
        int quiet = d->now_ns < d->quiet_until_ns;
        /* Early, to spin the rest of the way, only at real-time priority: in a
         * flood the spins would add up to a large share of a CPU. */
        int64_t early = w->realtime_now ? w->early_ns : 0;
        wake_at = departure == INT64_MAX ? INT64_MAX : departure - early;
        slept_for = departure;
        if (quiet && d->quiet_until_ns < wake_at) {
            wake_at = d->quiet_until_ns;
            slept_for = INT64_MAX;
        }
        if (parked)
            wake_at = INT64_MAX;
        int epoll_fd = parked || quiet ? w->epoll_quiet : w->epoll_all;
        pthread_mutex_unlock(&d->lock);
        woken = wait_for_events(w, epoll_fd, wake_at);
        if (parked)
            woken.queue = 1;  /* unparked: see to the queue at once */
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* Blocked from the start, read through a signalfd: a signal during the bind
 * waits instead of killing the process half-way. Threads inherit the mask. */
static void block_signals(sigset_t *signals)
{
    sigemptyset(signals);
    sigaddset(signals, SIGTERM);
    sigaddset(signals, SIGINT);
    sigaddset(signals, SIGHUP);
    sigaddset(signals, SIGUSR1);
    sigprocmask(SIG_BLOCK, signals, NULL);
}

static void release_everything(daemon_t *d)
{
    while (d->heap.count) {
        held_packet_t packet = heap_pop(&d->heap);
        release(d, &packet);
    }
    send_verdicts(d);
}

/* The second waker, pinned to another CPU; none when this process may use
 * one CPU only (or --single-waker). */
static void start_helper(daemon_t *d, const int *cpus, size_t count)
{
    if (count < 2 || d->options->single_waker)
        return;
    if (setup_waker(d, &d->waker[1], 1, cpus[1], -1) < 0) {
        fprintf(stderr, "callwall-impaird: one waker only: %s\n", strerror(errno));
        return;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, HELPER_STACK);
    d->wakers = 2;  /* before it runs: it reads the count under the lock */
    int error = pthread_create(&d->waker[1].thread, &attr, waker_run, &d->waker[1]);
    pthread_attr_destroy(&attr);
    if (error) {
        d->wakers = 1;
        fprintf(stderr, "callwall-impaird: one waker only: %s\n", strerror(error));
    }
}

static int run_daemon(const options_t *options, const impair_config_t *cfg)
{
    static daemon_t d;  /* large (heap, buffers): not on the stack */
    char err[512];
    d.options = options;
    d.started_ns = monotonic_ns();
    d.steal_at_start_ms = steal_ms();
    pthread_mutex_init(&d.lock, NULL);
    model_init(&d.model, cfg);
    lateness_init(&d.late, options->late_tolerance_us * NS_PER_US);
    sigset_t signals;
    block_signals(&signals);
    if (nfq_open(&d.nfq, (uint16_t)cfg->queue, kernel_queue_length(cfg), copy_range_for(cfg),
                 err, sizeof(err)) < 0) {
        fprintf(stderr, "callwall-impaird: queue %u: %s\n", cfg->queue, err);
        return 1;
    }
    int signal_fd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    int cpus[MAX_WAKERS];
    remember_allowed_cpus();
    size_t count = pick_cpus(cfg->queue, cpus, MAX_WAKERS);
    if (signal_fd < 0 || setup_waker(&d, &d.waker[0], 0, count ? cpus[0] : -1, signal_fd) < 0) {
        fprintf(stderr, "callwall-impaird: setting up events: %s\n", strerror(errno));
        return 1;
    }
    d.wakers = 1;
    d.raw4 = open_raw(AF_INET);
    d.raw6 = open_raw(AF_INET6);
    /* Inherited by the helper (and set again on leaving SCHED_FIFO). */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    d.memory_lock_error = lock_memory();
    if (d.memory_lock_error)
        fprintf(stderr, "callwall-impaird: memory not locked (%s): a page fault may delay "
                        "packets\n", strerror(d.memory_lock_error));
    start_helper(&d, cpus, count);
    fprintf(stderr, "callwall-impaird: queue %u bound\n", cfg->queue);
    waker_run(&d.waker[0]);
    if (d.wakers > 1)
        pthread_join(d.waker[1].thread, NULL);
    release_everything(&d);
    write_stats(&d);
    nfq_close(&d.nfq);
    heap_free(&d.heap);
    return d.status < 0 ? 1 : 0;
}

/* ---- --simulate: virtual arrivals through the same model and heap ---- */

static long long departure_us(int64_t departure_ns, int64_t arrival_ns)
{
    return (long long)((departure_ns - arrival_ns) / NS_PER_US);
}

static int run_simulation(const options_t *options, const impair_config_t *cfg)
{
    impair_model_t model;
    departure_heap_t heap = {0};
    model_init(&model, cfg);
    for (long seq = 0; seq < options->simulate; seq++) {
        int64_t arrival = (int64_t)seq * options->interval_us * NS_PER_US;
        while (heap_due(&heap, arrival))
            heap_pop(&heap);
        decision_t decision = model_decide(&model, arrival, (uint32_t)options->size, heap.count);
        if (decision.fate != FATE_PASS) {
            printf("%ld drop 0\n", seq);
            continue;
        }
        held_packet_t held = {decision.departure_ns, 0, 0, (uint32_t)options->size,
                              HELD_ORIGINAL, NULL};
        if (decision.departure_ns > arrival)
            heap_push(&heap, &held);
        printf("%ld pass %lld\n", seq, departure_us(decision.departure_ns, arrival));
        if (decision.duplicate) {
            held.departure_ns = decision.duplicate_departure_ns;
            held.kind = HELD_DUPLICATE;
            if (held.departure_ns > arrival)
                heap_push(&heap, &held);
            printf("%ld dup %lld\n", seq, departure_us(decision.duplicate_departure_ns, arrival));
        }
    }
    heap_free(&heap);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- command line ---- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: callwall-impaird --config FILE [--stats FILE] [--no-realtime] [--single-waker]\n"
            "                        [--late-tolerance-us US]\n"
            "       callwall-impaird --config FILE --simulate N [--interval-us I] [--size B]\n");
}

static int parse_long(const char *name, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno || value < min || value > max) {
        fprintf(stderr, "callwall-impaird: --%s: expected a whole number from %ld to %ld, "
                        "got '%s'\n", name, min, max, text);
        return -1;
    }
    *out = value;
    return 0;
}

static int parse_options(int argc, char **argv, options_t *options)
{
    static const struct option longs[] = {
        {"config", required_argument, NULL, 'c'}, {"stats", required_argument, NULL, 's'},
        {"simulate", required_argument, NULL, 'n'}, {"interval-us", required_argument, NULL, 'i'},
        {"size", required_argument, NULL, 'b'}, {"no-realtime", no_argument, NULL, 'r'},
        {"late-tolerance-us", required_argument, NULL, 't'},
        {"single-waker", no_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *options = (options_t){NULL, NULL, -1, 1000, 200, DEFAULT_LATE_TOLERANCE_US, 1, 0};
    int option;
    while ((option = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        int bad = 0;
        switch (option) {
        case 'c': options->config_path = optarg; break;
        case 's': options->stats_path = optarg; break;
        case 'n': bad = parse_long("simulate", optarg, 0, 100000000, &options->simulate); break;
        case 'i': bad = parse_long("interval-us", optarg, 0, 3600000000L, &options->interval_us);
                  break;
        case 'b': bad = parse_long("size", optarg, 1, 65535, &options->size); break;
        case 'r': options->realtime = 0; break;
        case 'w': options->single_waker = 1; break;
        case 't': bad = parse_long("late-tolerance-us", optarg, 0, 3600000000L,
                                   &options->late_tolerance_us);
                  break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
        if (bad)
            return -1;
    }
    if (optind < argc || !options->config_path) {
        usage(stderr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    options_t options;
    if (parse_options(argc, argv, &options) < 0)
        return EXIT_CONFIG;
    impair_config_t cfg;
    char err[512];
    if (config_load(options.config_path, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return EXIT_CONFIG;
    }
    if (options.simulate >= 0)
        return run_simulation(&options, &cfg);
    return run_daemon(&options, &cfg);
}

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
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "model.h"
#include "nfq.h"

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
/* After reading packets, leave the queue alone this long: packets arriving in
 * that window are timestamped up to 50 us late; a lone packet never is. */
#define COALESCE_NS (50 * NS_PER_US)
#define EXIT_CONFIG 2

typedef struct {
    const char *config_path;
    const char *stats_path;
    long simulate;  /* packets, or -1 */
    long interval_us;
    long size;
    int realtime;
} options_t;

typedef struct {
    impair_model_t model;
    departure_heap_t heap;
    nfq_t nfq;
    int raw4, raw6;
    int64_t now_ns;
    uint64_t duplicates_failed;
    const options_t *options;
    int options_realtime, realtime_now;  /* wanted; in effect */
    int64_t window_end_ns;
    uint64_t window_received;
} daemon_t;

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static uint32_t copy_range_for(const impair_config_t *cfg)
{
    return cfg->duplicate_p > 0.0 ? FULL_COPY_RANGE : HEADER_COPY_RANGE;
}

static uint32_t kernel_queue_length(const impair_config_t *cfg)
{
    return cfg->limit_packets + KERNEL_QUEUE_HEADROOM;
}

/* ---- statistics ---- */

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
            ", \"netlink_errors\": %" PRIu64 ", \"duplicates_failed\": %" PRIu64 "}\n",
            s->received, s->passed, s->dropped_loss, s->dropped_limit, s->duplicated,
            s->reordered, d->heap.count, d->nfq.enobufs, d->nfq.netlink_errors,
            d->duplicates_failed);
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

/* ---- the data path ---- */

static void release(daemon_t *d, held_packet_t *packet)
{
    if (packet->kind == HELD_ORIGINAL) {
        nfq_verdict(&d->nfq, packet->packet_id, NF_ACCEPT);
    } else {
        send_duplicate(d, packet);
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

static void release_due(daemon_t *d)
{
    if (!heap_due(&d->heap, d->now_ns))
        return;
    while (heap_due(&d->heap, d->now_ns + RIDE_ALONG_NS)) {
        held_packet_t packet = heap_pop(&d->heap);
        release(d, &packet);
    }
}

static int receive_waiting(daemon_t *d)
{
    for (int round = 0; round < RECEIVE_ROUNDS; round++) {
        d->now_ns = monotonic_ns();
        release_due(d);  /* what is due leaves before later arrivals are counted as held */
        int got = nfq_receive(&d->nfq, on_packet, d);
        if (got < 0)
            return -1;
        if (got < NFQ_RECV_BATCH)
            break;  /* drained: spare the recvmmsg that would say EAGAIN */
    }
    return 0;
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

/* Real-time priority while traffic is light. On a busy machine an ordinary
 * task wakes milliseconds late (p99 delay error 4 ms measured here at load 6 on
 * 2 cores; under 1 ms at SCHED_FIFO). But a real-time reader preempts the
 * sender at every packet and reads them one by one, which cost 2-3x the CPU per
 * packet in a flood; so above REALTIME_MAX_PPS the daemon drops to an ordinary
 * task, and batches. Harmless: it sleeps whenever nothing is due, does bounded
 * work per wake, and the kernel's RT throttling caps it below a full CPU. */
#define REALTIME_PRIORITY 10
#define REALTIME_MAX_PPS 5000
#define RATE_WINDOW_NS (100 * 1000 * NS_PER_US)

static void set_realtime(daemon_t *d, int on)
{
    if (on == d->realtime_now)
        return;
    struct sched_param param = {.sched_priority = on ? REALTIME_PRIORITY : 0};
    if (sched_setscheduler(0, (on ? SCHED_FIFO : SCHED_OTHER) | SCHED_RESET_ON_FORK,
                           &param) < 0) {
        fprintf(stderr, "callwall-impaird: running without real-time priority (%s): delays "
                        "may be late on a busy machine\n", strerror(errno));
        d->options_realtime = 0;  /* do not try again */
        return;
    }
    d->realtime_now = on;
}

/* Called once per loop: every RATE_WINDOW_NS, pick the class for the rate seen. */
static void adapt_priority(daemon_t *d)
{
    if (!d->options_realtime || d->now_ns < d->window_end_ns)
        return;
    double seconds = (double)(d->now_ns - d->window_end_ns + RATE_WINDOW_NS) / NS_PER_S;
    double packets = (double)(d->model.stats.received - d->window_received);
    set_realtime(d, d->window_end_ns == 0 || packets <= REALTIME_MAX_PPS * seconds);
    d->window_received = d->model.stats.received;
    d->window_end_ns = d->now_ns + RATE_WINDOW_NS;
}

/* Two epoll sets: everything, and signals only. After a read the daemon waits
 * on the second for COALESCE_NS, so a flood is read in batches instead of one
 * packet per wake (which, at real-time priority, tripled the CPU per packet). */
typedef struct {
    int everything, signals_only, signal_fd;
} events_t;

/* How long to sleep: until the head of the heap is due or `quiet_until`,
 * whichever is first; forever when neither is pending. */
static struct timespec *wait_budget(const departure_heap_t *heap, int64_t now_ns,
                                    int64_t quiet_until_ns, struct timespec *budget)
{
    int64_t until = quiet_until_ns > now_ns ? quiet_until_ns : INT64_MAX;
    if (heap->count && heap->items[0].departure_ns < until)
        until = heap->items[0].departure_ns;
    if (until == INT64_MAX)
        return NULL;
    int64_t wait = until > now_ns ? until - now_ns : 0;
    budget->tv_sec = wait / NS_PER_S;
    budget->tv_nsec = wait % NS_PER_S;
    return budget;
}

/* Blocked from the start, read through a signalfd: a signal during the bind
 * waits instead of killing the process half-way. */
static void block_signals(sigset_t *signals)
{
    sigemptyset(signals);
    sigaddset(signals, SIGTERM);
    sigaddset(signals, SIGINT);
    sigaddset(signals, SIGHUP);
    sigaddset(signals, SIGUSR1);
    sigprocmask(SIG_BLOCK, signals, NULL);
}

static int watch(int epoll_fd, int fd)
{
    struct epoll_event event = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

static int setup_events(int nfq_fd, const sigset_t *signals, events_t *events)
{
    events->signal_fd = signalfd(-1, signals, SFD_NONBLOCK | SFD_CLOEXEC);
    events->everything = epoll_create1(EPOLL_CLOEXEC);
    events->signals_only = epoll_create1(EPOLL_CLOEXEC);
    if (events->signal_fd < 0 || events->everything < 0 || events->signals_only < 0)
        return -1;
    if (watch(events->everything, nfq_fd) < 0 || watch(events->everything, events->signal_fd) < 0
        || watch(events->signals_only, events->signal_fd) < 0)
        return -1;
    return 0;
}

/* One wait per round: epoll_pwait2 sleeps with nanosecond precision until the
 * next departure (timer slack is 1 ns), so no timerfd to re-arm and read. */
static int event_loop(daemon_t *d, const events_t *events)
{
    int64_t quiet_until_ns = 0;
    for (;;) {
        d->now_ns = monotonic_ns();
        release_due(d);
        nfq_flush(&d->nfq);
        adapt_priority(d);
        struct timespec budget;
        struct epoll_event ready_events[2];
        int epoll_fd = d->now_ns < quiet_until_ns ? events->signals_only : events->everything;
        int ready = epoll_pwait2(epoll_fd, ready_events, 2,
                                 wait_budget(&d->heap, d->now_ns, quiet_until_ns, &budget), NULL);
        if (ready < 0 && errno != EINTR) {
            fprintf(stderr, "callwall-impaird: epoll_pwait2: %s\n", strerror(errno));
            return -1;
        }
        for (int i = 0; i < ready; i++) {
            int fd = ready_events[i].data.fd;
            if (fd == d->nfq.fd) {
                if (receive_waiting(d) < 0)
                    return -1;
                quiet_until_ns = d->now_ns + COALESCE_NS;
            }
            if (fd == events->signal_fd && !handle_signal(d, events->signal_fd))
                return 0;
        }
    }
}

static void release_everything(daemon_t *d)
{
    while (d->heap.count) {
        held_packet_t packet = heap_pop(&d->heap);
        release(d, &packet);
    }
    nfq_flush(&d->nfq);
}

static int run_daemon(const options_t *options, const impair_config_t *cfg)
{
    static daemon_t d;  /* large (heap, buffers): not on the stack */
    char err[512];
    d.options = options;
    model_init(&d.model, cfg);
    events_t events;
    sigset_t signals;
    block_signals(&signals);
    if (nfq_open(&d.nfq, (uint16_t)cfg->queue, kernel_queue_length(cfg), copy_range_for(cfg),
                 err, sizeof(err)) < 0) {
        fprintf(stderr, "callwall-impaird: queue %u: %s\n", cfg->queue, err);
        return 1;
    }
    if (setup_events(d.nfq.fd, &signals, &events) < 0) {
        fprintf(stderr, "callwall-impaird: setting up events: %s\n", strerror(errno));
        return 1;
    }
    d.raw4 = open_raw(AF_INET);
    d.raw6 = open_raw(AF_INET6);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  /* wake at the departure, not 50 us later */
    d.options_realtime = options->realtime;
    fprintf(stderr, "callwall-impaird: queue %u bound\n", cfg->queue);
    int status = event_loop(&d, &events);
    release_everything(&d);
    write_stats(&d);
    nfq_close(&d.nfq);
    heap_free(&d.heap);
    return status < 0 ? 1 : 0;
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
            "usage: callwall-impaird --config FILE [--stats FILE] [--no-realtime]\n"
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
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *options = (options_t){NULL, NULL, -1, 1000, 200, 1};
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

/* Scheduling helpers for the waker threads (see realtime.h). */
#define _GNU_SOURCE
#include "realtime.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif

static cpu_set_t allowed;
static int allowed_known;

int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

int64_t spin_until(int64_t deadline_ns)
{
    int64_t now = monotonic_ns();
    while (now < deadline_ns) {
        cpu_pause();
        now = monotonic_ns();
    }
    return now;
}

void remember_allowed_cpus(void)
{
    CPU_ZERO(&allowed);
    allowed_known = sched_getaffinity(0, sizeof(allowed), &allowed) == 0;
}

size_t pick_cpus(unsigned seed, int *cpus, size_t max)
{
    if (!allowed_known)
        remember_allowed_cpus();
    if (!allowed_known || max == 0)
        return 0;
    int list[CPU_SETSIZE];
    size_t count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &allowed))
            list[count++] = cpu;
    if (count == 0)
        return 0;
    size_t picked = count < max ? count : max;
    /* As far apart as the mask allows (other cores rather than a sibling), and
     * rotated by the seed so that many daemons do not all share one pair. */
    for (size_t i = 0; i < picked; i++)
        cpus[i] = list[(seed + i * (count / picked)) % count];
    return picked;
}

int pin_thread(int cpu)
{
    if (!allowed_known)
        remember_allowed_cpus();
    cpu_set_t set;
    if (cpu < 0) {
        if (!allowed_known)
            return EINVAL;
        set = allowed;
    } else {
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
    }
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int set_thread_realtime(int on)
{
    struct sched_param param = {.sched_priority = on ? REALTIME_PRIORITY : 0};
    /* sched_setscheduler(0, ...) acts on the calling thread only (Linux). */
    if (sched_setscheduler(0, (on ? SCHED_FIFO : SCHED_OTHER) | SCHED_RESET_ON_FORK, &param) < 0)
        return errno;
    /* Leaving a real-time class gives the thread back its default slack
     * (50 us, since Linux 6.7), not the one it set: set it again. */
    if (!on)
        prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    return 0;
}

int64_t steal_ms(void)
{
    FILE *file = fopen("/proc/stat", "r");
    if (!file)
        return -1;
    unsigned long long v[8] = {0};
    int got = fscanf(file, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                     &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(file);
    long ticks = sysconf(_SC_CLK_TCK);
    if (got != 8 || ticks <= 0)
        return -1;
    return (int64_t)(v[7] * 1000ULL / (unsigned long long)ticks);
}

int lock_memory(void)
{
    if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0)
        return 0;
    int first = errno;
    if (mlockall(MCL_CURRENT | MCL_FUTURE) == 0)  /* kernels before 4.4 */
        return 0;
    return first;
}

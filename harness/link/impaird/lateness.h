/* How late the daemon itself is: a log-linear histogram of nanosecond
 * lateness values (e.g. verdict time minus scheduled departure), in whole
 * microseconds: exact below LATENESS_LINEAR_US, then LATENESS_SUB buckets per
 * doubling (at most 1/32 = 3% wide), up to 2^32 us (more is counted there).
 * Cumulative, so a reader can diff two snapshots of the buckets. */
#ifndef IMPAIRD_LATENESS_H
#define IMPAIRD_LATENESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LATENESS_LINEAR_US 64
#define LATENESS_SUB 32
#define LATENESS_BUCKETS (LATENESS_LINEAR_US + LATENESS_SUB * 26)

typedef struct {
    int64_t tolerance_ns;     /* values above it count in over_tolerance */
    uint64_t count;
    uint64_t early;           /* values below 0 (counted as 0 in the buckets) */
    uint64_t over_tolerance;
    int64_t max_ns;
    uint64_t buckets[LATENESS_BUCKETS];
} lateness_t;

void lateness_init(lateness_t *h, int64_t tolerance_ns);
void lateness_add(lateness_t *h, int64_t late_ns);
/* The bucket holding microseconds `us`, and a bucket's range [low, high]. */
size_t lateness_bucket(uint64_t us);
uint64_t lateness_bucket_low_us(size_t bucket);
uint64_t lateness_bucket_high_us(size_t bucket);
/* Upper bound (us) of the q-quantile (0 < q <= 1), never above the maximum; 0 when empty. */
uint64_t lateness_quantile_us(const lateness_t *h, double q);
/* One JSON object: tolerance_us, count, early, over_tolerance, p50_us, p99_us,
 * p999_us, max_us, and (with_buckets) buckets: [[low_us, count], ...], non-empty only. */
void lateness_write_json(FILE *out, const lateness_t *h, int with_buckets);

#endif

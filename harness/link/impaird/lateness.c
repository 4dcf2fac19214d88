/* The lateness histogram (see lateness.h). */
#include "lateness.h"

#include <inttypes.h>
#include <string.h>

#define NS_PER_US_L 1000
#define LATENESS_CAP_US ((1ULL << 32) - 1)

void lateness_init(lateness_t *h, int64_t tolerance_ns)
{
    memset(h, 0, sizeof(*h));
    h->tolerance_ns = tolerance_ns;
}

size_t lateness_bucket(uint64_t us)
{
    if (us < LATENESS_LINEAR_US)
        return (size_t)us;
    if (us > LATENESS_CAP_US)
        us = LATENESS_CAP_US;
    unsigned octave = 63u - (unsigned)__builtin_clzll(us);  /* >= 6 */
    unsigned shift = octave - 5u;
    size_t sub = (size_t)(us >> shift) - LATENESS_SUB;
    return LATENESS_LINEAR_US + (size_t)(octave - 6u) * LATENESS_SUB + sub;
}

uint64_t lateness_bucket_low_us(size_t bucket)
{
    if (bucket < LATENESS_LINEAR_US)
        return bucket;
    size_t k = bucket - LATENESS_LINEAR_US;
    unsigned shift = 1u + (unsigned)(k / LATENESS_SUB);
    return (uint64_t)(LATENESS_SUB + k % LATENESS_SUB) << shift;
}

uint64_t lateness_bucket_high_us(size_t bucket)
{
    if (bucket < LATENESS_LINEAR_US)
        return bucket;
    unsigned shift = 1u + (unsigned)((bucket - LATENESS_LINEAR_US) / LATENESS_SUB);
    return lateness_bucket_low_us(bucket) + (1ULL << shift) - 1;
}

void lateness_add(lateness_t *h, int64_t late_ns)
{
    h->count++;
    if (late_ns < 0) {
        h->early++;
        late_ns = 0;
    }
    if (late_ns > h->max_ns)
        h->max_ns = late_ns;
    if (late_ns > h->tolerance_ns)
        h->over_tolerance++;
    h->buckets[lateness_bucket((uint64_t)late_ns / NS_PER_US_L)]++;
}

uint64_t lateness_quantile_us(const lateness_t *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;  /* ceil: the smallest value with at least q of the count at or below it */
    if (rank < 1)
        rank = 1;
    uint64_t max_us = (uint64_t)h->max_ns / NS_PER_US_L, seen = 0;
    for (size_t i = 0; i < LATENESS_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t high = lateness_bucket_high_us(i);
            return high < max_us ? high : max_us;
        }
    }
    return max_us;
}

void lateness_write_json(FILE *out, const lateness_t *h, int with_buckets)
{
    fprintf(out,
            "{\"tolerance_us\": %" PRId64 ", \"count\": %" PRIu64 ", \"early\": %" PRIu64
            ", \"over_tolerance\": %" PRIu64 ", \"p50_us\": %" PRIu64 ", \"p99_us\": %" PRIu64
            ", \"p999_us\": %" PRIu64 ", \"max_us\": %" PRIu64,
            h->tolerance_ns / NS_PER_US_L, h->count, h->early, h->over_tolerance,
            lateness_quantile_us(h, 0.5), lateness_quantile_us(h, 0.99),
            lateness_quantile_us(h, 0.999), (uint64_t)h->max_ns / NS_PER_US_L);
    if (with_buckets) {
        fputs(", \"buckets\": [", out);
        const char *separator = "";
        for (size_t i = 0; i < LATENESS_BUCKETS; i++) {
            if (!h->buckets[i])
                continue;
            fprintf(out, "%s[%" PRIu64 ", %" PRIu64 "]", separator, lateness_bucket_low_us(i),
                    h->buckets[i]);
            separator = ", ";
        }
        fputc(']', out);
    }
    fputc('}', out);
}

/* The impairment model shared by the daemon and --simulate. */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- PRNG: splitmix64 seeds one xoshiro256** state per decision stream ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *rng, uint64_t seed, unsigned stream)
{
    uint64_t x = seed ^ (0xD1B54A32D192ED03ULL * (uint64_t)(stream + 1));
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng_t *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_unit(rng_t *rng)
{
    return (double)(rng_next(rng) >> 11) * 0x1.0p-53;  /* [0, 1) */
}

/* ---- jitter: quantile functions of netem's distribution tables, in units of
 * the jitter scale, clamped to +-4 as netem's 16-bit tables (x8192) are ---- */

static double inverse_normal_cdf(double p)
{
    /* Acklam's rational approximation, relative error < 1.2e-9. */
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                               2.445134137142996e+00, 3.754408661907416e+00};
    const double low = 0.02425;
    if (p <= 0.0)
        return -INFINITY;
    if (p < low) {
        double q = sqrt(-2.0 * log(p));
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    }
    if (p <= 1.0 - low) {
        double q = p - 0.5, r = q * q;
        return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
               (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
    }
    double q = sqrt(-2.0 * log(1.0 - p));
    return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
}

static double pareto_quantile(double u)
{
    /* iproute2 netem/pareto.c: (v^(-1/3) - 1.5) * 4/3 with v uniform on (0, 1]:
     * a Pareto(a=3) shifted to mean 0. */
    double v = 1.0 - u;
    return (pow(v, -1.0 / 3.0) - 1.5) * (4.0 / 3.0);
}

static double clamp_table(double x)
{
    return x > 4.0 ? 4.0 : (x < -4.0 ? -4.0 : x);
}

double jitter_quantile(jitter_dist_t dist, double u)
{
    switch (dist) {
    case DIST_UNIFORM:
        return 2.0 * u - 1.0;
    case DIST_NORMAL:
        return clamp_table(inverse_normal_cdf(u));
    case DIST_PARETO:
        return clamp_table(pareto_quantile(u));
    case DIST_PARETONORMAL:
        /* netem/paretonormal.c: (normal + 3 * pareto) / 4 at the same quantile. */
        return clamp_table((clamp_table(inverse_normal_cdf(u)) +
                            3.0 * clamp_table(pareto_quantile(u))) / 4.0);
    }
    return 0.0;
}

/* ---- the model ---- */

void model_reconfigure(impair_model_t *model, const impair_config_t *cfg)
{
    model->cfg = *cfg;
    for (unsigned i = 0; i < RNG_STREAMS; i++)
        rng_seed(&model->rng[i], cfg->seed, i);
    model->ge_bad = 0;
}

void model_init(impair_model_t *model, const impair_config_t *cfg)
{
    memset(model, 0, sizeof(*model));
    model_reconfigure(model, cfg);
}

static int decide_loss(impair_model_t *model, double u_loss, double u_state)
{
    const impair_config_t *cfg = &model->cfg;
    switch (cfg->loss_model) {
    case LOSS_NONE:
        return 0;
    case LOSS_BERNOULLI:
        return u_loss < cfg->loss_p;
    case LOSS_GILBERT_ELLIOTT: {
        /* Lose by the current state's probability, then move (netem's order). */
        int lost = u_loss < (model->ge_bad ? cfg->ge_loss_bad : cfg->ge_loss_good);
        if (!model->ge_bad && u_state < cfg->loss_p)
            model->ge_bad = 1;
        else if (model->ge_bad && u_state < cfg->ge_r)
            model->ge_bad = 0;
        return lost;
    }
    }
    return 0;
}

static int64_t transmission_ns(const impair_config_t *cfg, uint32_t length)
{
    if (cfg->rate_bps == 0)
        return 0;
    return (int64_t)((8.0 * (double)length * (double)NS_PER_S) / (double)cfg->rate_bps + 0.5);
}

static int64_t jittered_delay_ns(const impair_config_t *cfg, double u_jitter)
{
    int64_t delay = cfg->delay_ns;
    if (cfg->jitter_ns > 0)
        delay += llround((double)cfg->jitter_ns * jitter_quantile(cfg->jitter_dist, u_jitter));
    return delay < 0 ? 0 : delay;
}

decision_t model_decide(impair_model_t *model, int64_t arrival_ns, uint32_t length, size_t held)
{
    const impair_config_t *cfg = &model->cfg;
    /* Every stream advances once per packet, whatever happens to it, so one
     * parameter's change never shifts another's sequence. */
    double u_loss = rng_unit(&model->rng[RNG_LOSS]);
    double u_state = rng_unit(&model->rng[RNG_STATE]);
    double u_jitter = rng_unit(&model->rng[RNG_JITTER]);
    double u_duplicate = rng_unit(&model->rng[RNG_DUPLICATE]);
    double u_reorder = rng_unit(&model->rng[RNG_REORDER]);
    decision_t out = {FATE_PASS, arrival_ns, 0, 0, 0};

    model->stats.received++;
    if (decide_loss(model, u_loss, u_state)) {
        model->stats.dropped_loss++;
        out.fate = FATE_DROP_LOSS;
        return out;
    }
    if (held >= cfg->limit_packets) {
        model->stats.dropped_limit++;
        out.fate = FATE_DROP_LIMIT;
        return out;
    }
    int64_t tx = transmission_ns(cfg, length);
    out.reordered = u_reorder < cfg->reorder_p;
    if (out.reordered) {
        out.departure_ns = arrival_ns;  /* skips the delay and the rate queue */
        model->stats.reordered++;
    } else {
        int64_t departure = arrival_ns + jittered_delay_ns(cfg, u_jitter);
        if ((cfg->keep_order || cfg->rate_bps) && model->have_last &&
            model->last_departure_ns > departure)
            departure = model->last_departure_ns;
        departure += tx;
        out.departure_ns = departure;
        model->last_departure_ns = departure;
        model->have_last = 1;
    }
    out.duplicate = u_duplicate < cfg->duplicate_p;
    if (out.duplicate) {
        /* The copy leaves right behind the original, taking its own rate slot. */
        out.duplicate_departure_ns = out.departure_ns + tx;
        if (!out.reordered)
            model->last_departure_ns = out.duplicate_departure_ns;
        model->stats.duplicated++;
    }
    model->stats.passed++;
    return out;
}

/* ---- departure heap: min on (departure, arrival order) ---- */

static int heap_before(const held_packet_t *a, const held_packet_t *b)
{
    if (a->departure_ns != b->departure_ns)
        return a->departure_ns < b->departure_ns;
    return a->order < b->order;
}

int heap_push(departure_heap_t *heap, const held_packet_t *item)
{
    if (heap->count == heap->capacity) {
        size_t capacity = heap->capacity ? heap->capacity * 2 : 1024;
        held_packet_t *items = realloc(heap->items, capacity * sizeof(*items));
        if (!items)
            return -1;
        heap->items = items;
        heap->capacity = capacity;
    }
    size_t i = heap->count++;
    heap->items[i] = *item;
    heap->items[i].order = heap->next_order++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_before(&heap->items[i], &heap->items[parent]))
            break;
        held_packet_t swap = heap->items[i];
        heap->items[i] = heap->items[parent];
        heap->items[parent] = swap;
        i = parent;
    }
    return 0;
}

int heap_due(const departure_heap_t *heap, int64_t now_ns)
{
    return heap->count > 0 && heap->items[0].departure_ns <= now_ns;
}

held_packet_t heap_pop(departure_heap_t *heap)
{
    held_packet_t top = heap->items[0];
    heap->items[0] = heap->items[--heap->count];
    size_t i = 0;
    for (;;) {
        size_t left = 2 * i + 1, right = left + 1, least = i;
        if (left < heap->count && heap_before(&heap->items[left], &heap->items[least]))
            least = left;
        if (right < heap->count && heap_before(&heap->items[right], &heap->items[least]))
            least = right;
        if (least == i)
            break;
        held_packet_t swap = heap->items[i];
        heap->items[i] = heap->items[least];
        heap->items[least] = swap;
        i = least;
    }
    return top;
}

void heap_free(departure_heap_t *heap)
{
    for (size_t i = 0; i < heap->count; i++)
        free(heap->items[i].copy);
    free(heap->items);
    memset(heap, 0, sizeof(*heap));
}

/* The impairment model: configuration, PRNG streams, jitter distributions,
 * loss models and the departure-time heap. No I/O here, so the daemon and
 * --simulate share exactly the same decisions. */
#ifndef IMPAIRD_MODEL_H
#define IMPAIRD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define NS_PER_US 1000LL
#define NS_PER_S 1000000000LL

typedef enum { DIST_UNIFORM, DIST_NORMAL, DIST_PARETO, DIST_PARETONORMAL } jitter_dist_t;
typedef enum { LOSS_NONE, LOSS_BERNOULLI, LOSS_GILBERT_ELLIOTT } loss_model_t;

typedef struct {
    uint32_t queue;
    int64_t delay_ns;
    int64_t jitter_ns;
    jitter_dist_t jitter_dist;
    int keep_order;
    loss_model_t loss_model;
    double loss_p;       /* bernoulli: P(loss); gilbert-elliott: P(good -> bad) */
    double ge_r;         /* P(bad -> good) */
    double ge_loss_good; /* P(loss | good) */
    double ge_loss_bad;  /* P(loss | bad) */
    uint64_t rate_bps;   /* 0 = unlimited */
    uint32_t limit_packets;
    double duplicate_p;
    double reorder_p;
    uint64_t seed;
} impair_config_t;

/* xoshiro256** state: one per decision stream. */
typedef struct { uint64_t s[4]; } rng_t;

enum { RNG_LOSS, RNG_STATE, RNG_JITTER, RNG_DUPLICATE, RNG_REORDER, RNG_STREAMS };

typedef struct {
    uint64_t received, passed, dropped_loss, dropped_limit, duplicated, reordered;
} impair_stats_t;

typedef enum { HELD_ORIGINAL, HELD_DUPLICATE } held_kind_t;

/* One packet waiting for its departure time. */
typedef struct {
    int64_t departure_ns;
    uint64_t order;  /* ties leave in arrival order */
    uint32_t packet_id;
    uint32_t length;
    held_kind_t kind;
    unsigned char *copy;  /* payload of a duplicate, else NULL */
} held_packet_t;

typedef struct {
    held_packet_t *items;
    size_t count, capacity;
    uint64_t next_order;
} departure_heap_t;

typedef enum { FATE_PASS, FATE_DROP_LOSS, FATE_DROP_LIMIT } fate_t;

typedef struct {
    fate_t fate;
    int64_t departure_ns;
    int duplicate;
    int64_t duplicate_departure_ns;
    int reordered;
} decision_t;

typedef struct {
    impair_config_t cfg;
    rng_t rng[RNG_STREAMS];
    int ge_bad;
    int64_t last_departure_ns;
    int have_last;
    impair_stats_t stats;
} impair_model_t;

void model_init(impair_model_t *model, const impair_config_t *cfg);
/* New parameters from now on: streams re-seeded, Gilbert-Elliott back to good. */
void model_reconfigure(impair_model_t *model, const impair_config_t *cfg);
/* Decide one arriving packet's fate. `held` is how many packets wait now. */
decision_t model_decide(impair_model_t *model, int64_t arrival_ns, uint32_t length, size_t held);

double rng_unit(rng_t *rng);
double jitter_quantile(jitter_dist_t dist, double u);

int heap_push(departure_heap_t *heap, const held_packet_t *item);
int heap_due(const departure_heap_t *heap, int64_t now_ns);
held_packet_t heap_pop(departure_heap_t *heap);
void heap_free(departure_heap_t *heap);

#endif

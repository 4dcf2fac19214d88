/* Parse and validate the config file; every error names file, line and key. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 512

typedef struct {
    const char *path;
    int line;
    const char *key;
    char *err;
    size_t errlen;
} where_t;

static int fail(const where_t *at, const char *fmt, ...)
{
    char message[256];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    char key[48];  /* as written, but printable and short: it may be garbage */
    size_t n = 0;
    for (const char *c = at->key; *c && n < sizeof(key) - 4; c++, n++)
        key[n] = (*c >= 0x20 && *c < 0x7f) ? *c : '?';
    strcpy(key + n, at->key[n] ? "..." : "");
    if (at->line > 0)
        snprintf(at->err, at->errlen, "%s:%d: %s: %s", at->path, at->line, key, message);
    else
        snprintf(at->err, at->errlen, "%s: %s: %s", at->path, key, message);
    return -1;
}

static int parse_uint(const where_t *at, const char *text, uint64_t max, uint64_t *out)
{
    char *end;
    if (*text < '0' || *text > '9')
        return fail(at, "expected a whole number >= 0, got '%s'", text);
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (*end != '\0')
        return fail(at, "expected a whole number, got '%s'", text);
    if (errno == ERANGE || value > max)
        return fail(at, "%s is too large (at most %llu)", text, (unsigned long long)max);
    *out = value;
    return 0;
}

static int parse_probability(const where_t *at, const char *text, double *out)
{
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(value))
        return fail(at, "expected a number between 0 and 1, got '%s'", text);
    if (value < 0.0 || value > 1.0)
        return fail(at, "a probability must be between 0 and 1, got %s", text);
    *out = value;
    return 0;
}

static int parse_us(const where_t *at, const char *text, int64_t *out_ns)
{
    uint64_t us;
    if (parse_uint(at, text, 3600ULL * 1000 * 1000, &us) < 0)  /* at most an hour */
        return -1;
    *out_ns = (int64_t)us * NS_PER_US;
    return 0;
}

static int parse_choice(const where_t *at, const char *text, const char *const names[],
                        int count, int *out)
{
    char expected[128] = "";
    for (int i = 0; i < count; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return 0;
        }
        strncat(expected, i ? " | " : "", sizeof(expected) - strlen(expected) - 1);
        strncat(expected, names[i], sizeof(expected) - strlen(expected) - 1);
    }
    return fail(at, "expected %s, got '%s'", expected, text);
}

static const char *const DIST_NAMES[] = {"uniform", "normal", "pareto", "paretonormal"};
static const char *const LOSS_NAMES[] = {"none", "bernoulli", "gilbert-elliott"};

/* Keys in the order of the README; the index is the bit in `seen`. */
static const char *const KEYS[] = {
    "queue", "delay_us", "jitter_us", "jitter_dist", "keep_order", "loss_model", "loss_p",
    "ge_r", "ge_loss_good", "ge_loss_bad", "rate_bps", "limit_packets", "duplicate_p",
    "reorder_p", "seed",
};
#define KEY_COUNT ((int)(sizeof(KEYS) / sizeof(KEYS[0])))

static int apply_key(const where_t *at, int key, const char *value, impair_config_t *cfg)
{
    uint64_t number;
    int choice;
    switch (key) {
    case 0:
        if (parse_uint(at, value, 65535, &number) < 0)
            return -1;
        cfg->queue = (uint32_t)number;
        return 0;
    case 1: return parse_us(at, value, &cfg->delay_ns);
    case 2: return parse_us(at, value, &cfg->jitter_ns);
    case 3:
        if (parse_choice(at, value, DIST_NAMES, 4, &choice) < 0)
            return -1;
        cfg->jitter_dist = (jitter_dist_t)choice;
        return 0;
    case 4:
        if (parse_uint(at, value, 1, &number) < 0)
            return fail(at, "expected 0 or 1, got '%s'", value);
        cfg->keep_order = (int)number;
        return 0;
    case 5:
        if (parse_choice(at, value, LOSS_NAMES, 3, &choice) < 0)
            return -1;
        cfg->loss_model = (loss_model_t)choice;
        return 0;
    case 6: return parse_probability(at, value, &cfg->loss_p);
    case 7: return parse_probability(at, value, &cfg->ge_r);
    case 8: return parse_probability(at, value, &cfg->ge_loss_good);
    case 9: return parse_probability(at, value, &cfg->ge_loss_bad);
    case 10: return parse_uint(at, value, 1000ULL * 1000 * 1000 * 1000, &cfg->rate_bps);
    case 11:
        if (parse_uint(at, value, CONFIG_MAX_LIMIT, &number) < 0)
            return -1;
        if (number == 0)
            return fail(at, "must be at least 1");
        cfg->limit_packets = (uint32_t)number;
        return 0;
    case 12: return parse_probability(at, value, &cfg->duplicate_p);
    case 13: return parse_probability(at, value, &cfg->reorder_p);
    case 14: return parse_uint(at, value, UINT64_MAX, &cfg->seed);
    }
    return -1;
}

static char *trim(char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    size_t n = strlen(text);
    while (n > 0 && strchr(" \t\r\n", text[n - 1]))
        text[--n] = '\0';
    return text;
}

static void config_defaults(impair_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->delay_ns = 20000 * NS_PER_US;
    cfg->jitter_dist = DIST_UNIFORM;
    cfg->keep_order = 1;
    cfg->loss_model = LOSS_NONE;
    cfg->ge_r = 1.0;
    cfg->ge_loss_bad = 1.0;
    cfg->limit_packets = 10000;
    cfg->seed = 1;
}

static int parse_line(where_t *at, char *raw, unsigned *seen, impair_config_t *cfg)
{
    char *hash = strchr(raw, '#');
    if (hash)
        *hash = '\0';
    char *line = trim(raw);
    if (*line == '\0')
        return 0;
    char *eq = strchr(line, '=');
    at->key = line;
    if (!eq)
        return fail(at, "expected key=value");
    *eq = '\0';
    char *key = trim(line), *value = trim(eq + 1);
    at->key = key;
    for (int i = 0; i < KEY_COUNT; i++) {
        if (strcmp(key, KEYS[i]) != 0)
            continue;
        if (*seen & (1u << i))
            return fail(at, "set twice");
        *seen |= 1u << i;
        if (*value == '\0')
            return fail(at, "empty value");
        return apply_key(at, i, value, cfg);
    }
    return fail(at, "unknown key (known: queue, delay_us, jitter_us, jitter_dist, keep_order, "
                    "loss_model, loss_p, ge_r, ge_loss_good, ge_loss_bad, rate_bps, "
                    "limit_packets, duplicate_p, reorder_p, seed)");
}

int config_load(const char *path, impair_config_t *out, char *err, size_t errlen)
{
    where_t at = {path, 0, "", err, errlen};
    FILE *file = fopen(path, "r");
    if (!file) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    impair_config_t cfg;
    config_defaults(&cfg);
    unsigned seen = 0;
    char raw[MAX_LINE];
    int status = 0;
    while (status == 0 && fgets(raw, sizeof(raw), file)) {
        at.line++;
        if (strlen(raw) == sizeof(raw) - 1 && raw[sizeof(raw) - 2] != '\n') {
            at.key = "line";
            status = fail(&at, "longer than %d characters", MAX_LINE - 2);
            break;
        }
        status = parse_line(&at, raw, &seen, &cfg);
    }
    fclose(file);
    if (status < 0)
        return -1;
    at.line = 0;
    at.key = "queue";
    if (!(seen & 1u))
        return fail(&at, "required, not set");
    *out = cfg;
    return 0;
}

/* The daemon's config file: `key=value` lines, `#` comments. */
#ifndef IMPAIRD_CONFIG_H
#define IMPAIRD_CONFIG_H

#include <stddef.h>

#include "model.h"

#define CONFIG_MAX_LIMIT 1000000u

/* 0 on success; else -1 with "FILE:LINE: key: message" (or "FILE: key: message"
 * for a missing key) in err. */
int config_load(const char *path, impair_config_t *out, char *err, size_t errlen);

#endif

/*
 * config_shaping - the shaping file (shaping.file): sites and response
 * rules, a libconfig file of its own, loaded with the config (so SIGHUP
 * re-reads it, and a bad one fails the load like a bad key):
 *
 *   sites = (
 *     { name = "gmail"; mx = [ ".google.com", ".googlemail.com" ]; }
 *   );
 *   responses = (
 *     { code = "421"; enhanced = "4.7.28"; text = "rate|unsolicited";
 *       action = "suspend"; scope = "site"; duration = "10m"; },
 *     { code = "5xx"; enhanced = "5.7.1"; text = "blocked"; action = "suppress"; }
 *   );
 *
 * docs/SHAPING.md describes every key. Each site gets its process-wide
 * state slot (shaping_state.h) as it loads.
 */
#ifndef RINGMAIL_CONFIG_SHAPING_H
#define RINGMAIL_CONFIG_SHAPING_H

#include <stddef.h>

#include "shaping.h"

/* config_shaping_load - path into *out (new rules). 0, or -EINVAL with
 * "PATH line N: ..." in err. */
int config_shaping_load(const char *path, struct shaping_rules **out, char *err, size_t errlen);

#endif

#include "version.h"
const char *ringmail_version(void) { return RINGMAIL_VERSION; }

#include "log.h"
int main(void) { log_info("start", "version=%s", RINGMAIL_VERSION); return 0; }

#ifndef RINGMAIL_VERSION_H
#define RINGMAIL_VERSION_H
const char *ringmail_version(void);
#endif

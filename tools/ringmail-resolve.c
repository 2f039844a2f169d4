/* ringmail-resolve - print the route the relay would take for each domain. */
#include "dns.h"

int main(int argc, char **argv)
{
	return dns_resolve_main(argc, argv);
}

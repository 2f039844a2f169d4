/* test_ratelimit_shared - the lock-free AUTH failure budget. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "ratelimit_shared.h"

#define SLOTS 1024
static _Atomic int64_t slots[SLOTS];
static struct ratelimit_shared rl;

static struct sockaddr_in v4(const char *ip)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static void setup(void)
{
	memset(slots, 0, sizeof(slots));
	ratelimit_shared_init(&rl, slots, SLOTS, 42, 64);
}

TestSuite(ratelimit_shared, .init = setup);

Test(ratelimit_shared, burst_then_regain_then_forgive)
{
	struct sockaddr_in a = v4("192.0.2.7"), other = v4("198.51.100.1");
	int64_t t = 1000000;

	for (int i = 0; i < 5; i++)
		cr_expect(ratelimit_shared_take(&rl, (struct sockaddr *)&a, 5, 60000, t), "try %d", i);
	cr_expect_not(ratelimit_shared_take(&rl, (struct sockaddr *)&a, 5, 60000, t));
	cr_expect(ratelimit_shared_take(&rl, (struct sockaddr *)&other, 5, 60000, t));
	/* One try regained every window / burst = 12 s. */
	cr_expect_not(ratelimit_shared_take(&rl, (struct sockaddr *)&a, 5, 60000, t + 11999));
	cr_expect(ratelimit_shared_take(&rl, (struct sockaddr *)&a, 5, 60000, t + 12000));
	cr_expect_not(ratelimit_shared_take(&rl, (struct sockaddr *)&a, 5, 60000, t + 12000));
	ratelimit_shared_forgive(&rl, (struct sockaddr *)&a);
	cr_expect(ratelimit_shared_take(&rl, (struct sockaddr *)&a, 5, 60000, t + 12000));
}

Test(ratelimit_shared, ipv6_prefix_and_mapped_ipv4)
{
	struct sockaddr_in6 x = { .sin6_family = AF_INET6 }, y = x, m = x;
	struct sockaddr_in a = v4("192.0.2.9");
	inet_pton(AF_INET6, "2001:db8:1:2::1", &x.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", &y.sin6_addr);
	inet_pton(AF_INET6, "::ffff:192.0.2.9", &m.sin6_addr);

	cr_expect(ratelimit_shared_take(&rl, (struct sockaddr *)&x, 1, 1000, 5000));
	cr_expect_not(ratelimit_shared_take(&rl, (struct sockaddr *)&y, 1, 1000, 5000), "same /64");
	cr_expect(ratelimit_shared_take(&rl, (struct sockaddr *)&a, 1, 1000, 5000));
	cr_expect_not(ratelimit_shared_take(&rl, (struct sockaddr *)&m, 1, 1000, 5000), "mapped = v4");
	struct sockaddr u = { .sa_family = AF_UNIX };
	for (int i = 0; i < 10; i++)
		cr_expect(ratelimit_shared_take(&rl, &u, 1, 1000, 5000));
}

/* Many threads hammering one address at the same instant: exactly burst
 * tries get through, never more. */
static atomic_int granted;
static void *hammer(void *arg)
{
	struct sockaddr_in a = v4("203.0.113.5");
	(void)arg;
	for (int i = 0; i < 10000; i++)
		if (ratelimit_shared_take(&rl, (struct sockaddr *)&a, 5, 300000, 777777))
			atomic_fetch_add(&granted, 1);
	return NULL;
}

Test(ratelimit_shared, limit_holds_across_threads)
{
	pthread_t t[8];

	atomic_store(&granted, 0);
	for (int i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, hammer, NULL);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	cr_expect_eq(atomic_load(&granted), 5, "granted %d tries, want 5", atomic_load(&granted));
}

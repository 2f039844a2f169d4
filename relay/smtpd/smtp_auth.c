/*
 * smtp_auth - AUTH password checks on a helper thread; see smtp_auth.h.
 *
 * One helper thread for the process: AUTH is rare next to mail (clients
 * authenticate once per connection), and one thread bounds the CPU a
 * flood of logins can take from the workers (who also rate-limit
 * failures per address before asking).
 */
#include "smtp_auth.h"

#include "users.h"
#include "xalloc.h"

static struct helper_pool auth_pool = HELPER_POOL_INIT("auth", 1);

static void auth_run(struct helper_job *job)
{
	struct smtp_auth_request *r = container_of(job, struct smtp_auth_request, job);

	r->ok = users_verify(r->db, r->user, r->password);
}

static void auth_done(struct helper_job *job)
{
	struct smtp_auth_request *r = container_of(job, struct smtp_auth_request, job);

	r->done(r);
}

void smtp_auth_submit(struct helper_worker *hw, struct smtp_auth_request *r)
{
	r->job.run = auth_run;
	r->job.done = auth_done;
	helper_submit(&auth_pool, hw, &r->job);
}

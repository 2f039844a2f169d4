/*
 * users - load, check and edit the passwd-file; see users.h.
 *
 * The db is a sorted array of (name, bare crypt hash) searched with
 * bsearch. Verification runs libxcrypt's crypt_rn with a work area of its
 * own per call (32 KiB on the heap, wiped after use), which is what makes
 * it safe on any thread.
 */
#include "users.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "errmsg.h"
#include "log.h"
#include "xalloc.h"

#define USERS_FILE_MAX (64u << 20)  /* a bigger passwd-file is a mistake */

_Static_assert(USERS_PASSWORD_MAX < CRYPT_MAX_PASSPHRASE_SIZE, "libxcrypt refuses longer");

/* Used when the file has no users: a yescrypt setting at libxcrypt's
 * default cost, so an empty db still costs one hash per attempt. */
static const char dummy_setting[] = "$y$j9T$ajy3vn47AtuNL6Gcs1p5D1";

struct users_entry {
	char *name;
	char *hash;                 /* bare crypt string, no {SCHEME} */
	unsigned line;
};

struct users_db {
	struct users_entry *entries;    /* sorted by name */
	size_t count;
	const char *dummy;              /* hash of the first line's user, or dummy_setting */
};

/* Methods we accept, by hash prefix. MD5-crypt and DES are too weak. */
static const char *const method_prefixes[] = {
	"$y$", "$gy$", "$7$", "$6$", "$5$", "$2b$", "$2a$", "$2y$",
};

/* Dovecot's scheme names that mean "a crypt(3) string", and the hash
 * prefix each requires ("" for {CRYPT}: any accepted method). */
static const struct {
	const char *scheme;
	const char *requires;
} scheme_prefixes[] = {
	{ "CRYPT", "" },
	{ "SHA512-CRYPT", "$6$" },
	{ "SHA256-CRYPT", "$5$" },
	{ "BLF-CRYPT", "$2" },
};

/* users_hash_password's scheme names and the crypt_gensalt prefix. */
static const struct {
	const char *name;
	const char *prefix;
} gensalt_prefixes[] = {
	{ "yescrypt", "$y$" },
	{ "sha512-crypt", "$6$" },
	{ "sha256-crypt", "$5$" },
	{ "blf-crypt", "$2b$" },
	{ "bcrypt", "$2b$" },
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* name_valid - 1..USERS_NAME_MAX bytes, no ':', space, control or DEL.
 * Bytes >= 0x80 are allowed: names may be UTF-8. */
static bool name_valid(const char *name, size_t len)
{
	if (len == 0 || len > USERS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= ' ' || c == ':' || c == 0x7f)
			return false;
	}
	return true;
}

/* hash_check - is s (len bytes) a crypt string of an accepted method?
 * A structural check (prefix, alphabet, salt and hash present) plus
 * libxcrypt's own crypt_checksalt; the real test is crypt_rn at verify. */
static const char *hash_check(const char *s, size_t len)
{
	size_t prefix_len = 0;

	if (len == 0)
		return "empty password field";
	if (len >= USERS_HASH_MAX)
		return "hash too long";
	for (size_t i = 0; i < N(method_prefixes); i++) {
		size_t n = strlen(method_prefixes[i]);
		if (len > n && memcmp(s, method_prefixes[i], n) == 0)
			prefix_len = n;
	}
	if (prefix_len == 0)
		return "not a supported crypt(3) hash ($y$, $6$, $5$, $2b$ ...)";
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || c == '.' || c == '/' || c == '$' ||
			c == '=' || c == ',';
		if (!ok)
			return "bad character in hash";
	}
	const char *last = memrchr(s, '$', len);
	if (last < s + prefix_len || last == s + len - 1)
		return "hash has no salt or no digest";
	char tmp[USERS_HASH_MAX];
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	if (crypt_checksalt(tmp) == CRYPT_SALT_INVALID)
		return "hash rejected by libxcrypt";
	return NULL;
}

/* password_field_check - split "{SCHEME}hash" into the bare hash. Returns
 * NULL and sets *hash and *hash_len, or the reason it is not acceptable. */
static const char *password_field_check(const char *field, size_t len, const char **hash,
					size_t *hash_len)
{
	const char *requires = "";

	if (len > 0 && field[0] == '{') {
		const char *close = memchr(field, '}', len);
		if (close == NULL)
			return "unterminated {SCHEME}";
		size_t n = (size_t)(close - field - 1);
		bool known = false;
		for (size_t i = 0; i < N(scheme_prefixes); i++) {
			if (strlen(scheme_prefixes[i].scheme) == n &&
			    strncasecmp(field + 1, scheme_prefixes[i].scheme, n) == 0) {
				requires = scheme_prefixes[i].requires;
				known = true;
			}
		}
		if (!known)
			return "unsupported {SCHEME} (want CRYPT, SHA512-CRYPT, SHA256-CRYPT or BLF-CRYPT)";
		len -= (size_t)(close + 1 - field);
		field = close + 1;
	}
	const char *reason = hash_check(field, len);
	if (reason != NULL)
		return reason;
	if (strncmp(field, requires, strlen(requires)) != 0)
		return "{SCHEME} does not match the hash method";
	*hash = field;
	*hash_len = len;
	return NULL;
}

/* line_is_entry - false for blank lines and comments (first non-blank '#'). */
static bool line_is_entry(const char *line, size_t len)
{
	size_t i = 0;

	while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
		i++;
	return i < len && line[i] != '#';
}

/* parse_entry - one non-comment line (no line terminator) into name and
 * bare hash; returns NULL or the reason. */
static const char *parse_entry(const char *line, size_t len, struct users_entry *e)
{
	const char *colon = memchr(line, ':', len);

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	if (colon == NULL || colon >= line + len)
		return "no ':' after the user name";
	if (!name_valid(line, (size_t)(colon - line)))
		return "bad user name (1-255 bytes, no spaces, control bytes or ':')";
	const char *field = colon + 1;
	const char *end = memchr(field, ':', (size_t)(line + len - field));
	size_t field_len = (size_t)((end ? end : line + len) - field);
	const char *hash;
	size_t hash_len;
	const char *reason = password_field_check(field, field_len, &hash, &hash_len);
	if (reason != NULL)
		return reason;
	e->name = xstrndup(line, (size_t)(colon - line));
	e->hash = xstrndup(hash, hash_len);
	return NULL;
}

/* entry_compare - order entries by name, for qsort and bsearch. */
static int entry_compare(const void *a, const void *b)
{
	return strcmp(((const struct users_entry *)a)->name, ((const struct users_entry *)b)->name);
}

/* sort_and_check_duplicates - sort db's entries; a name twice is an error
 * (which line would win is not obvious to whoever edits the file). */
static int sort_and_check_duplicates(struct users_db *db, const char *name, char *err, size_t errlen)
{
	qsort(db->entries, db->count, sizeof(db->entries[0]), entry_compare);
	for (size_t i = 1; i < db->count; i++) {
		const struct users_entry *a = &db->entries[i - 1], *b = &db->entries[i];
		if (strcmp(a->name, b->name) == 0) {
			unsigned first = a->line < b->line ? a->line : b->line;
			unsigned second = a->line < b->line ? b->line : a->line;
			errmsg_set(err, errlen, -EINVAL, "%s:%u: duplicate user (first on line %u)", name,
				  second, first);
			return -EINVAL;
		}
	}
	return 0;
}

int users_parse(const char *name, const char *text, size_t len, struct users_db **out,
		char *err, size_t errlen)
{
	struct users_db *db = xcalloc(1, sizeof(*db));
	size_t capacity = 16, pos = 0;
	unsigned line_no = 0;

	*out = NULL;
	db->entries = xcalloc(capacity, sizeof(db->entries[0]));
	db->dummy = dummy_setting;
	while (pos < len) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t line_len = nl ? (size_t)(nl - line) : len - pos;
		pos += line_len + (nl != NULL);
		line_no++;
		if (memchr(line, '\0', line_len) != NULL) {
			errmsg_set(err, errlen, -EINVAL, "%s:%u: NUL byte", name, line_no);
			users_free(db);
			return -EINVAL;
		}
		if (!line_is_entry(line, line_len))
			continue;
		if (db->count == capacity) {
			capacity *= 2;
			db->entries = xreallocarray(db->entries, capacity, sizeof(db->entries[0]));
		}
		struct users_entry *e = &db->entries[db->count];
		const char *reason = parse_entry(line, line_len, e);
		if (reason != NULL) {
			errmsg_set(err, errlen, -EINVAL, "%s:%u: %s", name, line_no, reason);
			users_free(db);
			return -EINVAL;
		}
		e->line = line_no;
		if (db->count++ == 0)
			db->dummy = e->hash;
	}
	int rc = sort_and_check_duplicates(db, name, err, errlen);
	if (rc < 0) {
		users_free(db);
		return rc;
	}
	*out = db;
	return 0;
}

/* read_file - the whole file into a new buffer (*text, caller frees).
 * Returns 0, or -errno / -EFBIG over USERS_FILE_MAX with *text NULL. */
static int read_file(int fd, char **text, size_t *len)
{
	struct stat st;
	size_t cap, used = 0;

	*text = NULL;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size > (off_t)USERS_FILE_MAX)
		return -EFBIG;
	cap = (size_t)st.st_size + 1;
	*text = xcalloc(cap, 1);
	for (;;) {
		if (used == cap) {
			if (cap > USERS_FILE_MAX) {
				free(*text);
				*text = NULL;
				return -EFBIG;
			}
			cap *= 2;
			*text = xrealloc(*text, cap);
		}
		ssize_t n = read(fd, *text + used, cap - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int rc = -errno;
			free(*text);
			*text = NULL;
			return rc;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	*len = used;
	return 0;
}

int users_load(const char *path, struct users_db **out, char *err, size_t errlen)
{
	char *text;
	size_t len;
	int rc;

	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		errmsg_set(err, errlen, -EINVAL, "%s: %s", path, strerror(-rc));
		return rc;
	}
	rc = read_file(fd, &text, &len);
	close(fd);
	if (rc < 0) {
		errmsg_set(err, errlen, -EINVAL, "%s: %s", path, strerror(-rc));
		return rc;
	}
	rc = users_parse(path, text, len, out, err, errlen);
	free(text);
	return rc;
}

struct users_db *users_free(struct users_db *db)
{
	if (db == NULL)
		return NULL;
	for (size_t i = 0; i < db->count; i++) {
		free(db->entries[i].name);
		free(db->entries[i].hash);
	}
	free(db->entries);
	free(db);
	return NULL;
}

size_t users_count(const struct users_db *db)
{
	return db ? db->count : 0;
}

bool users_name_valid(const char *name)
{
	return name_valid(name, strlen(name));
}

/* users_find - user's entry, or NULL; no secret is involved yet. */
static const struct users_entry *users_find(const struct users_db *db, const char *user)
{
	struct users_entry key = { .name = (char *)user };

	if (db == NULL || db->count == 0)
		return NULL;
	return bsearch(&key, db->entries, db->count, sizeof(db->entries[0]), entry_compare);
}

bool users_exists(const struct users_db *db, const char *user)
{
	return users_find(db, user) != NULL;
}

/* equal_constant_time - a == b, in time that depends on b's length only. */
static bool equal_constant_time(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = la != lb;

	for (size_t i = 0; i < lb; i++)
		diff |= (unsigned char)(a[i < la ? i : 0] ^ b[i]);
	return diff == 0;
}

bool users_verify(const struct users_db *db, const char *user, const char *password)
{
	const struct users_entry *e = users_find(db, user);
	const char *setting = e ? e->hash : db ? db->dummy : dummy_setting;
	bool too_long = strnlen(password, USERS_PASSWORD_MAX + 1) > USERS_PASSWORD_MAX;
	struct crypt_data *work = xcalloc(1, sizeof(*work));

	/* Hash even when the answer is already no: the time must not tell. */
	const char *hashed = crypt_rn(too_long ? "" : password, setting, work, (int)sizeof(*work));
	bool match = hashed != NULL && equal_constant_time(hashed, setting);
	explicit_bzero(work, sizeof(*work));
	free(work);
	return match && e != NULL && !too_long;
}

int users_hash_password(const char *password, const char *scheme, char *out, size_t outlen)
{
	const char *prefix = NULL;
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	int rc = 0;

	for (size_t i = 0; i < N(gensalt_prefixes); i++)
		if (scheme == NULL ? i == 0 : strcasecmp(scheme, gensalt_prefixes[i].name) == 0)
			prefix = gensalt_prefixes[i].prefix;
	if (prefix == NULL || password[0] == '\0' ||
	    strnlen(password, USERS_PASSWORD_MAX + 1) > USERS_PASSWORD_MAX)
		return -EINVAL;
	/* count 0 and no random bytes: libxcrypt's default cost, and a salt
	 * from the kernel's entropy source. */
	if (crypt_gensalt_rn(prefix, 0, NULL, 0, setting, (int)sizeof(setting)) == NULL)
		return errno ? -errno : -EINVAL;
	struct crypt_data *work = xcalloc(1, sizeof(*work));
	const char *hashed = crypt_rn(password, setting, work, (int)sizeof(*work));
	if (hashed == NULL)
		rc = errno ? -errno : -EINVAL;
	else if (strlen(hashed) >= outlen)
		rc = -ENOSPC;
	else
		memcpy(out, hashed, strlen(hashed) + 1);
	explicit_bzero(work, sizeof(*work));
	free(work);
	return rc;
}

/*
 * The editors. They work on lines as bytes and touch only the lines of the
 * user they edit, so comments, spacing, line endings and other users' extra
 * fields survive. They do not insist that the rest of the file is valid:
 * an operator must be able to fix one user in a file with another bad line.
 */

/* line_user_is - is this line an entry of user? */
static bool line_user_is(const char *line, size_t len, const char *user)
{
	size_t n = strlen(user);

	return line_is_entry(line, len) && len > n && line[n] == ':' && memcmp(line, user, n) == 0;
}

/* edit_lines - copy text to out with user's line replaced by user:hash
 * (keeping what follows the password field) or removed (hash NULL).
 * Sets *found. A new user is appended by the caller. 0, or -EFBIG when
 * the result would exceed out's cap (USERS_FILE_MAX: no reader takes it). */
static int edit_lines(const char *text, size_t len, const char *user, const char *hash,
		      struct buf *out, bool *found)
{
	size_t pos = 0;
	int rc = 0;

	*found = false;
	while (rc == 0 && pos < len) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t line_len = nl ? (size_t)(nl + 1 - line) : len - pos;
		pos += line_len;
		if (!line_user_is(line, line_len, user)) {
			rc = buf_append(out, line, line_len);
			continue;
		}
		if (hash != NULL && !*found) {
			const char *field = line + strlen(user) + 1;
			const char *rest = field;
			while (rest < line + line_len && *rest != ':' && *rest != '\r' && *rest != '\n')
				rest++;
			rc = buf_append_printf(out, "%s:%s", user, hash);
			if (rc == 0)
				rc = buf_append(out, rest, (size_t)(line + line_len - rest));
		}
		*found = true;
	}
	return rc < 0 ? -EFBIG : 0;
}

/* write_atomically - data into a temporary file next to path, fsync, give
 * it old's mode and owner (or 0640 when old is NULL), rename over path,
 * fsync the directory. */
static int write_atomically(int dirfd, const char *path, const struct stat *old,
			    const char *data, size_t len)
{
	char tmp[4096];
	const char *slash = strrchr(path, '/');
	int n = slash ? snprintf(tmp, sizeof(tmp), "%.*s/.%s.XXXXXX", (int)(slash - path), path, slash + 1)
		      : snprintf(tmp, sizeof(tmp), ".%s.XXXXXX", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = 0;
	for (size_t done = 0; done < len && rc == 0;) {
		ssize_t w = write(fd, data + done, len - done);
		if (w < 0 && errno != EINTR)
			rc = -errno;
		else if (w > 0)
			done += (size_t)w;
	}
	if (rc == 0 && fchmod(fd, old ? old->st_mode & 07777 : 0640) < 0)
		rc = -errno;
	if (rc == 0 && old && (old->st_uid != geteuid() || old->st_gid != getegid()) &&
	    fchown(fd, old->st_uid, old->st_gid) < 0)
		rc = -errno;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	return fsync(dirfd) < 0 ? -errno : 0;
}

/* open_locked_directory - the directory of path, opened and flock'ed so
 * that two editors do not lose each other's change. The lock goes with
 * the descriptor. */
static int open_locked_directory(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if ((size_t)(slash - path) < sizeof(dir))
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	else
		return -ENAMETOOLONG;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			int rc = -errno;
			close(fd);
			return rc;
		}
	}
	return fd;
}

/* read_existing - the current file, or empty with *exists false. */
static int read_existing(const char *path, char **text, size_t *len, struct stat *st, bool *exists)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*text = NULL;
	*len = 0;
	*exists = fd >= 0;
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	int rc = fstat(fd, st) < 0 ? -errno : read_file(fd, text, len);
	close(fd);
	return rc;
}

/* users_file_edit - set (hash non-NULL) or delete user under the lock. */
static int users_file_edit(const char *path, const char *user, const char *hash,
			   enum users_set_mode mode)
{
	struct buf out;
	struct stat st;
	char *text;
	size_t len;
	bool exists, found = false;

	if (!name_valid(user, strlen(user)))
		return -EINVAL;
	/* Edit the file a symlink points at, not replace the link. */
	char *real = realpath(path, NULL);
	if (real != NULL)
		path = real;
	int dirfd = open_locked_directory(path);
	if (dirfd < 0) {
		free(real);
		return dirfd;
	}
	buf_init(&out, USERS_FILE_MAX);
	int rc = read_existing(path, &text, &len, &st, &exists);
	if (rc == 0)
		rc = edit_lines(text, len, user, hash, &out, &found);
	if (rc < 0)
		goto done;
	if (hash == NULL && !found)
		rc = -ENOENT;
	else if (hash != NULL && found && mode == USERS_SET_NEW)
		rc = -EEXIST;
	else if (hash != NULL && !found && mode == USERS_SET_EXISTING)
		rc = -ENOENT;
	if (rc < 0)
		goto done;
	if (hash != NULL && !found) {
		size_t n = buf_len(&out);
		bool open_line = n > 0 && buf_data(&out)[n - 1] != '\n';
		if (buf_append_printf(&out, "%s%s:%s\n", open_line ? "\n" : "", user, hash) < 0) {
			rc = -EFBIG;
			goto done;
		}
	}
	rc = write_atomically(dirfd, path, exists ? &st : NULL, buf_data(&out), buf_len(&out));
done:
	free(text);
	buf_free(&out);
	free(real);
	close(dirfd);
	return rc;
}

int users_file_set(const char *path, const char *user, const char *hash, enum users_set_mode mode)
{
	const char *bare;
	size_t bare_len;

	if (strchr(hash, ':') != NULL || strchr(hash, '\n') != NULL ||
	    password_field_check(hash, strlen(hash), &bare, &bare_len) != NULL)
		return -EINVAL;
	return users_file_edit(path, user, hash, mode);
}

int users_file_delete(const char *path, const char *user)
{
	return users_file_edit(path, user, NULL, USERS_SET_ANY);
}

/*
 * runc-oom-clamp: runc for CRI-O on hosts where root lacks CAP_SYS_RESOURCE.
 *
 * CRI-O gives every infra container oom_score_adj -998; without CAP_SYS_RESOURCE runc's nsexec
 * cannot lower the score and `runc create` fails, so CRI-O can run no pod that shares its PID
 * namespace there. containerd has `restrict_oom_score_adj` for this; CRI-O has no such setting.
 * This wrapper does what that setting does: on `create`, a negative process.oomScoreAdj in the
 * bundle's config.json becomes 0 (what the caller itself has here), then it execs runc with the
 * same arguments. Every other command goes straight to runc. Used by hack/bench --critest only.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RUNC "/usr/sbin/runc"
#define KEY "\"oomScoreAdj\":"

static void clamp(const char *bundle)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/config.json", bundle ? bundle : ".");
	int fd = open(path, O_RDWR);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size <= 0) {
		close(fd);
		return;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	ssize_t got = buf ? read(fd, buf, (size_t)st.st_size) : -1;
	if (got != st.st_size) {
		free(buf);
		close(fd);
		return;
	}
	buf[got] = '\0';
	char *at = strstr(buf, KEY);
	if (at) {
		char *num = at + strlen(KEY);
		while (*num == ' ')
			num++;
		if (*num == '-') {
			char *end = num + 1;
			while (*end >= '0' && *end <= '9')
				end++;
			/* "-998" becomes "0": shift the rest of the document left */
			*num = '0';
			memmove(num + 1, end, (size_t)(buf + got - end) + 1);
			size_t len = strlen(buf);
			if (pwrite(fd, buf, len, 0) == (ssize_t)len)
				(void)ftruncate(fd, (off_t)len);
		}
	}
	free(buf);
	close(fd);
}

int main(int argc, char **argv)
{
	const char *bundle = NULL;
	int create = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "create") == 0)
			create = 1;
		else if ((strcmp(argv[i], "--bundle") == 0 || strcmp(argv[i], "-b") == 0) && i + 1 < argc)
			bundle = argv[i + 1];
		else if (strncmp(argv[i], "--bundle=", 9) == 0)
			bundle = argv[i] + 9;
	}
	if (create)
		clamp(bundle);
	argv[0] = RUNC;
	execv(RUNC, argv);
	fprintf(stderr, "runc-oom-clamp: exec %s: %s\n", RUNC, strerror(errno));
	return 127;
}

/* fuzz_config: the JSON configuration loader (common/config.h) with the server's and the agent's
 * option tables, on a file whose content is the input (a memfd, read through /proc/self/fd). Any
 * content must give either a configuration or an error that says why; never a crash. The input
 * also drives config_set, the path of command-line overrides: when it holds a NUL, the text before
 * it is split at the first '=' into a key and a value set after loading, and the rest is the
 * file. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "agent_config.h"
#include "config.h"
#include "fuzz.h"
#include "server_config.h"
#include "spiffeid.h"

static int memfd_with(const uint8_t *data, size_t size, char *path, size_t pathlen)
{
	int fd = memfd_create("fuzz-config", MFD_CLOEXEC);
	if (fd < 0) {
		perror("memfd_create");
		abort();
	}
	size_t off = 0;
	while (off < size) {
		ssize_t w = write(fd, data + off, size - off);
		if (w <= 0) {
			perror("write");
			abort();
		}
		off += (size_t)w;
	}
	snprintf(path, pathlen, "/proc/self/fd/%d", fd);
	return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[1024];
	const uint8_t *nul = memchr(data, 0, size);
	char *override = NULL;
	const char *key = NULL, *value = "";

	if (nul) {
		/* "key=value" (a key alone sets the empty value, the edge of every type's parser). */
		override = fuzz_cstr(data, (size_t)(nul - data));
		char *eq = strchr(override, '=');
		if (eq) {
			*eq = '\0';
			value = eq + 1;
		}
		key = override;
		size = size - (size_t)(nul - data) - 1;
		data = nul + 1;
	}
	int fd = memfd_with(data, size, path, sizeof(path));

	/* The generic loader with the server's table, then each daemon's own entry point (which
	 * adds the rules between keys). */
	struct server_config sc;
	memset(&sc, 0, sizeof(sc));
	err[0] = '\0';
	if (config_load(path, server_config_options, server_config_n_options, &sc, err,
			sizeof(err)) < 0)
		FUZZ_CHECK(err[0] != '\0');
	if (key) {
		err[0] = '\0';
		if (config_set(server_config_options, server_config_n_options, &sc, key, value, err,
			       sizeof(err)) < 0)
			FUZZ_CHECK(err[0] != '\0');
	}
	config_free(server_config_options, server_config_n_options, &sc);

	memset(&sc, 0, sizeof(sc));
	err[0] = '\0';
	if (server_config_load(path, &sc, err, sizeof(err)) == 0) {
		FUZZ_CHECK(sc.trust_domain && trust_domain_validate(sc.trust_domain, NULL, 0) == 0);
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	server_config_free(&sc);

	struct agent_config ac;
	memset(&ac, 0, sizeof(ac));
	err[0] = '\0';
	if (agent_config_load(path, &ac, err, sizeof(err)) == 0) {
		FUZZ_CHECK(ac.trust_domain && ac.data_dir && ac.socket_path);
		FUZZ_CHECK(ac.data_dir[0] == '/' && ac.socket_path[0] == '/');
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	if (key) {
		err[0] = '\0';
		if (config_set(agent_config_options, agent_config_n_options, &ac, key, value, err,
			       sizeof(err)) < 0)
			FUZZ_CHECK(err[0] != '\0');
	}
	agent_config_free(&ac);

	close(fd);
	free(override);
	return 0;
}

/* fuzz_kubelet: the kubelet's pod list (agent/kubelet.h kubelet_pods_parse). Pod names, labels,
 * owner references and image names in it are chosen by whoever may create pods on the node, and
 * they become the k8s selectors of workloads. The input is the body of GET /pods.
 *
 * Every container ID and pod UID that the JSON (as jansson reads it) names is looked up in the
 * parsed table; what is found must be self-consistent. */
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "kubelet.h"

static void check_container(const struct kubelet_pods *t, const char *id)
{
	const struct kubelet_container *c = kubelet_pods_find_container(t, id);
	if (!c)
		return;
	FUZZ_CHECK(c->id && strcmp(c->id, id) == 0);
	FUZZ_CHECK(c->name && c->image && c->image_id);
	FUZZ_CHECK(c->pod != NULL);
	FUZZ_CHECK(c->pod->uid && c->pod->name && c->pod->ns && c->pod->service_account &&
		   c->pod->node_name);
	for (size_t i = 0; i < c->pod->n_labels; i++)
		FUZZ_CHECK(c->pod->labels[i].key && c->pod->labels[i].value);
	for (size_t i = 0; i < c->pod->n_owners; i++)
		FUZZ_CHECK(c->pod->owners[i].kind && c->pod->owners[i].name);
	if (c->pod->uid[0])
		FUZZ_CHECK(kubelet_pods_find_pod(t, c->pod->uid) != NULL);
}

/* Every string in the document is tried as a container ID (with and without its runtime
 * scheme) and as a pod UID: a cheap way to hit the entries that exist. */
static void walk(const struct kubelet_pods *t, json_t *v, int depth)
{
	if (depth > 64)
		return;
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		const char *scheme = strstr(s, "://");
		check_container(t, s);
		if (scheme)
			check_container(t, scheme + 3);
		const struct kubelet_pod *p = kubelet_pods_find_pod(t, s);
		if (p)
			FUZZ_CHECK(p->uid && strcmp(p->uid, s) == 0);
	} else if (json_is_object(v)) {
		const char *k;
		json_t *e;
		json_object_foreach(v, k, e)
			walk(t, e, depth + 1);
	} else if (json_is_array(v)) {
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e)
			walk(t, e, depth + 1);
	}
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
	struct kubelet_pods *t = NULL;
	char err[256] = "";

	if (kubelet_pods_parse((const char *)data, size, &t, err, sizeof(err)) < 0) {
		FUZZ_CHECK(err[0] != '\0');
		return 0;
	}
	FUZZ_CHECK(t != NULL);
	FUZZ_CHECK(kubelet_pods_n_containers(t) <= 1000000);
	json_t *root = json_loadb((const char *)data, size, 0, NULL);
	if (root)
		walk(t, root, 0);
	json_decref(root);
	struct kubelet_pods *r = kubelet_pods_ref(t);
	FUZZ_CHECK(r == t);
	kubelet_pods_unref(r);
	kubelet_pods_unref(t);
	return 0;
}

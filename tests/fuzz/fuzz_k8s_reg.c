/* fuzz_k8s_reg: automatic registration from pods (server/k8s_reg_rules.h): the rules of the
 * server's `k8s_registration` config key (k8s_reg_rules_parse), and pods as the Kubernetes API
 * server lists them (k8s_reg_pod_from_json, k8s_reg_rule_matches, k8s_reg_render), whose labels
 * and annotations whoever may create pods chooses.
 *
 * Input: the rules (a JSON array), a NUL byte, then a pod object or a list of them (JSON).
 * Invariants: accepted rules number at most K8S_REG_MAX_RULES and each has a SPIFFE ID
 * template; a rendered SPIFFE ID that parses is in the configured trust domain (a pod value can
 * never add a path segment, a port or another authority); rendered DNS names hold no '/'. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "k8s_reg_rules.h"
#include "spiffeid.h"

#define TD "example.org"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	return 0;
}

static void render_rule(const struct k8s_reg_rule *r, const struct k8s_reg_ctx *ctx,
			const struct k8s_reg_pod *p)
{
	char err[512] = "", *out = NULL;
	if (k8s_reg_render(r->spiffe_id, ctx, p, &out, err, sizeof(err)) == 0) {
		char td[TRUST_DOMAIN_MAX + 2];
		if (spiffeid_parse(out, td, NULL, NULL, 0) == 0)
			FUZZ_CHECK(strcmp(td, TD) == 0);
		free(out);
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	for (size_t i = 0; i < r->n_dns_names; i++) {
		out = NULL;
		if (k8s_reg_render(r->dns_names[i], ctx, p, &out, err, sizeof(err)) == 0) {
			FUZZ_CHECK(strchr(out, '/') == NULL);
			free(out);
		}
	}
}

static void one_pod(json_t *pod, const struct k8s_reg_rules *rules, const struct k8s_reg_ctx *ctx)
{
	struct k8s_reg_pod p;
	if (k8s_reg_pod_from_json(pod, &p) < 0)
		return;
	FUZZ_CHECK(p.ns && p.name && p.uid);
	for (size_t i = 0; i < rules->n; i++)
		if (k8s_reg_rule_matches(&rules->v[i], &p))
			render_rule(&rules->v[i], ctx, &p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	size_t rlen;
	const uint8_t *rtext = fuzz_take_until(&in, 0, &rlen);
	json_t *arr = json_loadb((const char *)rtext, rlen, 0, NULL);
	json_t *pods = json_loadb((const char *)in.p, in.n, 0, NULL);
	struct k8s_reg_ctx ctx = {.trust_domain = TD, .cluster = "c1"};
	struct k8s_reg_rules rules = {0};
	char err[512] = "";

	if (k8s_reg_rules_parse(arr, &ctx, &rules, err, sizeof(err)) < 0) {
		FUZZ_CHECK(err[0] != '\0');
		goto out;
	}
	FUZZ_CHECK(rules.n <= K8S_REG_MAX_RULES);
	for (size_t i = 0; i < rules.n; i++)
		FUZZ_CHECK(rules.v[i].spiffe_id != NULL);
	json_t *items = json_object_get(pods, "items");
	if (json_is_array(items)) {
		size_t i;
		json_t *pod;
		json_array_foreach(items, i, pod)
			one_pod(pod, &rules, &ctx);
	} else if (pods) {
		one_pod(pods, &rules, &ctx);
	}
out:
	k8s_reg_rules_free(&rules);
	json_decref(arr);
	json_decref(pods);
	return 0;
}

/* k8s_reg_rules.h: the rules of automatic registration from pods (server config
 * `k8s_registration`): which pods get an entry, and the SPIFFE ID and DNS names it carries.
 *
 * A rule is a JSON object {"spiffe_id": TEMPLATE, "namespaces": [...], "pod_labels": {"k": "v"},
 * "dns_names": [TEMPLATE...], "x509_svid_ttl": "1h"}; all but spiffe_id are optional. Templates
 * are text with fields in braces: {trust_domain}, {cluster}, {namespace}, {service_account},
 * {pod_name}, {pod_uid}, {node_name}, {label:KEY}, {annotation:KEY}. Rules are checked strictly
 * when the configuration loads (errors name the rule's index, the key and the value); a render
 * can still fail for one pod (a label it lacks, a value that cannot go into an ID), which skips
 * that pod only.
 *
 * Pure functions without shared state: thread-safe. Pods are borrowed views into a pod object
 * (json_t) that the caller keeps alive while it uses them. */
#ifndef LANYARD_K8S_REG_RULES_H
#define LANYARD_K8S_REG_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define K8S_REG_MAX_RULES 256

struct k8s_reg_rule {
	char *spiffe_id;           /* template */
	char **namespaces;         /* none = every namespace */
	size_t n_namespaces;
	char **label_keys, **label_values; /* every pair must be a label of the pod */
	size_t n_labels;
	char **dns_names;          /* templates */
	size_t n_dns_names;
	int32_t x509_svid_ttl;     /* seconds; 0 = the server's default */
};

struct k8s_reg_rules {
	struct k8s_reg_rule *v;
	size_t n;
};

/* What rendering needs besides the pod. */
struct k8s_reg_ctx {
	const char *trust_domain;
	const char *cluster;
};

/* The parts of a pod the rules look at, borrowed from its JSON object. */
struct k8s_reg_pod {
	const char *ns, *sa, *name, *uid, *node; /* node: "" while unscheduled */
	json_t *labels, *annotations;            /* objects, or NULL */
};

/* Parses and checks the array (NULL or empty = no rules). Each template is also rendered for a
 * sample pod and must give a SPIFFE ID in ctx->trust_domain (resp. a DNS name). 0, or -EINVAL
 * with "k8s_registration[i]: key 'k': value ...: why" in err. */
int k8s_reg_rules_parse(json_t *arr, const struct k8s_reg_ctx *ctx, struct k8s_reg_rules *out,
			char *err, size_t errlen);
void k8s_reg_rules_free(struct k8s_reg_rules *r);

/* Fills p from a Pod object: 0, or -EINVAL when metadata.namespace/name/uid is missing. */
int k8s_reg_pod_from_json(json_t *pod, struct k8s_reg_pod *p);
/* True when the pod is in one of the rule's namespaces and has all its labels. */
bool k8s_reg_rule_matches(const struct k8s_reg_rule *r, const struct k8s_reg_pod *p);
/* Renders a template for a pod: 0 and a malloc'd *out, or -EINVAL with the reason in err (a
 * label or annotation the pod lacks, a value empty or with a character outside
 * [A-Za-z0-9._-]). */
int k8s_reg_render(const char *tmpl, const struct k8s_reg_ctx *ctx, const struct k8s_reg_pod *p,
		   char **out, char *err, size_t errlen);

#endif

/* Unit tests for server/k8s_reg_rules.c: the k8s_registration rules (parsing with errors naming
 * the rule, key and value; matching pods by namespace and labels; rendering templates). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "k8s_reg_rules.h"

static const struct k8s_reg_ctx CTX = {.trust_domain = "example.org", .cluster = "prod-1"};

static const char *POD =
	"{\"metadata\": {\"name\": \"web-7d4b9c-x2k8p\", \"namespace\": \"shop\","
	" \"uid\": \"6a0f8e1c-3b2d-4c5e-8f9a-0b1c2d3e4f5a\","
	" \"labels\": {\"app\": \"web\", \"tier\": \"frontend\"},"
	" \"annotations\": {\"lanyard.io/role\": \"edge\", \"bad\": \"a/b\"}},"
	" \"spec\": {\"serviceAccountName\": \"web-sa\", \"nodeName\": \"node-1\"}}";

static json_t *load(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	if (!j)
		fail_msg("bad test JSON: %s", je.text);
	return j;
}

static int parse(const char *text, struct k8s_reg_rules *r, char *err, size_t errlen)
{
	json_t *j = load(text);
	int ret = k8s_reg_rules_parse(j, &CTX, r, err, errlen);
	json_decref(j);
	return ret;
}

static void expect_error(const char *text, const char *want)
{
	struct k8s_reg_rules r;
	char err[512] = "";
	assert_int_equal(parse(text, &r, err, sizeof(err)), -EINVAL);
	if (!strstr(err, want))
		fail_msg("error \"%s\" does not contain \"%s\"", err, want);
	assert_int_equal(r.n, 0);
}

static void test_parse_full(void **state)
{
	struct k8s_reg_rules r;
	char err[512] = "";
	(void)state;
	assert_int_equal(parse("[{\"spiffe_id\": \"spiffe://{trust_domain}/ns/{namespace}/sa/"
			       "{service_account}\", \"namespaces\": [\"shop\", \"pay\"],"
			       " \"pod_labels\": {\"app\": \"web\"},"
			       " \"dns_names\": [\"{pod_name}.{namespace}.svc\"],"
			       " \"x509_svid_ttl\": \"1h\"},"
			       " {\"spiffe_id\": \"spiffe://example.org/c/{cluster}/{pod_uid}\"}]",
			       &r, err, sizeof(err)), 0);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.v[0].n_namespaces, 2);
	assert_int_equal(r.v[0].n_labels, 1);
	assert_string_equal(r.v[0].label_keys[0], "app");
	assert_int_equal(r.v[0].n_dns_names, 1);
	assert_int_equal(r.v[0].x509_svid_ttl, 3600);
	assert_int_equal(r.v[1].x509_svid_ttl, 0);
	k8s_reg_rules_free(&r);
	/* Empty and absent: off. */
	assert_int_equal(parse("[]", &r, err, sizeof(err)), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(k8s_reg_rules_parse(NULL, &CTX, &r, err, sizeof(err)), 0);
	assert_int_equal(r.n, 0);
}

static void test_parse_errors(void **state)
{
	(void)state;
	expect_error("{}", "not an array");
	expect_error("[5]", "k8s_registration[0]: key '': value 5: a rule must be an object");
	expect_error("[{\"namespaces\": []}]", "k8s_registration[0]: key 'spiffe_id' is required");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/a\"}, {\"spiffe_id\": 1}]",
		     "k8s_registration[1]: key 'spiffe_id': value 1: not a string");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/{pod}\"}]",
		     "k8s_registration[0]: key 'spiffe_id': value \"spiffe://example.org/{pod}\": "
		     "unknown field {pod}");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/{namespace\"}]", "unbalanced '{'");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/x}\"}]", "unbalanced '}'");
	expect_error("[{\"spiffe_id\": \"spiffe://other.org/{namespace}\"}]", "other.org");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/{label:}\"}]", "unknown field");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/a\", \"namespace\": [\"x\"]}]",
		     "k8s_registration[0]: key 'namespace': value [\"x\"]: unknown key");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/a\", \"namespaces\": [\"a b\"]}]",
		     "key 'namespaces': value \"a b\": not a namespace name");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/a\", \"namespaces\": \"shop\"}]",
		     "key 'namespaces': value \"shop\": not an array of strings");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/a\", \"pod_labels\": {\"app\": 1}}]",
		     "key 'pod_labels': value 1: not a label value");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/a\", \"pod_labels\": [\"app\"]}]",
		     "key 'pod_labels'");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/a\", \"x509_svid_ttl\": \"soon\"}]",
		     "key 'x509_svid_ttl': value \"soon\": not a duration");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/a\", \"x509_svid_ttl\": 1}]",
		     "key 'x509_svid_ttl': value 1: out of range");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/a\", \"dns_names\": [\"a b.{namespace}\"]}]",
		     "key 'dns_names': value \"a b.{namespace}\"");
	expect_error("[{\"spiffe_id\": \"spiffe://example.org/a\", \"dns_names\": [\"{nope}\"]}]",
		     "unknown field {nope}");
}

static void test_match(void **state)
{
	struct k8s_reg_rules r;
	struct k8s_reg_pod p;
	char err[512] = "";
	json_t *pod = load(POD);
	(void)state;
	assert_int_equal(k8s_reg_pod_from_json(pod, &p), 0);
	assert_string_equal(p.sa, "web-sa");
	assert_string_equal(p.node, "node-1");
	assert_int_equal(parse("[{\"spiffe_id\": \"spiffe://example.org/a\"},"
			       " {\"spiffe_id\": \"spiffe://example.org/a\", \"namespaces\": [\"pay\"]},"
			       " {\"spiffe_id\": \"spiffe://example.org/a\", \"namespaces\": [\"pay\", \"shop\"],"
			       "  \"pod_labels\": {\"app\": \"web\", \"tier\": \"frontend\"}},"
			       " {\"spiffe_id\": \"spiffe://example.org/a\", \"pod_labels\": {\"app\": \"db\"}},"
			       " {\"spiffe_id\": \"spiffe://example.org/a\", \"pod_labels\": {\"gone\": \"\"}}]",
			       &r, err, sizeof(err)), 0);
	assert_true(k8s_reg_rule_matches(&r.v[0], &p));
	assert_false(k8s_reg_rule_matches(&r.v[1], &p));
	assert_true(k8s_reg_rule_matches(&r.v[2], &p));
	assert_false(k8s_reg_rule_matches(&r.v[3], &p));
	assert_false(k8s_reg_rule_matches(&r.v[4], &p));
	k8s_reg_rules_free(&r);
	json_decref(pod);
	/* A pod without namespace, name or uid is not a pod we can register. */
	pod = load("{\"metadata\": {\"name\": \"x\", \"namespace\": \"y\"}}");
	assert_int_equal(k8s_reg_pod_from_json(pod, &p), -EINVAL);
	json_decref(pod);
}

static void test_render(void **state)
{
	struct k8s_reg_pod p;
	char err[512] = "", *out = NULL;
	json_t *pod = load(POD);
	(void)state;
	assert_int_equal(k8s_reg_pod_from_json(pod, &p), 0);
	assert_int_equal(k8s_reg_render("spiffe://{trust_domain}/{cluster}/{namespace}/"
					"{service_account}/{pod_name}/{pod_uid}/{node_name}/"
					"{label:app}/{annotation:lanyard.io/role}",
					&CTX, &p, &out, err, sizeof(err)), 0);
	assert_string_equal(out, "spiffe://example.org/prod-1/shop/web-sa/web-7d4b9c-x2k8p/"
				 "6a0f8e1c-3b2d-4c5e-8f9a-0b1c2d3e4f5a/node-1/web/edge");
	free(out);
	out = NULL;
	/* A label the pod lacks, or a value that would add a path segment, skips the pod. */
	assert_int_equal(k8s_reg_render("spiffe://x/{label:version}", &CTX, &p, &out, err,
					sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "the pod has no label \"version\""));
	assert_null(out);
	assert_int_equal(k8s_reg_render("spiffe://x/{annotation:bad}", &CTX, &p, &out, err,
					sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "\"a/b\""));
	assert_null(out);
	/* Text without fields comes out as it is. */
	assert_int_equal(k8s_reg_render("plain.example.org", &CTX, &p, &out, err, sizeof(err)), 0);
	assert_string_equal(out, "plain.example.org");
	free(out);
	json_decref(pod);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_full),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_render),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

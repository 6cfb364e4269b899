/* k8s_bundle.h: keeps the trust bundle in a Kubernetes ConfigMap, so agent pods can bootstrap
 * from it (mounted as their trust_bundle_path) and follow CA rotations.
 *
 * The ConfigMap must exist (the deploy manifests create it empty): the server's RBAC grants get
 * and patch on that one object, and create cannot be limited to one name. Blocking (libcurl):
 * call it from a worker thread, when the bundle changes and now and then to repair drift. */
#ifndef LANYARD_K8S_BUNDLE_H
#define LANYARD_K8S_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>

#include "k8s_api.h"

#define K8S_BUNDLE_DEFAULT_KEY "bundle.crt"

/* Sets data[key] of ConfigMap ns/name to pem with a JSON merge patch, unless it already holds
 * exactly that (*changed tells which). 0, or -1 with a reason in err. */
int k8s_bundle_publish(struct k8s_api *api, const char *ns, const char *name, const char *key,
		       const char *pem, bool *changed, char *err, size_t errlen);

/* Splits "namespace/name" (the k8s_bundle_configmap setting) into ns and name. 0, or -1 with a
 * reason in err. */
int k8s_bundle_parse_ref(const char *ref, char *ns, size_t nslen, char *name, size_t namelen,
			 char *err, size_t errlen);

#endif

#!/usr/bin/env bash
# deploy/: the Kubernetes manifests parse, their names, labels, ports and paths agree with each
# other and with the configs they carry (the CSI driver's too: the CSIDriver object, the plugin and
# registrar containers, the kubelet's paths, the agent's socket directory), the example workload
# passes the restricted Pod Security Standard, RBAC is the least we need, the config keys are
# options the daemons know (and, where the binaries offer a way to load a config without starting,
# they load it), kustomize renders the bases, the systemd units verify, and the Docker runtime
# stage installs every shared library the binaries need.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

$PY "$SRC/tests/integration/k8s_deploy_check.py" "$SRC" "$T" ||
	fail "deploy/ does not hang together (see above)"
ok "manifests, configs, RBAC, Dockerfiles and systemd units agree"

# The real binaries load the ConfigMap configs: `healthcheck` loads the config first and, with
# the HTTP endpoint disabled, stops right after, saying so.
for d in server agent; do
	help=$("$BIN/lanyard-$d" healthcheck --help 2>&1 || true)
	if ! grep -q "lanyard-$d healthcheck" <<<"$help"; then
		echo "skip - lanyard-$d has no healthcheck command: its config keys were checked" \
			"against agent/server option tables only"
		continue
	fi
	$PY - "$T/$d.json" "$T/$d-check.json" <<-'PY'
	import json, sys
	cfg = json.load(open(sys.argv[1]))
	cfg["http_port"] = 0
	cfg.pop("metrics_bind_port", None)  # it needs http_port
	json.dump(cfg, open(sys.argv[2], "w"))
	PY
	if out=$("$BIN/lanyard-$d" healthcheck --config "$T/$d-check.json" 2>&1); then
		fail "lanyard-$d healthcheck succeeded with the HTTP endpoint disabled: $out"
	fi
	grep -q "http_port is 0" <<<"$out" ||
		fail "lanyard-$d refuses the config of its ConfigMap: $out"
	ok "lanyard-$d loads the config of its ConfigMap"
done

# kustomize (built into kubectl) renders both bases, offline.
if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
	for k in "$SRC/deploy/kubernetes" "$SRC/deploy/kubernetes/example" "$SRC/deploy/kubernetes/ha"; do
		kubectl kustomize "$k" >"$T/rendered.yaml" 2>"$T/kustomize.err" ||
			fail "kubectl kustomize $k: $(cat "$T/kustomize.err")"
		$PY - "$T/rendered.yaml" <<-'PY' || fail "rendered $k is wrong"
		import sys, yaml
		docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
		assert docs, "nothing rendered"
		for d in docs:
		    for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
		        assert ":" in c["image"], "image %s has no tag" % c["image"]
		    assert d["metadata"]["labels"].get("app.kubernetes.io/name"), d["metadata"]["name"]
		PY
	done
	ok "kustomize renders deploy/kubernetes, its example and the ha overlay"
	# The ha overlay: three servers on PostgreSQL, spread over nodes, the connection string
	# from a Secret, the agents on a Service with one address per ready server.
	kubectl kustomize "$SRC/deploy/kubernetes/ha" >"$T/ha.yaml" || fail "kubectl kustomize ha"
	$PY - "$T/ha.yaml" <<-'PY' || fail "the ha overlay is wrong"
	import json, sys, yaml
	docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
	by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
	sts = by[("StatefulSet", "lanyard-server")]["spec"]
	assert sts["replicas"] == 3, sts["replicas"]
	anti = sts["template"]["spec"]["affinity"]["podAntiAffinity"]
	terms = anti["requiredDuringSchedulingIgnoredDuringExecution"]
	assert terms[0]["topologyKey"] == "kubernetes.io/hostname", terms
	c = [c for c in sts["template"]["spec"]["containers"] if c["name"] == "lanyard-server"][0]
	env = {e["name"]: e for e in c.get("env", [])}
	ref = env["LANYARD_DATABASE_CONNECTION_STRING"]["valueFrom"]["secretKeyRef"]
	assert ref["name"] and ref["key"], ref
	pdb = by[("PodDisruptionBudget", "lanyard-server")]["spec"]
	assert pdb["minAvailable"] == 2, pdb
	scfg = json.loads(by[("ConfigMap", "lanyard-server")]["data"]["server.json"])
	assert scfg["database_type"] == "postgres", scfg
	assert "database_connection_string" not in scfg, "the connection string is in a ConfigMap"
	acfg = json.loads(by[("ConfigMap", "lanyard-agent")]["data"]["agent.json"])
	# The overlay's configs replace the base's: the listeners the base's ports name stay.
	ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
	assert scfg.get("oidc_discovery_port") == ports.get("oidc"), (scfg, ports)
	ds = by[("DaemonSet", "lanyard-agent")]["spec"]["template"]
	ann = ds["metadata"].get("annotations", {})
	assert acfg.get("metrics_bind_port") == int(ann.get("prometheus.io/port", 0)), (acfg, ann)
	host = acfg["server_address"].split(".")[0]
	svc = by[("Service", host)]["spec"]
	assert svc.get("clusterIP") == "None" and not svc.get("publishNotReadyAddresses"), svc
	assert any(p["port"] == acfg["server_port"] for p in svc["ports"]), svc
	PY
	ok "the ha overlay: 3 spread servers, a PDB, the Secret, agents on every ready server"
else
	echo "skip - kubectl (kustomize) is not installed"
fi

# systemd: the units parse with no unknown keys, and their exposure stays low.
if command -v systemd-analyze >/dev/null 2>&1; then
	mkdir -p "$T/units"
	for d in server agent; do
		sed "s#/usr/local/bin/lanyard-$d#$BIN/lanyard-$d#" \
			"$SRC/deploy/systemd/lanyard-$d.service" >"$T/units/lanyard-$d.service"
	done
	out=$(systemd-analyze verify "$T/units/lanyard-server.service" \
		"$T/units/lanyard-agent.service" 2>&1) || fail "systemd-analyze verify: $out"
	# verify only warns about unknown keys and bad values.
	if grep -E "Unknown|ignoring|Failed|invalid" <<<"$out" | grep lanyard >/dev/null; then
		fail "systemd-analyze verify: $out"
	fi
	sa_help=$(systemd-analyze security --help 2>&1 || true)
	if grep -q -- "--offline" <<<"$sa_help"; then
		for d in server agent; do
			level=$(systemd-analyze security --offline=yes \
				"$T/units/lanyard-$d.service" 2>/dev/null |
				sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
			[ -n "$level" ] || fail "systemd-analyze security gave no level for $d"
			$PY -c "import sys; sys.exit(0 if float('$level') <= 3.0 else 1)" ||
				fail "lanyard-$d.service exposure $level > 3.0"
		done
	fi
	ok "systemd units verify (exposure <= 3.0)"
else
	echo "skip - systemd-analyze is not installed"
fi

# The Docker runtime stage installs a package for every shared library the binaries link or load
# with dlopen (libcurl, common/curl_dyn.h), unless the library is in the slim base (libc6,
# libgcc-s1 or an essential package).
curl_soname=$(sed -n 's/^#define CURL_DYN_SONAME "\(.*\)"$/\1/p' "$SRC/common/curl_dyn.h")
[ -n "$curl_soname" ] || fail "common/curl_dyn.h names no CURL_DYN_SONAME"
if readelf -d "$BIN/lanyard-agent" | grep -q 'NEEDED.*libcurl'; then
	fail "lanyard-agent links libcurl (it must load it on demand: common/curl_dyn.h)"
fi
ok "lanyard-agent does not link libcurl (loaded on demand as $curl_soname)"
pq_soname=$(sed -n 's/^#define PQ_DYN_SONAME "\(.*\)"$/\1/p' "$SRC/server/pq_dyn.h")
[ -n "$pq_soname" ] || fail "server/pq_dyn.h names no PQ_DYN_SONAME"
for d in server agent; do
	if readelf -d "$BIN/lanyard-$d" | grep -q 'NEEDED.*libpq'; then
		fail "lanyard-$d links libpq (it must load it on demand: server/pq_dyn.h)"
	fi
done
ok "the daemons do not link libpq (loaded on demand as $pq_soname)"
if command -v dpkg >/dev/null 2>&1 && command -v readelf >/dev/null 2>&1; then
	for d in server agent; do
		dockerfile="$SRC/deploy/docker/Dockerfile.$d"
		runtime=$(awk '/^FROM/{n++} n>=2' "$dockerfile")
		dyn="$curl_soname"
		[ "$d" = server ] && dyn="$dyn $pq_soname"
		for lib in $(readelf -d "$BIN/lanyard-$d" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p') \
			$dyn; do
			case "$lib" in libasan* | libubsan*) continue ;; esac
			# An image built with LANYARD_WOLFSSL=sp links wolfSSL statically.
			case "$lib" in libwolfssl.so*)
				grep -q -- '-DLANYARD_WOLFSSL=sp' "$dockerfile" && continue ;;
			esac
			# awk reads all its input: an early exit would SIGPIPE ldconfig (pipefail).
			path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !p {p = $NF} END {print p}')
			[ -n "$path" ] || fail "$lib of lanyard-$d is not installed here"
			pkg=$( (dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null ||
				true) | awk -F: 'NR == 1 {print $1}')
			[ -n "$pkg" ] || fail "no package owns $path"
			case "$pkg" in libc6 | libgcc-s1) continue ;; esac
			ess=$(dpkg-query -W -f='${Essential}' "$pkg" 2>/dev/null || true)
			[ "$ess" = yes ] && continue
			grep -qw -- "$pkg" <<<"$runtime" ||
				fail "Dockerfile.$d: the runtime stage lacks $pkg (for $lib)"
		done
	done
	ok "Docker runtime stages install every library the binaries need"
else
	echo "skip - dpkg/readelf are not available"
fi

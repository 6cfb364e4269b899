#!/usr/bin/python3
"""Static checks of deploy/ (run by test_deploy.sh): the Kubernetes manifests parse and hang
together, ports and paths agree with the server and agent configs they carry (and with the CSI
driver's plugin, registrar and CSIDriver object), the example workload meets the restricted Pod
Security Standard, the config keys are options the daemons know, RBAC is exactly the least
privilege we mean, and the Dockerfiles and systemd units agree with the code's defaults.

Usage: k8s_deploy_check.py SRC OUTDIR
Writes the two configs to OUTDIR/server.json and OUTDIR/agent.json (for the binaries to load) and
prints one line per failed check; exit status 1 when any failed."""
import json
import os
import posixpath
import re
import sys

try:
    import yaml
except ImportError:
    print("FAIL: python3-yaml is missing (apt-get install python3-yaml; it belongs in "
          "deploy/install-deps.sh)")
    sys.exit(1)

SRC, OUT = sys.argv[1], sys.argv[2]
KDIR = os.path.join(SRC, "deploy", "kubernetes", "base")
errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)
    return cond


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CSIDriver"}
WORKLOADS = {"StatefulSet", "DaemonSet", "Deployment"}


def load_base(d):
    """Parses a kustomization directory: {(kind, ns, name): obj} and its kustomization."""
    with open(os.path.join(d, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    ns = kust.get("namespace")
    resources = kust.get("resources") or []
    files = sorted(x for x in os.listdir(d) if x.endswith((".yaml", ".yml"))
                   and x != "kustomization.yaml")
    for f in files:
        check(f in resources, "%s/%s is not listed in its kustomization" % (d, f))
    objs = {}
    for r in resources:
        p = os.path.join(d, r)
        if not check(os.path.isfile(p), "%s: resource %s does not exist" % (d, r)):
            continue
        with open(p) as f:
            try:
                docs = [x for x in yaml.safe_load_all(f) if x is not None]
            except yaml.YAMLError as e:
                errors.append("%s: does not parse: %s" % (p, e))
                continue
        for doc in docs:
            where = "%s (%s)" % (r, doc.get("kind"))
            if not check(isinstance(doc, dict), "%s: a document is not a mapping" % r):
                continue
            for field in ("apiVersion", "kind", "metadata"):
                check(field in doc, "%s: no %s" % (where, field))
            md = doc.get("metadata") or {}
            check(md.get("name"), "%s: no metadata.name" % where)
            kind = doc.get("kind")
            if kind in CLUSTER_SCOPED:
                check("namespace" not in md, "%s: cluster-scoped but has a namespace" % where)
                key = (kind, None, md.get("name"))
            else:
                check(md.get("namespace") == ns,
                      "%s %s: namespace %r, the kustomization's is %r"
                      % (kind, md.get("name"), md.get("namespace"), ns))
                key = (kind, md.get("namespace"), md.get("name"))
            check(key not in objs, "%s %s is defined twice" % (kind, md.get("name")))
            check((md.get("labels") or {}).get("app.kubernetes.io/name"),
                  "%s %s: no app.kubernetes.io/name label" % (kind, md.get("name")))
            objs[key] = doc
    if ns:
        check(("Namespace", None, ns) in objs or d != KDIR,
              "%s: no Namespace %s" % (d, ns))
    return kust, objs


def get(objs, kind, ns, name):
    return objs.get((kind, None if kind in CLUSTER_SCOPED else ns, name))


def pod_spec(w):
    return w["spec"]["template"]["spec"]


def mounts_of(container):
    return {m["name"]: m for m in container.get("volumeMounts") or []}


def volume_for_path(w, container, path):
    """The volume (and its mount) that holds path in the container: the longest mount prefix."""
    best = None
    for m in container.get("volumeMounts") or []:
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if not best or len(mp) > len(best[1]["mountPath"]):
                best = (m["name"], m)
    if not best:
        return None, None
    vols = {v["name"]: v for v in pod_spec(w).get("volumes") or []}
    for t in w["spec"].get("volumeClaimTemplates") or []:
        vols[t["metadata"]["name"]] = {"name": t["metadata"]["name"], "pvc": t}
    return vols.get(best[0]), best[1]


def check_workload(objs, ns, w):
    name = w["metadata"]["name"]
    spec = w["spec"]
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    tlabels = spec["template"]["metadata"].get("labels") or {}
    check(sel and all(tlabels.get(k) == v for k, v in sel.items()),
          "%s: selector %s does not match its pod labels %s" % (name, sel, tlabels))
    ps = pod_spec(w)
    sa = ps.get("serviceAccountName")
    check(sa and get(objs, "ServiceAccount", ns, sa),
          "%s: service account %r is not defined" % (name, sa))
    vols = {v["name"]: v for v in ps.get("volumes") or []}
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or []}
    for v in vols.values():
        if "configMap" in v:
            check(get(objs, "ConfigMap", ns, v["configMap"]["name"]),
                  "%s: volume %s names ConfigMap %s, which is not defined"
                  % (name, v["name"], v["configMap"]["name"]))
    for c in ps.get("containers") or []:
        cn = "%s/%s" % (name, c["name"])
        for m in c.get("volumeMounts") or []:
            check(m["name"] in vols or m["name"] in claims,
                  "%s: mount %s has no volume" % (cn, m["name"]))
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        check("cpu" in req and "memory" in req and "memory" in lim,
              "%s: needs cpu and memory requests and a memory limit" % cn)
        sc = c.get("securityContext") or {}
        check(sc.get("readOnlyRootFilesystem") is True, "%s: root file system not read-only" % cn)
        bidi = [m["name"] for m in c.get("volumeMounts") or []
                if m.get("mountPropagation") == "Bidirectional"]
        if is_csi_plugin(c):
            # mount(2) and mounts that reach the host: Kubernetes allows Bidirectional
            # propagation to privileged containers only. The one exception, and nothing more.
            check(sc.get("privileged") is True and bidi,
                  "%s: the CSI plugin needs privileged and a Bidirectional mount" % cn)
            continue
        check(not bidi, "%s: Bidirectional mount propagation %s" % (cn, bidi))
        check(sc.get("allowPrivilegeEscalation") is False,
              "%s: allowPrivilegeEscalation must be false" % cn)
        check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []),
              "%s: capabilities are not all dropped" % cn)
        check(not sc.get("privileged"), "%s: privileged" % cn)
        check(not (sc.get("capabilities") or {}).get("add"), "%s: adds capabilities" % cn)


def is_csi_plugin(c):
    return (c.get("args") or [None])[0] == "csi" and c.get("image") == "lanyard-agent"


def flag(c, name):
    """The value of --name=V or --name V in a container's args, or None."""
    args = c.get("args") or []
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            return a[len(name) + 1:]
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return None


def host_path_of(w, c, path):
    """The node path behind path in container c (through a hostPath volume), or None."""
    vol, m = volume_for_path(w, c, path)
    hp = (vol or {}).get("hostPath")
    if not hp:
        return None
    rest = path[len(m["mountPath"].rstrip("/")):]
    return hp["path"].rstrip("/") + rest


def restricted_violations(w):
    """What in a pod template breaks the restricted Pod Security Standard (the checks of
    kubernetes.io/docs/concepts/security/pod-security-standards that a manifest can fail)."""
    ps, out = pod_spec(w), []
    allowed_vols = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                    "persistentVolumeClaim", "projected", "secret"}
    for v in ps.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= allowed_vols:
            out.append("volume %s is %s" % (v["name"], sorted(kinds)))
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if ps.get(f):
            out.append(f)
    psc = ps.get("securityContext") or {}
    for c in (ps.get("initContainers") or []) + (ps.get("containers") or []):
        sc = c.get("securityContext") or {}
        caps = sc.get("capabilities") or {}
        if sc.get("privileged"):
            out.append("%s: privileged" % c["name"])
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append("%s: allowPrivilegeEscalation not false" % c["name"])
        if "ALL" not in (caps.get("drop") or []):
            out.append("%s: capabilities not all dropped" % c["name"])
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append("%s: adds capabilities" % c["name"])
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            out.append("%s: runAsNonRoot not true" % c["name"])
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append("%s: runAsUser 0" % c["name"])
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append("%s: seccompProfile %s" % (c["name"], seccomp))
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append("%s: hostPort" % c["name"])
    return out


def c_define(path, name):
    with open(path) as f:
        m = re.search(r'^#define %s "([^"]*)"' % name, f.read(), re.M)
    return m.group(1) if m else None


def check_csi(objs, ns, agent, sockdir):
    """The CSI driver: the CSIDriver object, the plugin and registrar containers of the agent
    DaemonSet and the paths they share with the kubelet and with the agent."""
    name = c_define(os.path.join(SRC, "agent", "csi.h"), "CSI_DRIVER_NAME")
    drv = get(objs, "CSIDriver", None, name)
    if not check(drv, "no CSIDriver %s (agent/csi.h CSI_DRIVER_NAME)" % name):
        return None
    spec = drv.get("spec") or {}
    check(spec.get("attachRequired") is False and spec.get("podInfoOnMount") is True and
          spec.get("volumeLifecycleModes") == ["Ephemeral"],
          "CSIDriver %s: want attachRequired false, podInfoOnMount true, Ephemeral only: %s"
          % (name, spec))
    cs = pod_spec(agent)["containers"]
    plugin = next((c for c in cs if is_csi_plugin(c)), None)
    reg = next((c for c in cs if "csi-node-driver-registrar:" in c.get("image", "")), None)
    if not check(plugin and reg, "agent: no lanyard-agent csi container or no registrar"):
        return None
    check(reg["image"].startswith("registry.k8s.io/sig-storage/csi-node-driver-registrar:v"),
          "registrar image %s" % reg["image"])
    check(flag(plugin, "--driver-name") in (None, name), "plugin: --driver-name is not %s" % name)
    # The plugin publishes the very directory the agent serves in, as the node sees it.
    wsd = flag(plugin, "--workload-socket-dir")
    ac = pod_spec(agent)["containers"][0]
    check(wsd and host_path_of(agent, plugin, wsd) == host_path_of(agent, ac, sockdir),
          "plugin: --workload-socket-dir %s is not the agent's socket directory %s"
          % (wsd, sockdir))
    # The kubelet reaches the plugin's socket at the registration path, on the node.
    sock = flag(plugin, "--csi-socket")
    regpath = flag(reg, "--kubelet-registration-path")
    check(sock and host_path_of(agent, plugin, sock) == regpath ==
          "/var/lib/kubelet/plugins/%s/%s" % (name, posixpath.basename(sock)),
          "plugin socket %s is not at --kubelet-registration-path %s on the node" % (sock, regpath))
    addr = flag(reg, "--csi-address")
    check(addr and host_path_of(agent, reg, addr) == regpath,
          "registrar: --csi-address %s is not the plugin's socket" % addr)
    check(host_path_of(agent, reg, "/registration") == "/var/lib/kubelet/plugins_registry",
          "registrar: /registration is not the kubelet's plugins_registry")
    # Targets are under the kubelet's pods directory, at the same path inside and out, and
    # mounts made there must reach the node.
    root = flag(plugin, "--target-root")
    vol, m = volume_for_path(agent, plugin, (root or "") + "/x")
    check(root and host_path_of(agent, plugin, root) == root and
          m.get("mountPropagation") == "Bidirectional",
          "plugin: --target-root %s is not the node's path with Bidirectional propagation" % root)
    return name


def services_for(objs, ns, w):
    tl = w["spec"]["template"]["metadata"].get("labels") or {}
    out = []
    for (kind, sns, _), s in objs.items():
        if kind != "Service" or sns != ns:
            continue
        sel = s["spec"].get("selector") or {}
        if sel and all(tl.get(k) == v for k, v in sel.items()):
            out.append(s)
    return out


def container_port(c, ref):
    for p in c.get("ports") or []:
        if p.get("name") == ref or p.get("containerPort") == ref:
            return p["containerPort"]
    return None


def probe_port(c, probe):
    g = probe.get("httpGet") or {}
    port = g.get("port")
    return container_port(c, port) if isinstance(port, str) else port


def check_scrape(w, c, who, listeners):
    """Prometheus scrape annotations name /metrics on a port a listener serves on every address
    (listeners: port -> bind address)."""
    ann = w["spec"]["template"]["metadata"].get("annotations") or {}
    if not check(ann.get("prometheus.io/scrape") == "true",
                 "%s: no prometheus.io/scrape annotation" % who):
        return
    check(ann.get("prometheus.io/path", "/metrics") == "/metrics",
          "%s: prometheus.io/path is not /metrics" % who)
    port = int(ann.get("prometheus.io/port", "0"))
    check(port and listeners.get(port) == "0.0.0.0",
          "%s: prometheus.io/port %s is not a listener on 0.0.0.0 (%s)" % (who, port, listeners))
    check(container_port(c, port) == port,
          "%s: prometheus.io/port %s is not a container port" % (who, port))


def rbac_rules(role):
    out = set()
    for r in role.get("rules") or []:
        for g in r.get("apiGroups") or []:
            for res in r.get("resources") or []:
                for v in r.get("verbs") or []:
                    out.add((g, res, v, tuple(r.get("resourceNames") or ())))
    return out


def option_table(path):
    """name -> default text, from a C option table (.name = "...", ... .def = "...")."""
    with open(path) as f:
        text = f.read()
    out = {}
    for m in re.finditer(r'\{\s*\.name\s*=\s*"([a-z0-9_]+)"(.*?)\}', text, re.S):
        d = re.search(r'\.def\s*=\s*"([^"]*)"', m.group(2))
        out[m.group(1)] = d.group(1) if d else None
    return out


def configmap_json(objs, ns, cm, key):
    o = get(objs, "ConfigMap", ns, cm)
    if not check(o and key in (o.get("data") or {}), "ConfigMap %s has no %s" % (cm, key)):
        return {}
    try:
        cfg = json.loads(o["data"][key])
    except ValueError as e:
        errors.append("ConfigMap %s: %s is not JSON: %s" % (cm, key, e))
        return {}
    check(isinstance(cfg, dict), "ConfigMap %s: %s is not a JSON object" % (cm, key))
    return cfg


def config_of(objs, ns, w, c):
    """The JSON config a daemon container runs with (from its --config argument)."""
    args = c.get("args") or []
    if not check("--config" in args and args.index("--config") + 1 < len(args),
                 "%s: no --config argument" % c["name"]):
        return {}, None
    path = args[args.index("--config") + 1]
    vol, _ = volume_for_path(w, c, path)
    if not check(vol and "configMap" in vol, "%s: %s is not on a ConfigMap volume"
                 % (c["name"], path)):
        return {}, path
    return configmap_json(objs, ns, vol["configMap"]["name"], posixpath.basename(path)), path


def main():
    kust, objs = load_base(KDIR)
    ns = kust["namespace"]
    server_opts = option_table(os.path.join(SRC, "server", "server_config.c"))
    agent_opts = option_table(os.path.join(SRC, "agent", "agent_config.c"))
    check(server_opts and agent_opts, "cannot read the option tables")

    for (kind, _, _), o in objs.items():
        if kind in WORKLOADS:
            check_workload(objs, ns, o)
        if kind in ("RoleBinding", "ClusterRoleBinding"):
            rr = o["roleRef"]
            check(get(objs, rr["kind"], ns, rr["name"]),
                  "%s %s: role %s is not defined" % (kind, o["metadata"]["name"], rr["name"]))
            for s in o.get("subjects") or []:
                check(s["kind"] == "ServiceAccount" and
                      get(objs, "ServiceAccount", s.get("namespace"), s["name"]),
                      "%s %s: subject %s is not one of our service accounts"
                      % (kind, o["metadata"]["name"], s))
        if kind in ("Role", "ClusterRole"):
            for r in o.get("rules") or []:
                for f in ("apiGroups", "resources", "verbs"):
                    check("*" not in (r.get(f) or []),
                          "%s %s: wildcard in %s" % (kind, o["metadata"]["name"], f))

    server = get(objs, "StatefulSet", ns, "lanyard-server")
    agent = get(objs, "DaemonSet", ns, "lanyard-agent")
    if not check(server and agent, "the server StatefulSet or the agent DaemonSet is missing"):
        return
    sc = pod_spec(server)["containers"][0]
    ac = pod_spec(agent)["containers"][0]
    scfg, spath = config_of(objs, ns, server, sc)
    acfg, apath = config_of(objs, ns, agent, ac)
    with open(os.path.join(OUT, "server.json"), "w") as f:
        json.dump(scfg, f)
    with open(os.path.join(OUT, "agent.json"), "w") as f:
        json.dump(acfg, f)

    # The keys must be options of the daemons, or they refuse the file.
    for k in scfg:
        check(k in server_opts, "server config key %r is not in server/server_config.c's option "
              "table: lanyard-server would refuse the ConfigMap" % k)
    for k in acfg:
        check(k in agent_opts, "agent config key %r is not in agent/agent_config.c's option "
              "table: lanyard-agent would refuse the ConfigMap" % k)

    def sval(k):
        return scfg.get(k, server_opts.get(k))

    def aval(k):
        return acfg.get(k, agent_opts.get(k))

    # ---- the server ----
    ps = pod_spec(server)
    check(server["spec"].get("replicas") == 1, "server: SQLite allows one replica only")
    psc = ps.get("securityContext") or {}
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0,
          "server: must run as a non-root user")
    bind_port, http_port = int(sval("bind_port")), int(sval("http_port"))
    check(container_port(sc, "grpc") == bind_port,
          "server: container port grpc %s != bind_port %s" % (container_port(sc, "grpc"),
                                                              bind_port))
    check(container_port(sc, "http") == http_port,
          "server: container port http != http_port %s" % http_port)
    check(sval("bind_address") == "0.0.0.0", "server: bind_address must be 0.0.0.0 in a pod")
    check(sval("http_address") == "0.0.0.0",
          "server: http_address must be 0.0.0.0: the kubelet probes the pod IP")
    for probe, path in (("livenessProbe", "/live"), ("readinessProbe", "/ready")):
        p = sc.get(probe) or {}
        check((p.get("httpGet") or {}).get("path") == path, "server: %s is not %s" % (probe, path))
        check(probe_port(sc, p) == http_port, "server: %s port != http_port" % probe)
    headless = get(objs, "Service", ns, server["spec"].get("serviceName"))
    check(headless and headless["spec"].get("clusterIP") == "None",
          "server: serviceName must name a headless Service")
    svcs = services_for(objs, ns, server)
    check(svcs, "server: no Service selects the server pods")
    # Each Service port reaches the listener its name says: grpc the node API, http-metrics the
    # operator endpoint, oidc the OIDC discovery endpoint.
    listeners = {"grpc": ("bind_port", bind_port), "http-metrics": ("http_port", http_port),
                 "oidc": ("oidc_discovery_port", int(sval("oidc_discovery_port") or 0))}
    for s in svcs:
        for p in s["spec"]["ports"]:
            key, want = listeners.get(p.get("name"), ("bind_port", bind_port))
            check(want and container_port(sc, p.get("targetPort", p["port"])) == want,
                  "Service %s: port %s (%s) does not reach %s %s"
                  % (s["metadata"]["name"], p["port"], p.get("name"), key, want))
    main_svc = get(objs, "Service", ns, "lanyard-server")
    check(main_svc and "http-metrics" in [p.get("name") for p in main_svc["spec"]["ports"]],
          "Service lanyard-server has no http-metrics port")
    check_scrape(server, sc, "server", {http_port: sval("http_address"),
                                        int(sval("metrics_bind_port") or 0):
                                        sval("metrics_bind_address")})
    if int(sval("oidc_discovery_port") or 0):
        check(sval("oidc_issuer"), "server: oidc_discovery_port without oidc_issuer")
        check(container_port(sc, "oidc") == int(sval("oidc_discovery_port")),
              "server: container port oidc != oidc_discovery_port")
        check(sval("oidc_discovery_address") == "0.0.0.0",
              "server: oidc_discovery_address must be 0.0.0.0 for the Service to reach it")
    vol, m = volume_for_path(server, sc, sval("data_dir"))
    check(vol and "pvc" in vol, "server: data_dir %s is not on the persistent volume"
          % sval("data_dir"))
    check(vol is None or posixpath.normpath(sval("data_dir")) !=
          posixpath.normpath(m["mountPath"]),
          "server: data_dir must be a directory inside the volume (the server makes it 0700)")
    vol, m = volume_for_path(server, sc, posixpath.dirname(sval("admin_socket")))
    check(vol and "emptyDir" in vol, "server: admin_socket's directory is not on an emptyDir")

    # ---- psat and the bundle, both sides ----
    check(aval("node_attestor") == "k8s_psat", "agent: node_attestor is not k8s_psat")
    check(sval("k8s_psat_cluster"), "server: k8s_psat_cluster is not set")
    agent_sa = "%s:%s" % (ns, pod_spec(agent)["serviceAccountName"])
    check(agent_sa in (sval("k8s_psat_allowed_service_accounts") or []),
          "server: the agent's service account %s is not allowed" % agent_sa)
    audience = sval("k8s_psat_audience") or "lanyard-server"
    tok = aval("psat_token_path") or ""
    vol, m = volume_for_path(agent, ac, tok)
    src = [s["serviceAccountToken"] for s in ((vol or {}).get("projected") or {}).get("sources", [])
           if "serviceAccountToken" in s]
    if check(src, "agent: psat_token_path %s is not a projected service account token" % tok):
        check(posixpath.join(m["mountPath"], src[0]["path"]) == tok,
              "agent: the projected token is not at psat_token_path %s" % tok)
        check(src[0].get("audience") == audience,
              "agent: projected token audience %r != server's k8s_psat_audience %r"
              % (src[0].get("audience"), audience))
        check(int(src[0].get("expirationSeconds", 3600)) >= 600, "agent: token lifetime too short")
    bundle_ref = sval("k8s_bundle_configmap") or ""
    bundle_key = sval("k8s_bundle_configmap_key") or "bundle.crt"
    check(bundle_ref == "%s/lanyard-bundle" % ns,
          "server: k8s_bundle_configmap %r is not %s/lanyard-bundle" % (bundle_ref, ns))
    check(get(objs, "ConfigMap", ns, "lanyard-bundle") is not None
          and "data" not in get(objs, "ConfigMap", ns, "lanyard-bundle"),
          "the bundle ConfigMap must exist without data (re-applying must not erase it)")
    vol, m = volume_for_path(agent, ac, aval("trust_bundle_path") or "")
    check(vol and (vol.get("configMap") or {}).get("name") == "lanyard-bundle" and
          posixpath.join(m["mountPath"], bundle_key) == aval("trust_bundle_path"),
          "agent: trust_bundle_path %s is not key %s of the bundle ConfigMap"
          % (aval("trust_bundle_path"), bundle_key))

    # ---- the agent ----
    ps = pod_spec(agent)
    check(ps.get("hostPID") is True, "agent: hostPID is needed to see callers' processes")
    host_net = ps.get("hostNetwork") is True
    if host_net:
        check(ps.get("dnsPolicy") == "ClusterFirstWithHostNet",
              "agent: hostNetwork needs dnsPolicy ClusterFirstWithHostNet to resolve the Service")
    if re.match(r"https?://127\.0\.0\.1[:/]", aval("kubelet_url") or ""):
        check(host_net, "agent: kubelet_url on 127.0.0.1 needs hostNetwork")
    addr = aval("server_address")
    dns = re.match(r"^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?$", addr or "")
    if check(dns, "agent: server_address %r is not a Service DNS name" % addr):
        s = get(objs, "Service", dns.group(2), dns.group(1))
        if check(s, "agent: server_address names Service %s, which is not defined" % addr):
            check(int(aval("server_port")) in [p["port"] for p in s["spec"]["ports"]],
                  "agent: server_port %s is not a port of Service %s" % (aval("server_port"), addr))
    http_port = int(aval("http_port"))
    for probe, path in (("livenessProbe", "/live"), ("readinessProbe", "/ready")):
        p = ac.get(probe) or {}
        g = p.get("httpGet") or {}
        check(g.get("path") == path, "agent: %s is not %s" % (probe, path))
        check(probe_port(ac, p) == http_port, "agent: %s port != http_port %s" % (probe, http_port))
        if aval("http_address") == "127.0.0.1":
            check(host_net and g.get("host") == "127.0.0.1",
                  "agent: http_address 127.0.0.1 is only reachable by probes with hostNetwork "
                  "and host 127.0.0.1")
        else:
            check(aval("http_address") == "0.0.0.0", "agent: probes cannot reach http_address")
    check(ps.get("priorityClassName") == "system-node-critical",
          "agent: priorityClassName is not system-node-critical (workloads depend on it)")
    mport = int(aval("metrics_bind_port") or 0)
    check(mport and aval("metrics_bind_address") == "0.0.0.0",
          "agent: no /metrics-only listener on every address (metrics_bind_port)")
    check(container_port(ac, "metrics") == mport,
          "agent: container port metrics != metrics_bind_port %s" % mport)
    check_scrape(agent, ac, "agent", {mport: aval("metrics_bind_address")})
    sock = aval("socket_path")
    sockdir = posixpath.dirname(sock)
    vol, m = volume_for_path(agent, ac, sock)
    check(vol and (vol.get("hostPath") or {}).get("path") == sockdir and
          m["mountPath"] == sockdir,
          "agent: socket_path's directory %s is not the same hostPath on the node" % sockdir)
    vol, m = volume_for_path(agent, ac, aval("data_dir"))
    check(vol and "hostPath" in vol, "agent: data_dir is not on a hostPath volume")

    driver = check_csi(objs, ns, agent, sockdir)

    # ---- the example workload: the socket through the CSI driver, restricted PSS ----
    ekust, eobjs = load_base(os.path.join(SRC, "deploy", "kubernetes", "example"))
    works = [o for (k, _, _), o in eobjs.items() if k in WORKLOADS]
    check(works, "example: no workload")
    ens = get(eobjs, "Namespace", None, ekust["namespace"]) or {"metadata": {}}
    enforce = (ens["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce")
    check(enforce == "restricted", "example: namespace enforces %r, not restricted" % enforce)
    for w in works:
        check_workload(eobjs, ekust["namespace"], w)
        bad = restricted_violations(w)
        check(not bad, "example: not allowed under the restricted standard: %s" % bad)
        c = pod_spec(w)["containers"][0]
        vol, m = volume_for_path(w, c, sock)
        csi = (vol or {}).get("csi") or {}
        check(csi.get("driver") == driver and csi.get("readOnly") is True and
              m["mountPath"] == sockdir,
              "example: the socket directory %s is not a read-only csi volume of %s"
              % (sockdir, driver))
        env = {e["name"]: e.get("value") for e in c.get("env") or []}
        check(env.get("SPIFFE_ENDPOINT_SOCKET") == "unix://" + sock,
              "example: SPIFFE_ENDPOINT_SOCKET is not unix://%s" % sock)
        cmd = " ".join((c.get("command") or []) + (c.get("args") or []))
        check("lanyard-agent api fetch x509" in cmd, "example: does not fetch its X509-SVID")
        check((pod_spec(w).get("securityContext") or {}).get("runAsNonRoot") is True,
              "example: should run as non-root")

    # ---- RBAC: exactly what the code needs ----
    want = {
        ("ClusterRole", "lanyard-server"): {("authentication.k8s.io", "tokenreviews", "create", ()),
                                            ("", "pods", "get", ()), ("", "nodes", "get", ()),
                                            # k8s_registration follows pods and nodes
                                            ("", "pods", "list", ()), ("", "nodes", "list", ()),
                                            ("", "pods", "watch", ()), ("", "nodes", "watch", ())},
        ("Role", "lanyard-server-bundle"): {("", "configmaps", "get", ("lanyard-bundle",)),
                                            ("", "configmaps", "patch", ("lanyard-bundle",))},
        ("ClusterRole", "lanyard-agent"): {("", "nodes/proxy", "get", ())},
    }
    roles = {(k, n): o for (k, _, n), o in objs.items() if k in ("Role", "ClusterRole")}
    check(set(roles) == set(want), "roles %s, expected %s" % (sorted(roles), sorted(want)))
    for key, rules in want.items():
        if key in roles:
            got = rbac_rules(roles[key])
            check(got == rules, "%s %s grants %s, expected exactly %s"
                  % (key[0], key[1], sorted(got), sorted(rules)))
    bound = {}
    for (k, _, n), o in objs.items():
        if k in ("RoleBinding", "ClusterRoleBinding"):
            for s in o.get("subjects") or []:
                bound.setdefault(s["name"], set()).add(o["roleRef"]["name"])
    check(bound.get("lanyard-agent") == {"lanyard-agent"}, "agent bindings: %s"
          % bound.get("lanyard-agent"))
    check(bound.get("lanyard-server") == {"lanyard-server", "lanyard-server-bundle"},
          "server bindings: %s" % bound.get("lanyard-server"))

    check_dockerfiles()
    check_systemd(server_opts, agent_opts)


def check_dockerfiles():
    for daemon in ("server", "agent"):
        p = os.path.join(SRC, "deploy", "docker", "Dockerfile." + daemon)
        if not check(os.path.isfile(p), "%s is missing" % p):
            continue
        with open(p) as f:
            text = f.read()
        froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
        check(len(froms) >= 2, "%s: not multi-stage" % p)
        check(re.search(r"^ARG DEBIAN_IMAGE=debian:12-slim$", text, re.M) and
              all(x == "${DEBIAN_IMAGE}" for x in froms), "%s: not on debian:12-slim" % p)
        for src in re.findall(r"^COPY\s+(?!--from)(\S+)\s", text, re.M):
            check(os.path.exists(os.path.join(SRC, src)), "%s: COPY %s: no such path" % (p, src))
        user = re.findall(r"^USER\s+(\S+)", text, re.M)
        check(user, "%s: no USER" % p)
        if daemon == "server":
            check(user and not user[-1].startswith("0") and user[-1] != "root",
                  "%s: the server must not run as root" % p)
        else:
            check("hostPID" in text, "%s: running as root is not explained" % p)
        check(re.search(r'^ENTRYPOINT \["lanyard-%s"\]' % daemon, text, re.M),
              "%s: ENTRYPOINT is not lanyard-%s" % (p, daemon))
        check('"--config", "/etc/lanyard/%s.json"' % daemon in text,
              "%s: default config path is not /etc/lanyard/%s.json" % (p, daemon))


def unit(path):
    kv = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                k, v = line.split("=", 1)
                kv.setdefault(k, []).append(v)
    return kv


def check_systemd(server_opts, agent_opts):
    for daemon, opts, sock_key in (("server", server_opts, "admin_socket"),
                                   ("agent", agent_opts, "socket_path")):
        p = os.path.join(SRC, "deploy", "systemd", "lanyard-%s.service" % daemon)
        if not check(os.path.isfile(p), "%s is missing" % p):
            continue
        u = unit(p)
        for k, v in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                     ("PrivateTmp", "yes"), ("ProtectHome", None), ("RestrictNamespaces", "yes"),
                     ("SystemCallFilter", None), ("CapabilityBoundingSet", None)):
            check(k in u and (v is None or u[k][-1] == v), "%s: %s=%s missing" % (p, k, v or "..."))
        check(u.get("User", ["root"])[-1] != "root", "%s: runs as root" % p)
        check(u.get("ExecStart", [""])[-1].endswith("run --config /etc/lanyard/%s.json" % daemon),
              "%s: ExecStart does not run with /etc/lanyard/%s.json" % (p, daemon))
        data, sockdir = opts.get("data_dir"), posixpath.dirname(opts.get(sock_key) or "")
        rw = " ".join(u.get("ReadWritePaths", [])).split()
        check(data in rw and sockdir in rw, "%s: ReadWritePaths %s lacks %s or %s"
              % (p, rw, data, sockdir))
        check(u.get("StateDirectory") == [posixpath.relpath(data, "/var/lib")],
              "%s: StateDirectory is not data_dir's default %s" % (p, data))
        check(u.get("RuntimeDirectory") == [posixpath.relpath(sockdir, "/run")],
              "%s: RuntimeDirectory is not %s" % (p, sockdir))


main()
for e in errors:
    print("FAIL: " + e)
sys.exit(1 if errors else 0)

#!/usr/bin/env python3
"""The checks of scripts/check-deploy.sh that need more than a shell.

    check_deploy.py manifests RENDERED.yaml OUT.yaml
        Writes the rendered documents kubernetes-validate has schemas for to
        OUT.yaml and names the ones it skips (custom resources).
    check_deploy.py assert-default RENDERED.yaml
    check_deploy.py assert-production RENDERED.yaml
        What the chart must render for the default values and for
        ci/production-values.yaml (probes, security context, checksums, ...).
    check_deploy.py assert-migrations MODE RENDERED.yaml
        How migrations run, for MODE `startup` (SQLite: each replica
        migrates), `hook` and `job` (a `--migrate` Job per service, a Helm
        hook or a plain Job) or `initContainer`: the migrating container has
        the service's config, environment and mounts, and the services
        migrate at start exactly when nothing else does.
    check_deploy.py migrate BIN_DIR
        Each service binary's `--migrate` on a fresh SQLite database, twice.
    check_deploy.py dockerfile
        Every package the Dockerfile builds and every binary it copies
        exists in the Cargo workspace; the runtime stage runs as the chart's
        uid and carries the OCI labels; .dockerignore keeps .git and target
        directories out of the build context.
    check_deploy.py env BIN_DIR RENDERED.yaml [RENDERED.yaml ...]
        Runs each service binary with `--check-config`, the config file the
        chart rendered for it and the environment its Deployment sets
        (secret references replaced by stand-in values), and the same for
        deploy/compose.yaml with deploy/config/<service>.toml. The services
        refuse unknown keys, so an AGENTSEC_* name no config reads fails.
    check_deploy.py examples
        The files under deploy/examples/ parse and say what policy-svc's
        ext_authz needs.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("identity-svc", "policy-svc", "exchange-svc", "audit-svc")
# Kinds without a schema in kubernetes-validate: custom resources.
CUSTOM_KINDS = {
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
# Stand-ins for secret values, by the variable that carries them.
STAND_INS = {
    "AGENTSEC_DATABASE__URL": "postgres://agentsec:stand-in@db.invalid:5432/agentsec",
    "AGENTSEC_REDIS__URL": "redis://:stand-in@redis.invalid:6379/0",
}
SECRET_STAND_IN = "s" * 48

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def ok(message):
    print(f"ok   {message}")


def load(path):
    return [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]


def by_kind(docs, kind):
    return [doc for doc in docs if doc.get("kind") == kind]


def name(doc):
    return doc["metadata"]["name"]


# manifests ----------------------------------------------------------------


def manifests(rendered, out):
    docs = load(rendered)
    kept = []
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CUSTOM_KINDS:
            print(f"skip {key[1]}/{name(doc)} ({key[0]}): a custom resource, no bundled schema")
        else:
            kept.append(doc)
    Path(out).write_text(yaml.safe_dump_all(kept, sort_keys=False))
    print(f"{len(kept)} of {len(docs)} documents go to kubernetes-validate")
    return 0


# assertions on the rendered chart -------------------------------------------


# Set by every container itself, not secret: the address it binds (the
# config files in the image listen on 127.0.0.1).
CONTAINER_VARIABLES = {"AGENTSEC_SERVER__LISTEN"}


def image_env():
    """The AGENTSEC_* variables deploy/Dockerfile sets in the image."""
    text = (REPO / "deploy/Dockerfile").read_text()
    return dict(re.findall(r"^ENV\s+(AGENTSEC_\w+)=(\S+)", text, re.M))


def container_of(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    if len(containers) != 1:
        fail(f"{name(deployment)}: expected one container")
    return containers[0]


def binary_of(container):
    return Path(container["command"][0]).name


def check_deployment_common(deployment):
    n = name(deployment)
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    if not re.fullmatch(r"[0-9a-f]{64}", annotations.get("checksum/config", "")):
        fail(f"{n}: no checksum/config annotation")
    psc = pod.get("securityContext", {})
    csc = container.get("securityContext", {})
    wanted = {
        # Service links would add AGENTSEC_<SERVICE>_PORT variables, which
        # the services would read as unknown config keys.
        "enableServiceLinks false": pod.get("enableServiceLinks") is False,
        "pod runAsNonRoot": psc.get("runAsNonRoot") is True,
        "pod runAsUser 10001": psc.get("runAsUser") == 10001,
        "pod seccomp RuntimeDefault": psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        "readOnlyRootFilesystem": csc.get("readOnlyRootFilesystem") is True,
        "allowPrivilegeEscalation false": csc.get("allowPrivilegeEscalation") is False,
        "capabilities drop ALL": csc.get("capabilities", {}).get("drop") == ["ALL"],
    }
    for what, good in wanted.items():
        if not good:
            fail(f"{n}: {what}")
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    for path in ("/tmp", "/var/lib/agentsec", f"/etc/agentsec/{binary_of(container)}.toml"):
        if path not in mounts:
            fail(f"{n}: nothing mounted at {path}")
    if container["args"] != ["--config", f"/etc/agentsec/{binary_of(container)}.toml"]:
        fail(f"{n}: args {container['args']}")
    ports = container.get("ports", [])
    if [p.get("name") for p in ports] != ["grpc"]:
        fail(f"{n}: the container port is not named grpc")
    # The image's own AGENTSEC_* variables (deploy/Dockerfile ENV) beat the
    # config file, so every container must set them itself, as it sets its
    # listen address.
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    for variable in set(image_env()) | CONTAINER_VARIABLES:
        if variable not in env:
            fail(f"{n}: does not set {variable}, which the image sets")
    listen = f"0.0.0.0:{ports[0]['containerPort']}" if ports else None
    if env.get("AGENTSEC_SERVER__LISTEN") != listen:
        fail(f"{n}: AGENTSEC_SERVER__LISTEN is {env.get('AGENTSEC_SERVER__LISTEN')}, expected {listen}")
    ok(f"{n}: security context, mounts, checksum/config, args, AGENTSEC_SERVER__LISTEN")


GRPC_NAMES = {
    "identity-svc": "agentsec.identity.v1.IdentityService",
    "policy-svc": "agentsec.policy.v1.PolicyService",
    "exchange-svc": "agentsec.exchange.v1.ExchangeService",
    "audit-svc": "agentsec.audit.v1.AuditService",
}


def check_grpc_names_against_proto():
    """The readiness probe names must be proto package + service."""
    found = {}
    for proto in (REPO / "proto/agentsec").rglob("*.proto"):
        text = proto.read_text()
        package = re.search(r"^package\s+([\w.]+);", text, re.M)
        for service in re.findall(r"^service\s+(\w+)", text, re.M):
            found[f"{package.group(1)}.{service}"] = proto
    for svc, grpc_name in GRPC_NAMES.items():
        if grpc_name in found:
            ok(f"{svc}: {grpc_name} is a service in {found[grpc_name].relative_to(REPO)}")
        else:
            fail(f"{svc}: {grpc_name} is not a service in proto/")


def services_of(docs):
    return {name(d): d for d in by_kind(docs, "Service")}


def assert_default(rendered):
    docs = load(rendered)
    check_grpc_names_against_proto()
    deployments = by_kind(docs, "Deployment")
    if sorted(binary_of(container_of(d)) for d in deployments) != sorted(SERVICES):
        fail("default values: not one Deployment per service")
    for deployment in deployments:
        check_deployment_common(deployment)
        container = container_of(deployment)
        svc = binary_of(container)
        port = container["ports"][0]["containerPort"]
        probes = {k: container.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
        expected = {
            "startupProbe": {"port": port, "service": ""},
            "readinessProbe": {"port": port, "service": GRPC_NAMES[svc]},
            "livenessProbe": {"port": port, "service": ""},
        }
        for kind, grpc in expected.items():
            got = (probes[kind] or {}).get("grpc")
            if got != grpc:
                fail(f"{svc}: {kind} grpc {got}, expected {grpc}")
        ok(f"{svc}: gRPC startup/readiness/liveness probes on grpc.health.v1 ({GRPC_NAMES[svc]})")
        if deployment["spec"].get("replicas") != 1:
            fail(f"{svc}: default replicas should be 1 (SQLite)")
        env_names = [e["name"] for e in container.get("env", [])]
        literal = [
            e["name"]
            for e in container.get("env", [])
            if "valueFrom" not in e and e["name"].startswith("AGENTSEC_") and e["name"] not in CONTAINER_VARIABLES
        ]
        if literal:
            fail(f"{svc}: {literal} set to literal values (the config file is the place)")
        secret_vars = [n for n in env_names if n.startswith("AGENTSEC_") and n not in CONTAINER_VARIABLES]
        if secret_vars:
            fail(f"{svc}: default values name no Secret, yet {secret_vars} are set")
    for service in by_kind(docs, "Service"):
        port = service["spec"]["ports"][0]
        if port.get("name") != "grpc" or port.get("appProtocol") != "grpc":
            fail(f"Service {name(service)}: port {port}")
    ok("Services: one port named grpc with appProtocol grpc")
    for kind in ("Secret", "ServiceMonitor", "Certificate", "HorizontalPodAutoscaler", "NetworkPolicy"):
        if by_kind(docs, kind):
            fail(f"default values render a {kind}")
    ok("default values: no Secret, ServiceMonitor, Certificate, HPA or NetworkPolicy")
    if len(by_kind(docs, "PodDisruptionBudget")) != 4 or len(by_kind(docs, "ServiceAccount")) != 4:
        fail("default values: expected a PDB and a ServiceAccount per service")
    configs = {name(d): d for d in by_kind(docs, "ConfigMap")}
    exchange = next(v for k, v in configs.items() if k.endswith("exchange-svc"))
    toml = exchange["data"]["exchange-svc.toml"]
    if not re.search(r'\[\[targets\]\]\naudience = "http://[^"]+exchange-svc[^"]+:7403"', toml):
        fail("exchange-svc is not a target of itself")
    policy = next(v for k, v in configs.items() if k.endswith("policy-svc"))
    ptoml = policy["data"]["policy-svc.toml"]
    if ptoml.count("[[token_issuers]]") != 2 or "exchange-svc" not in ptoml:
        fail("policy-svc does not trust identity-svc's and exchange-svc's tokens")
    if re.search(r"= \d+\.0\b|e\+\d", "".join(c["data"][k] for c in configs.values() for k in c["data"])):
        fail("a TOML integer was rendered as a float")
    ok("configs: exchange-svc targets itself, policy-svc trusts both issuers, integers stay integers")
    return 0


def assert_production(rendered):
    docs = load(rendered)
    deployments = by_kind(docs, "Deployment")
    for deployment in deployments:
        check_deployment_common(deployment)
        container = container_of(deployment)
        svc = binary_of(container)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if container[kind].get("tcpSocket", {}).get("port") != "grpc":
                fail(f"{svc}: with TLS the {kind} must be a TCP probe")
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        if "/etc/agentsec/tls" not in mounts:
            fail(f"{svc}: no TLS mount")
        for env in container["env"]:
            if (
                env["name"].startswith("AGENTSEC_")
                and env["name"] not in CONTAINER_VARIABLES
                and "secretKeyRef" not in env.get("valueFrom", {})
            ):
                fail(f"{svc}: {env['name']} is not from a Secret")
        spread = deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
        if not spread or any("labelSelector" not in c for c in spread):
            fail(f"{svc}: topology spread constraints without a label selector")
    ok("production: TCP probes with TLS, TLS mounted, AGENTSEC_* only from Secrets, spread constraints")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    if len(hpas) != 3 or any(h["apiVersion"] != "autoscaling/v2" for h in hpas):
        fail("production: expected three autoscaling/v2 HPAs")
    if not any("behavior" in h["spec"] for h in hpas):
        fail("production: HPA behavior is not rendered")
    for kind, count in (("Certificate", 4), ("NetworkPolicy", 4), ("PodDisruptionBudget", 4), ("ServiceMonitor", 4)):
        if len(by_kind(docs, kind)) != count:
            fail(f"production: expected {count} {kind}")
    for monitor in by_kind(docs, "ServiceMonitor"):
        endpoint = monitor["spec"]["endpoints"][0]
        if endpoint.get("path") != "/metrics" or endpoint.get("scheme") != "https" or endpoint.get("port") != "grpc":
            fail(f"production: ServiceMonitor {name(monitor)} endpoint {endpoint}")
    ok("production: HPAs (autoscaling/v2, behavior), 4 Certificates, 4 NetworkPolicies, 4 PDBs, 4 ServiceMonitors on /metrics")
    for policy in by_kind(docs, "NetworkPolicy"):
        spec = policy["spec"]
        if spec.get("policyTypes") != ["Ingress", "Egress"]:
            fail(f"{name(policy)}: policyTypes")
        egress_ports = {p.get("port") for rule in spec["egress"] for p in rule.get("ports", [])}
        if 53 not in egress_ports or 5432 not in egress_ports:
            fail(f"{name(policy)}: egress lacks DNS or PostgreSQL")
        if name(policy).endswith("audit-svc") and 6379 in egress_ports:
            fail("audit-svc has no Redis, yet egress to Redis is open")
    ok("production: NetworkPolicies restrict ingress and egress (DNS, PostgreSQL, Redis only where used)")
    hooks = [
        d
        for d in by_kind(docs, "Job")
        if "helm.sh/hook" in d["metadata"].get("annotations", {})
        and "--check-config" in d["spec"]["template"]["spec"]["containers"][0]["args"]
    ]
    if len(hooks) != 4:
        fail("production: expected a config check hook Job per service")
    for job in hooks:
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        if "--check-config" not in args:
            fail(f"{name(job)}: does not run --check-config")
        if job["spec"]["template"]["spec"].get("enableServiceLinks") is not False:
            fail(f"{name(job)}: service links are on")
        labels = job["spec"]["template"]["metadata"]["labels"]
        services = services_of(docs)
        for service in services.values():
            selector = service["spec"]["selector"]
            if all(labels.get(k) == v for k, v in selector.items()):
                fail(f"{name(job)}: its pod would be selected by Service {name(service)}")
    ok("production: config check hook Jobs run --check-config and no Service selects their pods")
    return 0


# migrations -----------------------------------------------------------------


def config_of(docs, pod):
    """The TOML a pod mounts at /etc/agentsec/<service>.toml."""
    configs = {name(d): d for d in by_kind(docs, "ConfigMap")}
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    svc = binary_of(pod["containers"][0])
    return configs[volume["configMap"]["name"]]["data"][f"{svc}.toml"]


def migrate_on_start(toml):
    found = re.findall(r"^migrate_on_start = (true|false)$", toml, re.M)
    return found[0] == "true" if len(found) == 1 else None


def same_pod_setup(label, migrator, service):
    """The migrating container gets the service's environment and mounts."""
    if [e["name"] for e in migrator.get("env", [])] != [e["name"] for e in service.get("env", [])]:
        fail(f"{label}: its environment differs from the service's")
    if migrator.get("volumeMounts") != service.get("volumeMounts"):
        fail(f"{label}: its mounts differ from the service's")
    if migrator["command"] != service["command"] or migrator["image"] != service["image"]:
        fail(f"{label}: another image or binary than the service's")
    if migrator["args"] != service["args"] + ["--migrate"]:
        fail(f"{label}: args {migrator['args']}")


def assert_migrations(mode, rendered):
    docs = load(rendered)
    jobs = [
        j
        for j in by_kind(docs, "Job")
        if "--migrate" in j["spec"]["template"]["spec"]["containers"][0]["args"]
    ]
    deployments = {binary_of(container_of(d)): d for d in by_kind(docs, "Deployment")}
    migrators = {}
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        svc = binary_of(pod["containers"][0])
        migrators[svc] = pod["containers"][0]
        annotations = job["metadata"].get("annotations", {})
        hook = annotations.get("helm.sh/hook")
        if mode == "hook" and (hook is None or "pre-upgrade" not in hook or int(annotations.get("helm.sh/hook-weight", "0")) <= 0):
            fail(f"{name(job)}: not a pre-upgrade hook after the config check")
        if mode == "job" and (hook is not None or not re.search(r"-migrate-[0-9a-f]{8}$", name(job))):
            fail(f"{name(job)}: expected a plain Job named after its checksum")
        if pod.get("enableServiceLinks") is not False or pod.get("restartPolicy") != "Never":
            fail(f"{name(job)}: service links on or restarts in place")
        deployment = deployments[svc]["spec"]["template"]["spec"]
        if config_of(docs, pod) != config_of(docs, deployment):
            fail(f"{name(job)}: its config differs from the service's")
        labels = job["spec"]["template"]["metadata"]["labels"]
        for service in services_of(docs).values():
            if all(labels.get(k) == v for k, v in service["spec"]["selector"].items()):
                fail(f"{name(job)}: its pod would be selected by Service {name(service)}")
    for svc, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        init = pod.get("initContainers", [])
        if mode == "initContainer":
            if len(init) != 1:
                fail(f"{svc}: expected one init container running --migrate")
                continue
            migrators[svc] = init[0]
        elif init:
            fail(f"{svc}: an init container in mode {mode}")
        migrated_elsewhere = mode != "startup"
        if migrate_on_start(config_of(docs, pod)) is not (not migrated_elsewhere):
            fail(f"{svc}: database.migrate_on_start should be {str(not migrated_elsewhere).lower()}")
        if migrated_elsewhere and svc not in migrators:
            fail(f"{svc}: nothing runs --migrate for it")
        if svc in migrators:
            same_pod_setup(f"{svc} migrator", migrators[svc], container_of(deployment))
    ok(
        f"migrations {mode}: "
        + ("each replica migrates at start" if mode == "startup" else "--migrate with the service's config, env and mounts; the services only check")
    )
    return 0


def migrate_binaries(bin_dir):
    """Each binary's `--migrate` creates its SQLite database and exits 0,
    and again (nothing pending) on the migrated one."""
    bin_dir = Path(bin_dir).resolve()
    for svc in SERVICES:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / f"{svc}.db"
            env = {
                "PATH": os.environ.get("PATH", ""),
                "AGENTSEC_DATABASE__URL": f"sqlite://{db}?mode=rwc",
                "AGENTSEC_TELEMETRY__LOG_FILTER": "warn",
            }
            if svc in ("policy-svc", "audit-svc"):
                # Required settings; --migrate loads the whole config.
                env["AGENTSEC_ADMIN__JWKS_URI"] = "http://identity.invalid/jwks.json"
                env["AGENTSEC_ADMIN__ISSUER"] = "http://identity.invalid"
            for attempt in ("fresh", "migrated"):
                done = subprocess.run(
                    [str(Path(bin_dir) / svc), "--migrate"],
                    env=env, cwd=tmp, capture_output=True, text=True, timeout=60,
                )
                if done.returncode != 0:
                    fail(f"{svc} --migrate on a {attempt} SQLite database: exit {done.returncode}: {done.stderr.strip()[-300:]}")
                    break
            else:
                if not db.is_file():
                    fail(f"{svc} --migrate created no database")
                else:
                    ok(f"{svc} --migrate migrates a fresh SQLite database and exits 0, also when nothing is pending")
    return 0


# the Dockerfile -------------------------------------------------------------


def dockerfile():
    text = (REPO / "deploy/Dockerfile").read_text()
    packages = set(re.findall(r"-p\s+([\w-]+)", text))
    binaries = set(re.findall(r"target/release/([\w-]+)", text))
    workspace = {}
    for manifest in REPO.glob("*/Cargo.toml"):
        cargo = manifest.read_text()
        package = re.search(r'^\[package\]\s*\nname\s*=\s*"([^"]+)"', cargo, re.M)
        if not package:
            continue
        bins = re.findall(r'^\[\[bin\]\]\s*\nname\s*=\s*"([^"]+)"', cargo, re.M)
        if not bins and (manifest.parent / "src/main.rs").exists():
            bins = [package.group(1)]
        workspace[package.group(1)] = bins
    for package in sorted(packages):
        if package in workspace:
            ok(f"Dockerfile builds -p {package}: a workspace package")
        else:
            fail(f"Dockerfile builds -p {package}: no such package in the workspace")
    built = {b for p in packages for b in workspace.get(p, [])}
    for binary in sorted(binaries):
        if binary in built:
            ok(f"Dockerfile copies {binary}: a binary of the packages it builds")
        else:
            fail(f"Dockerfile copies {binary}: not a binary of {sorted(packages)}")
    for svc in SERVICES:
        if svc not in binaries:
            fail(f"the image lacks {svc}")
    final_stage = re.split(r"^FROM\s", text, flags=re.M)[-1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, re.M)
    if users[-1:] != ["10001:10001"]:
        fail(f"the runtime stage runs as {users[-1:]}, not 10001:10001 (the chart's runAsUser)")
    ok("the runtime stage runs as uid 10001, the chart's runAsUser")
    for label in ("title", "description", "source", "version", "revision"):
        if f"org.opencontainers.image.{label}=" not in final_stage:
            fail(f"the image has no org.opencontainers.image.{label} label")
    ok("the image carries the OCI labels")
    ignored = (REPO / ".dockerignore").read_text().split()
    for path in (".git", "**/target"):
        if path not in ignored:
            fail(f".dockerignore does not exclude {path}")
    ok(".dockerignore excludes .git and target directories")
    return 0


# AGENTSEC_* names against the binaries --------------------------------------


def env_for(container_env):
    env = {}
    for entry in container_env:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            env[entry["name"]] = STAND_INS.get(entry["name"], SECRET_STAND_IN)
        else:
            fail(f"{entry['name']}: a value source this check cannot stand in for")
    return env


def run_check_config(binary, config_text, env):
    """`binary --config <config_text> --check-config` with the image's
    AGENTSEC_* variables (deploy/Dockerfile ENV), then `env`, and PATH/HOME:
    (exit code, stderr, the printed config or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "service.toml"
        config.write_text(config_text)
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
        result = subprocess.run(
            [str(binary), "--config", str(config), "--check-config"],
            env={**base, **image_env(), **env},
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=60,
        )
    try:
        shown = json.loads(result.stdout) if result.returncode == 0 else None
    except json.JSONDecodeError:
        shown = None
    return result.returncode, result.stderr.strip(), shown


def expect_accepted(binary, config_text, env, label, port):
    """The service loads the config and `env`, and listens on `port`."""
    code, stderr, shown = run_check_config(binary, config_text, env)
    names = sorted(n for n in env if n.startswith("AGENTSEC_"))
    if code != 0:
        fail(f"{label}: {binary.name} --check-config exit {code}: {stderr}")
        return
    listen = ((shown or {}).get("server") or {}).get("listen")
    if listen != f"0.0.0.0:{port}":
        fail(f"{label}: {binary.name} would listen on {listen}, not 0.0.0.0:{port}")
        return
    ok(f"{label}: {binary.name} --check-config accepts {names}, listens on {listen}")


def env_check(bin_dir, rendered_files):
    bin_dir = Path(bin_dir).resolve()
    for svc in SERVICES:
        if not (bin_dir / svc).is_file():
            fail(f"{bin_dir / svc} is missing (build the workspace binaries first)")
            return 1
    # The check means something only if an unknown name is refused.
    for svc in SERVICES:
        code, stderr, _ = run_check_config(bin_dir / svc, "", {"AGENTSEC_NO_SUCH_SECTION__KEY": "1"})
        if code != 0 and "no_such_section" in stderr:
            ok(f"{svc} refuses the unknown AGENTSEC_NO_SUCH_SECTION__KEY, naming it")
        else:
            fail(f"{svc} did not refuse AGENTSEC_NO_SUCH_SECTION__KEY by name (exit {code}): the check proves nothing")
    for rendered in rendered_files:
        docs = load(rendered)
        configs = {name(d): d for d in by_kind(docs, "ConfigMap")}
        workloads = by_kind(docs, "Deployment") + [
            {"metadata": j["metadata"], "spec": j["spec"]} for j in by_kind(docs, "Job")
        ]
        for workload in workloads:
            pod = workload["spec"]["template"]["spec"]
            container = pod["containers"][0]
            svc = binary_of(container)
            volume = next(v for v in pod["volumes"] if v["name"] == "config")
            config = configs[volume["configMap"]["name"]]["data"][f"{svc}.toml"]
            env = env_for(container.get("env", []))
            port = next(
                (p["containerPort"] for p in container.get("ports", [])),
                int(env.get("AGENTSEC_SERVER__LISTEN", ":0").rsplit(":", 1)[1]),
            )
            expect_accepted(bin_dir / svc, config, env, f"{Path(rendered).name} {name(workload)}", port)
    compose = yaml.safe_load((REPO / "deploy/compose.yaml").read_text())
    for service_name, service in compose["services"].items():
        command = service.get("command") or []
        if not command or command[0] not in SERVICES:
            continue
        env = {}
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            value = re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", SECRET_STAND_IN, value)
            # ${NAME:-default}: what compose gives when NAME is not set.
            value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
            env[key] = value
        config = (REPO / "deploy/config" / f"{command[0]}.toml").read_text()
        port = int(str(service["ports"][0]).rsplit(":", 1)[1])
        expect_accepted(bin_dir / command[0], config, env, f"compose.yaml {service_name}", port)
        # The healthcheck asks the image's agentctl for the readiness of
        # this service's API on its own port.
        probe = (service.get("healthcheck") or {}).get("test") or []
        wanted = ["CMD", "agentctl", "health", f"http://127.0.0.1:{port}", "--service", GRPC_NAMES[command[0]]]
        if probe != wanted:
            fail(f"compose.yaml {service_name}: healthcheck {probe}, expected {wanted}")
        ok(f"compose.yaml {service_name}: healthcheck `agentctl health` on its readiness name")
    return 0


# examples -------------------------------------------------------------------


def walk(value):
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def examples():
    base = REPO / "deploy/examples"
    envoy = yaml.safe_load((base / "envoy-ext-authz.yaml").read_text())
    filters = [
        node
        for node in walk(envoy)
        if node.get("name") == "envoy.filters.http.ext_authz"
    ]
    if len(filters) != 1:
        fail("envoy-ext-authz.yaml: expected one ext_authz filter")
    else:
        config = filters[0]["typed_config"]
        wanted = {
            "transport_api_version V3": config.get("transport_api_version") == "V3",
            "failure_mode_allow false": config.get("failure_mode_allow") is False,
            "with_request_body (MCP tools/call)": "with_request_body" in config,
            "grpc_service to a cluster": "envoy_grpc" in config.get("grpc_service", {}),
        }
        for what, good in wanted.items():
            if not good:
                fail(f"envoy-ext-authz.yaml: {what}")
        ok("envoy-ext-authz.yaml: ext_authz over gRPC (V3), fail closed, request body forwarded")
    clusters = [node for node in walk(envoy) if "load_assignment" in node]
    if not any("http2_protocol_options" in str(c) for c in clusters):
        fail("envoy-ext-authz.yaml: the policy-svc cluster must speak HTTP/2")
    docs = load(base / "istio-ext-authz.yaml")
    kinds = {(d["apiVersion"], d["kind"]) for d in docs}
    policy = [d for d in docs if d["kind"] == "AuthorizationPolicy"]
    if not policy or policy[0]["spec"].get("action") != "CUSTOM":
        fail("istio-ext-authz.yaml: no AuthorizationPolicy with action CUSTOM")
    if any(d["kind"] in ("ConfigMap", "IstioOperator") for d in docs):
        fail("istio-ext-authz.yaml: the mesh config belongs in istio-mesh-config.yaml, merged, not applied whole")
    mesh = yaml.safe_load((base / "istio-mesh-config.yaml").read_text())
    providers = {
        p.get("name"): p.get("envoyExtAuthzGrpc")
        for p in mesh.get("meshConfig", {}).get("extensionProviders", [])
    }
    provider = policy[0]["spec"].get("provider", {}).get("name") if policy else None
    grpc = providers.get(provider)
    if not grpc:
        fail(f"istio-mesh-config.yaml: no envoyExtAuthzGrpc provider named {provider}")
    elif grpc.get("failOpen") is not False or grpc.get("port") != 7402:
        fail("istio-mesh-config.yaml: the provider must fail closed and reach policy-svc on 7402")
    ok(f"istio-ext-authz.yaml: {sorted(k for _, k in kinds)}, CUSTOM action to the envoyExtAuthzGrpc provider of istio-mesh-config.yaml")
    return 0


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    command, args = argv[0], argv[1:]
    if command == "manifests":
        manifests(*args)
    elif command == "assert-default":
        assert_default(*args)
    elif command == "assert-production":
        assert_production(*args)
    elif command == "assert-migrations":
        assert_migrations(*args)
    elif command == "migrate":
        migrate_binaries(*args)
    elif command == "dockerfile":
        dockerfile()
    elif command == "env":
        env_check(args[0], args[1:])
    elif command == "examples":
        examples()
    else:
        print(__doc__)
        return 2
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

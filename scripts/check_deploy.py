#!/usr/bin/env python3
"""Consistency checks of the deployment files that no schema catches, run by scripts/check-deploy.sh.

Usage: check_deploy.py RENDERED_DIR...   (each holding the `helm template` output of one values set as all.yaml)

Checks:
- Dockerfile: every workspace member's manifest is copied into the dependency layer and gets a stub, and the four
  service binaries are built.
- compose: each service's HTTP_ADDR port matches the nginx upstreams and Prometheus targets; every env file exists;
  the Grafana provisioning points at the mounted dashboard.
- dashboard: valid JSON with a panel query for every required metric of every service.
- rendered chart: Services select the pods of a Deployment; Ingress, HPA, ServiceMonitor and PDB point at objects
  that exist; every Secret and ConfigMap key a Deployment reads exists (or comes from an operator); the
  operator-managed clusters (CloudNativePG Cluster, RabbitmqCluster) and ServiceMonitors carry the fields their
  CRDs require (no schema for them ships offline).

Prints one line per failed check and a summary; exits 1 when any check failed.
"""

import json
import pathlib
import re
import sys
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SERVICES = {"order": ("order-svc", 8001), "payment": ("payment-svc", 8002), "stock": ("stock-svc", 8003),
            "coordinator": ("coordinator", 8004)}
DASHBOARD_METRICS = ["{s}_http_requests_total", "{s}_http_request_duration_seconds", "{s}_amqp_consumed_total",
                     "{s}_amqp_published_total", "{s}_amqp_dead_lettered_total"]
# Metrics of one service that the dashboard must show as well.
DASHBOARD_SERVICE_METRICS = ["coordinator_saga_transitions_total", "coordinator_saga_retries_total",
                             "order_checkout_resends_total"]
# Secrets made by the operators, not by the chart; the keys the chart reads from them.
OPERATOR_SECRETS = {"-app": {"username", "password"}, "-default-user": {"username", "password"}}

failures = []
passed = 0


def check(condition, message):
    global passed
    if condition:
        passed += 1
    else:
        failures.append(message)


def check_dockerfile():
    dockerfile = (ROOT / "Dockerfile").read_text()
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    stubs = arg_list(dockerfile, "CRATES")
    binaries = arg_list(dockerfile, "BINARIES")
    for member in members:
        check(f"COPY {member}/Cargo.toml {member}/" in dockerfile,
              f"Dockerfile: workspace member {member} is not copied into the dependency layer")
        check(member in stubs, f"Dockerfile: workspace member {member} gets no stub source")
    for binary, _ in SERVICES.values():
        check(binary in binaries, f"Dockerfile: binary {binary} is not built")
    check("for crate in $CRATES" in dockerfile and "find $CRATES" in dockerfile,
          "Dockerfile: the stub loop or the touch step does not use $CRATES")


def arg_list(dockerfile, name):
    """The words of `ARG NAME="..."` in the Dockerfile."""
    match = re.search(rf'^ARG {name}="([^"]*)"', dockerfile, re.MULTILINE)
    return match.group(1).split() if match else []


def env_file(path):
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def check_compose():
    compose_dir = ROOT / "compose"
    compose = yaml.safe_load((compose_dir / "docker-compose.yml").read_text())
    nginx = (compose_dir / "nginx.conf").read_text()
    prometheus = yaml.safe_load((compose_dir / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    for name, (binary, port) in SERVICES.items():
        service = compose["services"].get(binary)
        check(service is not None, f"compose: service {binary} is missing")
        if service is None:
            continue
        check(service.get("command") == [binary], f"compose: {binary} does not run its binary")
        env = {}
        for file in service.get("env_file", []):
            path = compose_dir / file
            check(path.is_file(), f"compose: env file {file} of {binary} does not exist")
            if path.is_file():
                env.update(env_file(path))
        check(env.get("HTTP_ADDR") == f"0.0.0.0:{port}", f"compose: {binary} must listen on 0.0.0.0:{port}")
        check(env.get("DATABASE_URL", "").startswith("postgres://") and env.get("AMQP_URL", "").startswith("amqp://"),
              f"compose: {binary} lacks DATABASE_URL or AMQP_URL")
        check(f"{binary}:{port}" in targets, f"compose: Prometheus does not scrape {binary}:{port}")
        if name != "coordinator":
            check(f"server {binary}:{port};" in nginx, f"compose: nginx has no upstream {binary}:{port}")
            check(f"location /{'orders' if name == 'order' else name}/" in nginx,
                  f"compose: nginx does not route the /{name} paths")
    grafana = compose["services"]["grafana"]
    check(any(v.startswith("../charts/checkout/dashboards:") for v in grafana["volumes"]),
          "compose: Grafana does not mount the chart's dashboards")
    provider = yaml.safe_load((compose_dir / "grafana/provisioning/dashboards/checkout.yml").read_text())
    check(provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards",
          "compose: the Grafana dashboard provider does not read the mounted folder")


def check_dashboard():
    dashboard = json.loads((ROOT / "charts/checkout/dashboards/checkout.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for service in SERVICES:
        for metric in DASHBOARD_METRICS:
            name = metric.format(s=service)
            check(name in exprs, f"dashboard: no panel shows {name}")
    for name in DASHBOARD_SERVICE_METRICS:
        check(name in exprs, f"dashboard: no panel shows {name}")


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_rendered(directory):
    docs = [d for d in yaml.safe_load_all((directory / "all.yaml").read_text()) if d]
    where = directory.name
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    deployments = by_kind.get("Deployment", {})
    services = by_kind.get("Service", {})
    secrets = by_kind.get("Secret", {})
    configmaps = by_kind.get("ConfigMap", {})
    check(len(deployments) == 4, f"{where}: expected 4 Deployments, got {len(deployments)}")

    pod_labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    for name, d in deployments.items():
        check(labels_match(d["spec"]["selector"]["matchLabels"], pod_labels[name]),
              f"{where}: Deployment {name} does not select its own pods")
        container = d["spec"]["template"]["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            check(container.get(probe, {}).get("httpGet", {}).get("path") == "/health",
                  f"{where}: Deployment {name} has no {probe} on /health")
        env_names = [e["name"] for e in container.get("env", [])]
        for required in ("HTTP_ADDR", "DATABASE_URL", "AMQP_URL"):
            check(required in env_names, f"{where}: Deployment {name} does not set {required}")
        # $(VAR) references must name a variable defined earlier in the list, or Kubernetes leaves them verbatim.
        for i, e in enumerate(container.get("env", [])):
            for ref in re.findall(r"\$\((\w+)\)", e.get("value", "")):
                check(ref in env_names[:i], f"{where}: {name} env {e['name']} uses $({ref}) before it is defined")
        for e in container.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                check_secret_key(where, name, ref["name"], ref["key"], secrets)
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                check(source["configMapRef"]["name"] in configmaps,
                      f"{where}: {name} reads ConfigMap {source['configMapRef']['name']}, which is not rendered")

    for name, s in services.items():
        targets = [d for d, labels in pod_labels.items() if labels_match(s["spec"]["selector"], labels)]
        check(len(targets) == 1, f"{where}: Service {name} selects {len(targets)} Deployments instead of 1")
        for port in s["spec"]["ports"]:
            if targets:
                container = deployments[targets[0]]["spec"]["template"]["spec"]["containers"][0]
                named = {p["name"]: p["containerPort"] for p in container["ports"]}
                check(port["targetPort"] in named, f"{where}: Service {name} targets unknown port {port['targetPort']}")
                check(named.get(port["targetPort"]) == port["port"],
                      f"{where}: Service {name} port {port['port']} differs from the container port")

    for name, ing in by_kind.get("Ingress", {}).items():
        paths = {}
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                backend = p["backend"]["service"]
                paths[p["path"]] = backend
                check(backend["name"] in services, f"{where}: Ingress path {p['path']} points at a missing Service")
                if backend["name"] in services:
                    ports = [x["port"] for x in services[backend["name"]]["spec"]["ports"]]
                    check(backend["port"]["number"] in ports, f"{where}: Ingress path {p['path']} uses a wrong port")
        check(set(paths) == {"/orders", "/payment", "/stock"}, f"{where}: Ingress routes {sorted(paths)}")
        check(ing["spec"].get("ingressClassName") == "nginx", f"{where}: Ingress class is not nginx")

    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        check(hpa["spec"]["scaleTargetRef"]["name"] in deployments, f"{where}: HPA {name} targets a missing Deployment")
        check(hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], f"{where}: HPA {name} min > max")
    if by_kind.get("HorizontalPodAutoscaler"):
        for name, d in deployments.items():
            check("replicas" not in d["spec"], f"{where}: Deployment {name} sets replicas although an HPA owns them")
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        matched = [d for d, labels in pod_labels.items() if labels_match(pdb["spec"]["selector"]["matchLabels"], labels)]
        check(len(matched) == 1, f"{where}: PDB {name} selects {len(matched)} Deployments")
    for name, sm in by_kind.get("ServiceMonitor", {}).items():
        check(sm["apiVersion"] == "monitoring.coreos.com/v1", f"{where}: ServiceMonitor {name} has a wrong apiVersion")
        matched = [s for s in services.values()
                   if labels_match(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        check(len(matched) == 1, f"{where}: ServiceMonitor {name} selects {len(matched)} Services")
        for endpoint in sm["spec"]["endpoints"]:
            check(endpoint.get("path") == "/metrics", f"{where}: ServiceMonitor {name} does not scrape /metrics")
            check(any(endpoint.get("port") == p["name"] for s in matched for p in s["spec"]["ports"]),
                  f"{where}: ServiceMonitor {name} names a port its Service lacks")
    for name, cluster in by_kind.get("Cluster", {}).items():
        spec = cluster["spec"]
        check(cluster["apiVersion"] == "postgresql.cnpg.io/v1", f"{where}: Cluster {name} has a wrong apiVersion")
        check(isinstance(spec.get("instances"), int) and spec["instances"] >= 1, f"{where}: Cluster {name} instances")
        check(bool(spec.get("storage", {}).get("size")), f"{where}: Cluster {name} has no storage size")
        check(all(isinstance(v, str) for v in spec.get("postgresql", {}).get("parameters", {}).values()),
              f"{where}: Cluster {name} parameters must be strings")
        check("CREATEDB" in " ".join(spec["bootstrap"]["initdb"].get("postInitSQL", [])),
              f"{where}: Cluster {name}: the app user cannot create the services' databases")
    for name, rmq in by_kind.get("RabbitmqCluster", {}).items():
        check(rmq["apiVersion"] == "rabbitmq.com/v1beta1", f"{where}: RabbitmqCluster {name} has a wrong apiVersion")
        check(isinstance(rmq["spec"].get("replicas"), int) and rmq["spec"]["replicas"] >= 1,
              f"{where}: RabbitmqCluster {name} replicas")
    dashboards = [c for c in configmaps.values() if "checkout.json" in c.get("data", {})]
    for c in dashboards:
        json.loads(c["data"]["checkout.json"])
        check(c["metadata"]["labels"].get("grafana_dashboard") == "1", f"{where}: dashboard ConfigMap lacks its label")
    return by_kind


def check_secret_key(where, deployment, secret, key, secrets):
    for suffix, keys in OPERATOR_SECRETS.items():
        if secret.endswith(suffix) and secret not in secrets:
            check(key in keys, f"{where}: {deployment} reads key {key} that operator Secret {secret} does not have")
            return
    if secret not in secrets:
        # An existingSecret the user manages: nothing to compare with.
        return
    data = {**secrets[secret].get("stringData", {}), **secrets[secret].get("data", {})}
    check(key in data, f"{where}: {deployment} reads key {key} missing from Secret {secret}")


def main():
    check_dockerfile()
    check_compose()
    check_dashboard()
    for arg in sys.argv[1:]:
        check_rendered(pathlib.Path(arg))
    for failure in failures:
        print(f"FAIL {failure}")
    print(f"deployment consistency: {passed} checks held, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Consistency checks of the deployment files that no schema catches, run by scripts/check-deploy.sh.

Usage: check_deploy.py RENDERED_DIR...   (each holding the `helm template` output of one values set as all.yaml)
       check_deploy.py --docker-context DEST   (replicates the Docker build context, see docker_context below)

Checks:
- Dockerfile: every workspace member's manifest is copied into the dependency layer and gets a stub, and the four
  service binaries are built.
- compose: each service's HTTP_ADDR port matches the nginx upstreams and the names Prometheus discovers (DNS, so
  every replica); every env file exists; the Grafana provisioning points at the mounted dashboard; the secrets are
  required (${VAR:?...}, listed empty in .env.example, .env git-ignored) and no default password is left; only the
  gateway is published, profile services on the loopback only; every service has SHUTDOWN_TIMEOUT_MS and a
  stop_grace_period longer than it.
- dashboard: valid JSON with a panel query for every required metric of every service.
- Dockerfile and rust-toolchain.toml: the builder image carries the pinned toolchain.
- values.schema.json: declares every key of values.yaml and values-production.yaml.
- high-availability defaults of values.yaml: 2 replicas of every service, a PodDisruptionBudget, a preStop sleep,
  quorum queues and a three-node RabbitmqCluster.
- rendered chart: Services select the pods of a Deployment; Ingress, HPA, ServiceMonitor and PDB point at objects
  that exist; every Secret and ConfigMap key a Deployment reads exists (or comes from an operator); the
  operator-managed clusters (CloudNativePG Cluster, ScheduledBackup, RabbitmqCluster) and ServiceMonitors carry
  the fields their CRDs require (no schema for them ships offline); the Cluster survives helm uninstall;
  readiness and startup probe /health, liveness an endpoint that does not touch the database; graceful shutdown:
  every Deployment runs 2 replicas or more (unless an HPA owns the count), is covered by one PDB letting at most
  one pod go, sleeps in a preStop hook and has a terminationGracePeriodSeconds above that sleep plus the
  ConfigMap's SHUTDOWN_TIMEOUT_MS; quorum queues (AMQP_QUORUM_QUEUES) and a RabbitmqCluster of 3 nodes or more.
- per-service credentials (postgresql.operator.perServiceRoles, rabbitmq.perServiceUsers): each Deployment's
  DATABASE_URL and AMQP_URL are composed from its own basic-auth Secret, whose username is the service's role /
  broker user; the Cluster's managed roles log in without superuser, createdb, createrole, replication or
  bypassrls; each Database (kept on uninstall) is owned by the role of the service using it; the pg_hba lines,
  evaluated first-match, let each role reach only its database and `postgres`; each Permission's regexes match
  exactly the exchanges and queues that service needs (AMQP_USE below, derived from the code, and itself checked
  against the queue constants each service's sources name).
- NetworkPolicies, evaluated like Kubernetes does for sample pods: the ingress controller reaches order, payment
  and stock but not the coordinator; each service reaches the services whose *_URL its config.rs reads (and no
  other), DNS, PostgreSQL and RabbitMQ; other pods reach nothing.
- the helm test pod: a test hook whose script runs the checkout steps against the Services; the script is run
  with curl against a stand-in of the three services that follows their documented answers.

Prints one line per failed check and a summary; exits 1 when any check failed.
"""

import json
import os
import pathlib
import re
import shutil
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
                             "order_checkout_resends_total", "coordinator_saga_unfinished", "coordinator_saga_stuck",
                             "coordinator_saga_needs_attention", "coordinator_dead_letter_depth",
                             "coordinator_saga_pruned_total"]
# The alerts compose/alerts.yml and the chart's PrometheusRule must both define.
ALERTS = {"SagasStuck", "SagasNeedAttention", "DeadLettersWaiting", "CoordinatorDown"}
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


# The secrets compose must demand (${VAR:?...}) instead of defaulting, and literal defaults that must not return.
COMPOSE_SECRETS = ["POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD"]
DEFAULT_SECRETS = ["guest:guest", "postgres:postgres@", "change-me", "ADMIN_PASSWORD: admin", "PASSWORD=postgres"]


def check_compose():
    compose_dir = ROOT / "compose"
    text = (compose_dir / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    nginx = (compose_dir / "nginx.conf").read_text()
    prometheus = yaml.safe_load((compose_dir / "prometheus.yml").read_text())
    discovered = {}
    for job in prometheus["scrape_configs"]:
        check("static_configs" not in job, f"compose: Prometheus job {job['job_name']} has static targets "
                                           "(one address per service misses replicas; use dns_sd_configs)")
        for sd in job.get("dns_sd_configs", []):
            for dns_name in sd["names"]:
                discovered[dns_name] = sd.get("port")
    example = env_file(compose_dir / ".env.example")
    for secret in COMPOSE_SECRETS:
        check(re.search(r"\$\{" + secret + r":\?[^}]+\}", text) is not None,
              f"compose: {secret} is not required with ${{{secret}:?...}}")
        check(secret in example and example[secret] == "",
              f"compose: .env.example must list {secret}, empty (no shared default)")
    for path in [compose_dir / "docker-compose.yml", *sorted((compose_dir / "env").glob("*.env"))]:
        content = path.read_text()
        for literal in DEFAULT_SECRETS:
            check(literal not in content, f"compose: {path.name} contains the default secret {literal!r}")
    gitignore = compose_dir / ".gitignore"
    check(gitignore.is_file() and ".env" in gitignore.read_text().split(), "compose: compose/.env is not git-ignored")
    for name, service in compose["services"].items():
        ports = [str(p) for p in service.get("ports", [])]
        if name == "gateway":
            check(len(ports) == 1 and ports[0].endswith(":8000"), "compose: the gateway must publish port 8000")
        elif not service.get("profiles"):
            check(not ports, f"compose: {name} publishes {ports}; by default only the gateway is published")
        else:
            check(all(p.startswith("127.0.0.1:") for p in ports),
                  f"compose: {name} (profile {service['profiles']}) publishes {ports} beyond the host's loopback")
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
        env.update(service.get("environment") or {})
        check(env.get("HTTP_ADDR") == f"0.0.0.0:{port}", f"compose: {binary} must listen on 0.0.0.0:{port}")
        check(env.get("DATABASE_URL", "").startswith("postgres://") and env.get("AMQP_URL", "").startswith("amqp://"),
              f"compose: {binary} lacks DATABASE_URL or AMQP_URL")
        check("${POSTGRES_PASSWORD" in env.get("DATABASE_URL", "") and "${RABBITMQ_PASSWORD" in env.get("AMQP_URL", ""),
              f"compose: {binary} does not take its passwords from POSTGRES_PASSWORD and RABBITMQ_PASSWORD")
        check(discovered.get(binary) == port, f"compose: Prometheus does not discover {binary} on port {port}")
        if name == "coordinator":
            check(env.get("ADMIN_TOKEN", "").startswith("${ADMIN_TOKEN"), "compose: the coordinator's ADMIN_TOKEN")
        else:
            check(f"server {binary}:{port};" in nginx, f"compose: nginx has no upstream {binary}:{port}")
            check(f"location /{'orders' if name == 'order' else name}/" in nginx,
                  f"compose: nginx does not route the /{name} paths")
        check_compose_stop(binary, service, env)
    grafana = compose["services"]["grafana"]
    check(any(v.startswith("../charts/checkout/dashboards:") for v in grafana["volumes"]),
          "compose: Grafana does not mount the chart's dashboards")
    check("/etc/prometheus/alerts.yml" in prometheus.get("rule_files", []),
          "compose: Prometheus does not load /etc/prometheus/alerts.yml")
    check("./alerts.yml:/etc/prometheus/alerts.yml:ro" in compose["services"]["prometheus"]["volumes"],
          "compose: Prometheus does not mount compose/alerts.yml")
    provider = yaml.safe_load((compose_dir / "grafana/provisioning/dashboards/checkout.yml").read_text())
    check(provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards",
          "compose: the Grafana dashboard provider does not read the mounted folder")


def duration_seconds(text):
    """Seconds in a compose duration such as `15s`, `1m30s` or `500ms`; None if it is not one."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        return None
    return sum(float(n) * units[u] for n, u in parts)


def check_compose_stop(binary, service, env):
    """The service may finish its shutdown (SHUTDOWN_TIMEOUT_MS) before Docker kills it (stop_grace_period)."""
    timeout = env.get("SHUTDOWN_TIMEOUT_MS", "")
    check(timeout.isdigit() and int(timeout) > 0, f"compose: {binary} has no SHUTDOWN_TIMEOUT_MS")
    grace = duration_seconds(service.get("stop_grace_period", ""))
    check(grace is not None and timeout.isdigit() and grace > int(timeout) / 1000,
          f"compose: {binary}'s stop_grace_period ({service.get('stop_grace_period')}) is not longer than its "
          f"SHUTDOWN_TIMEOUT_MS ({timeout} ms): Docker would kill it while it finishes its work")


def check_ha_defaults():
    """values.yaml's defaults survive the loss of any one pod or broker node."""
    values = yaml.safe_load((ROOT / "charts/checkout/values.yaml").read_text())
    for name, service in values["services"].items():
        check(service.get("replicas") == 2, f"values.yaml: services.{name}.replicas is not 2")
    pdb = values.get("podDisruptionBudget", {})
    check(pdb.get("enabled") is True and pdb.get("maxUnavailable") == 1,
          "values.yaml: podDisruptionBudget must be enabled with maxUnavailable 1")
    shutdown = values.get("shutdown", {})
    check(shutdown.get("preStopSeconds", 0) > 0, "values.yaml: shutdown.preStopSeconds must be above 0")
    check(shutdown.get("timeoutMs") == 10000, "values.yaml: shutdown.timeoutMs must be the services' default, 10000")
    check(values["rabbitmq"].get("quorumQueues") is True, "values.yaml: rabbitmq.quorumQueues is not true")
    check(values["rabbitmq"]["operator"].get("replicas") == 3, "values.yaml: rabbitmq.operator.replicas is not 3")


def check_graceful_shutdown(where, by_kind, deployments, configmaps, pod_labels):
    """Rolling restarts and evictions cost nothing: enough replicas, a PDB, time to leave the endpoints and to
    finish the work in flight."""
    hpa = bool(by_kind.get("HorizontalPodAutoscaler"))
    pdbs = by_kind.get("PodDisruptionBudget", {})
    for name, d in deployments.items():
        if not hpa:
            check(d["spec"].get("replicas", 1) >= 2, f"{where}: Deployment {name} runs fewer than 2 replicas")
        covering = [p for p in pdbs.values() if labels_match(p["spec"]["selector"]["matchLabels"], pod_labels[name])]
        check(len(covering) == 1 and (covering[0]["spec"].get("maxUnavailable") == 1 or
                                      covering[0]["spec"].get("minAvailable") == 1),
              f"{where}: Deployment {name} has no PodDisruptionBudget with maxUnavailable 1 or minAvailable 1")
        spec = d["spec"]["template"]["spec"]
        container = spec["containers"][0]
        command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        sleep = int(command[1]) if len(command) == 2 and command[0] == "sleep" and command[1].isdigit() else 0
        check(sleep > 0, f"{where}: Deployment {name} has no preStop sleep (the endpoints would still send it "
                         "requests after SIGTERM)")
        timeout = None
        for source in container.get("envFrom", []):
            data = configmaps.get(source.get("configMapRef", {}).get("name"), {}).get("data", {})
            timeout = data.get("SHUTDOWN_TIMEOUT_MS", timeout)
        check(timeout is not None and str(timeout).isdigit(), f"{where}: {name} gets no SHUTDOWN_TIMEOUT_MS")
        if timeout is not None and str(timeout).isdigit():
            grace = spec.get("terminationGracePeriodSeconds", 30)
            check(grace > sleep + int(timeout) / 1000,
                  f"{where}: Deployment {name}: terminationGracePeriodSeconds {grace} is not above the preStop "
                  f"sleep ({sleep} s) plus SHUTDOWN_TIMEOUT_MS ({timeout} ms)")
    for name, c in configmaps.items():
        if "AMQP_QUORUM_QUEUES" in c.get("data", {}):
            check(c["data"]["AMQP_QUORUM_QUEUES"] == "true", f"{where}: ConfigMap {name} turns quorum queues off")
    for name, rmq in by_kind.get("RabbitmqCluster", {}).items():
        check(rmq["spec"].get("replicas", 1) >= 3, f"{where}: RabbitmqCluster {name} has fewer than 3 nodes")


def check_dashboard():
    dashboard = json.loads((ROOT / "charts/checkout/dashboards/checkout.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for service in SERVICES:
        for metric in DASHBOARD_METRICS:
            name = metric.format(s=service)
            check(name in exprs, f"dashboard: no panel shows {name}")
    for name in DASHBOARD_SERVICE_METRICS:
        check(name in exprs, f"dashboard: no panel shows {name}")


def alert_names(groups):
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def check_alerts():
    """compose/alerts.yml and the chart's PrometheusRule name the same alerts, each once, and every alert
    operators are told about; every rule has an expression, a duration and a severity."""
    compose_rules = yaml.safe_load((ROOT / "compose/alerts.yml").read_text())["groups"]
    names = alert_names(compose_rules)
    check(len(names) == len(set(names)) and set(names) == ALERTS, f"compose/alerts.yml: alerts {names}, want {ALERTS}")
    template = (ROOT / "charts/checkout/templates/prometheusrule.yaml").read_text()
    chart_names = re.findall(r"^\s*- alert: (\w+)$", template, re.M)
    check(sorted(chart_names) == sorted(names),
          f"chart PrometheusRule alerts {chart_names} differ from compose/alerts.yml's {names}")
    for group in compose_rules:
        for rule in group["rules"]:
            check(rule.get("expr") and rule.get("for") and rule.get("labels", {}).get("severity"),
                  f"compose/alerts.yml: {rule.get('alert')} lacks expr, for or severity")


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
        for probe in ("readinessProbe", "startupProbe"):
            check(container.get(probe, {}).get("httpGet", {}).get("path") == "/health",
                  f"{where}: Deployment {name} has no {probe} on /health")
        check_liveness(where, name, container)
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
    check_graceful_shutdown(where, by_kind, deployments, configmaps, pod_labels)
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
    clusters = by_kind.get("Cluster", {})
    for name, cluster in clusters.items():
        annotations = cluster["metadata"].get("annotations") or {}
        check(annotations.get("helm.sh/resource-policy") == "keep",
              f"{where}: Cluster {name} would be deleted by helm uninstall (no helm.sh/resource-policy: keep)")
        backup = cluster["spec"].get("backup")
        if backup:
            store = backup.get("barmanObjectStore", {})
            check(re.match(r"^(s3|gs|https?)://\S+", store.get("destinationPath", "")) is not None,
                  f"{where}: Cluster {name} backup has no destinationPath")
            creds = store.get("s3Credentials", {})
            check(creds.get("inheritFromIAMRole") is True or
                  all(creds.get(k, {}).get("name") and creds.get(k, {}).get("key")
                      for k in ("accessKeyId", "secretAccessKey")),
                  f"{where}: Cluster {name} backup has no credentials")
            check(re.match(r"^[1-9][0-9]*[dwm]$", backup.get("retentionPolicy", "")) is not None,
                  f"{where}: Cluster {name} backup retentionPolicy is not <n>d|w|m")
    scheduled = by_kind.get("ScheduledBackup", {})
    for name, sb in scheduled.items():
        check(sb["apiVersion"] == "postgresql.cnpg.io/v1", f"{where}: ScheduledBackup {name} has a wrong apiVersion")
        target = clusters.get(sb["spec"].get("cluster", {}).get("name"))
        check(target is not None, f"{where}: ScheduledBackup {name} names a Cluster that is not rendered")
        check(target is not None and bool(target["spec"].get("backup")),
              f"{where}: ScheduledBackup {name} targets a Cluster without spec.backup")
        check(len(str(sb["spec"].get("schedule", "")).split()) == 6,
              f"{where}: ScheduledBackup {name} schedule must have six fields (seconds first)")
        check(sb["spec"].get("method", "barmanObjectStore") == "barmanObjectStore",
              f"{where}: ScheduledBackup {name} method")
    for name, cluster in clusters.items():
        if cluster["spec"].get("backup"):
            check(any(sb["spec"]["cluster"]["name"] == name for sb in scheduled.values()),
                  f"{where}: Cluster {name} has backups configured but no ScheduledBackup")
    for name, secret in secrets.items():
        if "ADMIN_TOKEN" in secret.get("stringData", {}):
            check(bool(secret["stringData"]["ADMIN_TOKEN"]), f"{where}: Secret {name} has an empty ADMIN_TOKEN")
    check_credentials(where, by_kind)
    check_network_policies(where, by_kind)
    check_test_pod(where, by_kind)
    for name, rule in by_kind.get("PrometheusRule", {}).items():
        check(rule["apiVersion"] == "monitoring.coreos.com/v1", f"{where}: PrometheusRule {name} has a wrong apiVersion")
        check(set(alert_names(rule["spec"]["groups"])) == ALERTS, f"{where}: PrometheusRule {name} lacks alerts")
        coordinator = [n for n, d in deployments.items() if n.endswith("coordinator")]
        for expr in (r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]):
            check(any(f'job="{c}"' in expr and c in services for c in coordinator),
                  f"{where}: PrometheusRule {name}: {expr} does not select the coordinator's Service as its job")
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


def openapi_paths(service):
    document = {"order": "orders"}.get(service, service)
    return set(json.loads((ROOT / f"docs/openapi/{document}.json").read_text())["paths"])


def check_liveness(where, deployment, container):
    """Liveness must not call /health (it checks the database): a path every service answers from memory, or TCP."""
    probe = container.get("livenessProbe", {})
    component = deployment.rsplit("-", 1)[-1]
    if "httpGet" in probe:
        path = probe["httpGet"].get("path")
        check(path not in ("/health", None), f"{where}: Deployment {deployment} liveness calls {path}, which needs the database")
        if component in SERVICES:
            check(path in openapi_paths(component), f"{where}: Deployment {deployment} liveness path {path} is not a route of the service")
        check(path in ("/openapi.json", "/metrics"),
              f"{where}: Deployment {deployment} liveness path {path} is not known to be free of the database")
    else:
        check(probe.get("tcpSocket", {}).get("port") in ("http", SERVICES.get(component, (None, None))[1]),
              f"{where}: Deployment {deployment} has no liveness probe on its HTTP port")


# --- per-service database roles and broker users ---------------------------------------------------------------

def queue_constants():
    """The constants of shared-contracts/src/queues.rs: name -> queue or exchange name."""
    text = (ROOT / "shared-contracts/src/queues.rs").read_text()
    return dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]+)";', text))


Q = queue_constants()
WORK_QUEUES = [Q["COORDINATOR"], Q["STOCK_COMMANDS"], Q["PAYMENT_COMMANDS"], Q["ORDER_OUTCOMES"]]
# What each service does on the broker, from the code (charts/checkout/templates/_helpers.tpl, checkout.amqpPermissions,
# turns the same table into regexes):
# - declares: the queues its startup.rs passes to platform::amqp::Broker::new; declare_topology (platform/src/amqp.rs)
#   declares each with x-dead-letter-exchange checkout.dlx, plus the exchange checkout.dlx and the queue
#   checkout.dead-letters bound to it, on every connection;
# - consumes: the queue its startup.rs hands to platform::amqp::consume (basic.consume), and for the coordinator the
#   basic.get of checkout.dead-letters in coordinator/src/dead_letters.rs (peek and replay);
# - publishes (through the default exchange, queue name as routing key): order-svc/src/store/checkouts.rs,
#   payment-svc/src/messaging.rs and stock-svc/src/messaging.rs send to checkout.coordinator,
#   coordinator/src/messaging.rs to the three participants' queues and dead_letters.rs replays to any work queue;
#   every consumer moves dead letters to checkout.dead-letters (platform/src/amqp.rs, publish_dead_letters).
AMQP_USE = {
    "order": {"declares": [Q["ORDER_OUTCOMES"], Q["COORDINATOR"]], "consumes": [Q["ORDER_OUTCOMES"]],
              "publishes": [Q["COORDINATOR"], Q["DEAD_LETTERS"]]},
    "payment": {"declares": [Q["PAYMENT_COMMANDS"], Q["COORDINATOR"]], "consumes": [Q["PAYMENT_COMMANDS"]],
                "publishes": [Q["COORDINATOR"], Q["DEAD_LETTERS"]]},
    "stock": {"declares": [Q["STOCK_COMMANDS"], Q["COORDINATOR"]], "consumes": [Q["STOCK_COMMANDS"]],
              "publishes": [Q["COORDINATOR"], Q["DEAD_LETTERS"]]},
    "coordinator": {"declares": WORK_QUEUES, "consumes": [Q["COORDINATOR"], Q["DEAD_LETTERS"]],
                    "publishes": WORK_QUEUES + [Q["DEAD_LETTERS"]]},
}
DEFAULT_EXCHANGE = "amq.default"  # RabbitMQ checks the default exchange "" under this name


def expected_permissions(use):
    """The resources each permission must cover, by RabbitMQ's rules (rabbitmq.com/docs/access-control):
    configure: exchange.declare and queue.declare (passive=false) of what declare_topology declares;
    write: basic.publish needs write on the exchange only (the default exchange, so it cannot be narrowed per queue),
      queue.declare with x-dead-letter-exchange needs write on checkout.dlx, queue.bind write on the bound queue;
    read: basic.consume and basic.get the queue; a queue.declare with x-dead-letter-exchange that creates the queue
      needs read on it (whichever declaring service comes first); queue.bind read on the source exchange."""
    dlx, dead = Q["DEAD_LETTER_EXCHANGE"], Q["DEAD_LETTERS"]
    return {
        "configure": set(use["declares"]) | {dlx, dead},
        "write": ({DEFAULT_EXCHANGE} if use["publishes"] else set()) | {dlx, dead},
        "read": set(use["consumes"]) | set(use["declares"]) | {dlx},
    }


def check_amqp_use_against_code():
    """AMQP_USE must name every queue constant a service's sources use, and the queues its startup.rs declares."""
    for name, directory in SERVICE_DIRS.items():
        use = AMQP_USE[name]
        # Outside startup.rs (which declares and consumes), a queue a service names is one it sends to (or, for
        # checkout.dead-letters, reads with basic.get).
        known = set(use["publishes"]) | set(use["consumes"])
        named = set()
        for source in (ROOT / directory / "src").rglob("*.rs"):
            if source.name == "startup.rs":
                continue
            for const in re.findall(r"queues::([A-Z_]+)", source.read_text()):
                named |= set(WORK_QUEUES) if const == "WORK_QUEUES" else {Q.get(const, const)}
        check(named <= known,
              f"check_deploy.py: AMQP_USE[{name}] publishes {sorted(use['publishes'])}, but {directory}/src also "
              f"names {sorted(named - known)}")
        startup = (ROOT / directory / "src/startup.rs").read_text()
        declared = set()
        for const in re.findall(r"queues::([A-Z_]+)", startup):
            declared |= set(WORK_QUEUES) if const == "WORK_QUEUES" else {Q.get(const, const)}
        check(declared == set(use["declares"]) | set(use["consumes"]) - {Q["DEAD_LETTERS"]},
              f"check_deploy.py: AMQP_USE[{name}] declares {sorted(use['declares'])}, {directory}/src/startup.rs "
              f"names {sorted(declared)}")


def regex_covers(regex, universe):
    """The names of universe that a RabbitMQ permission regex grants (RabbitMQ matches with re:run, unanchored)."""
    return {n for n in universe if regex and re.search(regex, n)}


def env_secret(container, variable):
    for e in container.get("env", []):
        if e["name"] == variable:
            return (e.get("valueFrom", {}).get("secretKeyRef") or {})
    return {}


def env_value(container, variable):
    return next((e.get("value", "") for e in container.get("env", []) if e["name"] == variable), "")


def hba_decision(lines, database, role):
    """The method of the first pg_hba line (of type host) matching a TCP connection of role to database, or None
    when none of the chart's lines matches (CloudNativePG's final `host all all all scram-sha-256` then decides)."""
    for line in lines:
        fields = line.split()
        if len(fields) < 5 or fields[0] not in ("host", "hostssl"):
            continue
        databases, users = fields[1].split(","), fields[2].split(",")
        if ("all" in databases or database in databases) and ("all" in users or role in users):
            return fields[4]
    return None


def check_credentials(where, by_kind):
    deployments = by_kind.get("Deployment", {})
    secrets = by_kind.get("Secret", {})
    clusters = by_kind.get("Cluster", {})
    databases = by_kind.get("Database", {})
    users = by_kind.get("User", {})
    permissions = by_kind.get("Permission", {})
    roles = {r["name"]: r for c in clusters.values() for r in (c["spec"].get("managed") or {}).get("roles", [])}
    owners = {d["spec"]["name"]: d for d in databases.values()}
    hba = [line for c in clusters.values() for line in c["spec"].get("postgresql", {}).get("pg_hba", [])]
    check(bool(roles) == bool(databases), f"{where}: managed roles and Database objects come together")

    for name, role in roles.items():
        check(role.get("login") is True and role.get("ensure", "present") == "present",
              f"{where}: role {name} must be present and log in")
        for attribute in ("superuser", "createdb", "createrole", "replication", "bypassrls"):
            check(role.get(attribute) is not True, f"{where}: role {name} has {attribute}")
        secret = secrets.get((role.get("passwordSecret") or {}).get("name"))
        check(secret is not None and secret.get("type") == "kubernetes.io/basic-auth" and
              secret.get("stringData", {}).get("username") == name and bool(secret["stringData"].get("password")),
              f"{where}: role {name} has no rendered basic-auth password Secret with username {name}")
        check(secret is not None and secret["metadata"].get("labels", {}).get("cnpg.io/reload") == "true",
              f"{where}: the password Secret of role {name} lacks cnpg.io/reload (password changes not applied)")
    for name, db in databases.items():
        check(db["apiVersion"] == "postgresql.cnpg.io/v1", f"{where}: Database {name} has a wrong apiVersion")
        check(db["spec"].get("cluster", {}).get("name") in clusters, f"{where}: Database {name} names no rendered Cluster")
        check(db["spec"].get("owner") in roles, f"{where}: Database {name} is owned by {db['spec'].get('owner')}, "
                                                "not a managed role")
        check((db["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep",
              f"{where}: Database {name} would be deleted by helm uninstall")
        check(db["spec"].get("databaseReclaimPolicy", "retain") == "retain",
              f"{where}: Database {name} drops the database when the object goes")

    all_dbs = {d["spec"]["name"] for d in databases.values()} | {"postgres", "app", "template1", "other"}
    used_pg, used_amqp = [], []
    for dname, d in deployments.items():
        component = d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        container = d["spec"]["template"]["spec"]["containers"][0]
        if roles:
            user_ref, password_ref = env_secret(container, "DB_USER"), env_secret(container, "DB_PASSWORD")
            secret = secrets.get(user_ref.get("name"))
            check(secret is not None and user_ref.get("key") == "username" and
                  password_ref == {"name": user_ref.get("name"), "key": "password"},
                  f"{where}: {dname} does not take DB_USER and DB_PASSWORD from one chart-made Secret")
            role = (secret or {}).get("stringData", {}).get("username")
            check(role == component and role in roles and
                  roles[role].get("passwordSecret", {}).get("name") == user_ref.get("name"),
                  f"{where}: {dname} logs in as {role!r} with Secret {user_ref.get('name')}, not as its own role "
                  f"{component}")
            url = env_value(container, "DATABASE_URL")
            match = re.match(r"^postgres://\$\(DB_USER\):\$\(DB_PASSWORD\)@[^/]+/([^/?]+)", url)
            check(match is not None, f"{where}: {dname} DATABASE_URL is not composed from DB_USER and DB_PASSWORD")
            if match:
                db = owners.get(match.group(1))
                check(db is not None and db["spec"]["owner"] == component,
                      f"{where}: database {match.group(1)} of {dname} is not a Database owned by {component}")
                for other in sorted(all_dbs):
                    allowed = other in (match.group(1), "postgres")
                    # No line of the chart's: CloudNativePG's final `host all all all scram-sha-256` admits it.
                    method = hba_decision(hba, other, component)
                    check((method != "reject") == allowed,
                          f"{where}: pg_hba {'refuses' if allowed else 'lets'} role {component} "
                          f"{'' if allowed else 'reach '}database {other}")
            used_pg.append(user_ref.get("name"))
        if users:
            user_ref, password_ref = env_secret(container, "AMQP_USER"), env_secret(container, "AMQP_PASSWORD")
            secret = secrets.get(user_ref.get("name"))
            check(secret is not None and user_ref.get("key") == "username" and
                  password_ref == {"name": user_ref.get("name"), "key": "password"},
                  f"{where}: {dname} does not take AMQP_USER and AMQP_PASSWORD from one chart-made Secret")
            check(re.match(r"^amqps?://\$\(AMQP_USER\):\$\(AMQP_PASSWORD\)@", env_value(container, "AMQP_URL")),
                  f"{where}: {dname} AMQP_URL is not composed from AMQP_USER and AMQP_PASSWORD")
            check((secret or {}).get("stringData", {}).get("username") == component,
                  f"{where}: {dname} connects to the broker as another service's user")
            user = [u for u in users.values()
                    if u["spec"].get("importCredentialsSecret", {}).get("name") == user_ref.get("name")]
            check(len(user) == 1 and user[0]["apiVersion"] == "rabbitmq.com/v1beta1" and
                  user[0]["spec"].get("rabbitmqClusterReference", {}).get("name") in by_kind.get("RabbitmqCluster", {}),
                  f"{where}: {dname}'s broker Secret is imported by {len(user)} Users of a rendered RabbitmqCluster")
            if len(user) == 1:
                check(not user[0]["spec"].get("tags"), f"{where}: the broker user of {dname} has tags (management "
                                                       "or administrator rights)")
                perms = [p for p in permissions.values()
                         if p["spec"].get("userReference", {}).get("name") == user[0]["metadata"]["name"]]
                check(len(perms) == 1, f"{where}: the broker user of {dname} has {len(perms)} Permissions")
                for perm in perms:
                    check(perm["spec"].get("vhost") == "/", f"{where}: Permission of {dname} is not on vhost /")
                    universe = set(Q.values()) | {DEFAULT_EXCHANGE, "amq.topic", "amq.direct", "amq.gen-x",
                                                  "checkout.other", "checkout.coordinator.x", "xcheckout.dlx"}
                    for kind, expected in expected_permissions(AMQP_USE[component]).items():
                        granted = regex_covers(perm["spec"].get("permissions", {}).get(kind, ""), universe)
                        check(granted == expected,
                              f"{where}: {component}'s {kind} permission grants {sorted(granted)}, the code needs "
                              f"{sorted(expected)}")
            used_amqp.append(user_ref.get("name"))
        else:
            ref = env_secret(container, "AMQP_USER")
            if ref and by_kind.get("RabbitmqCluster"):
                check(ref.get("name", "").endswith("-default-user"), f"{where}: {dname} broker credentials")
    for kind, used in (("database", used_pg), ("broker", used_amqp)):
        check(len(set(used)) == len(used), f"{where}: Deployments share {kind} credentials Secrets")


# --- NetworkPolicies ----------------------------------------------------------------------------------------------

URL_VARIABLES = {"ORDER_URL": "order", "PAYMENT_URL": "payment", "STOCK_URL": "stock", "COORDINATOR_URL": "coordinator"}
SERVICE_DIRS = {"order": "order-svc", "payment": "payment-svc", "stock": "stock-svc", "coordinator": "coordinator"}


def call_graph():
    """Which services each service calls over HTTP: the *_URL variables its config.rs reads."""
    graph = {}
    for name, directory in SERVICE_DIRS.items():
        config = (ROOT / directory / "src/config.rs").read_text()
        graph[name] = {URL_VARIABLES[v] for v in re.findall(r'"([A-Z]+_URL)"', config) if v in URL_VARIABLES}
    return graph


def selector_matches(selector, labels):
    """A LabelSelector; an empty one ({}) matches everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod(namespace, labels, ports=()):
    """A sample peer: a pod (namespace, labels, named container ports) or, with namespace None, an outside address."""
    return {"namespace": namespace, "ns_labels": {"kubernetes.io/metadata.name": namespace} if namespace else {},
            "labels": labels, "ports": dict(ports)}


def peer_matches(peer, other, policy_namespace):
    if "ipBlock" in peer:
        return other["namespace"] is None
    if other["namespace"] is None:
        return False
    if "namespaceSelector" in peer:
        ns_ok = selector_matches(peer["namespaceSelector"], other["ns_labels"])
    else:
        ns_ok = other["namespace"] == policy_namespace
    return ns_ok and ("podSelector" not in peer or selector_matches(peer["podSelector"], other["labels"]))


def ports_match(rule_ports, port, protocol, target):
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        value = p.get("port")
        if value is None or value == port or (isinstance(value, str) and target["ports"].get(value) == port):
            return True
        if isinstance(value, int) and p.get("endPort") and value <= port <= p["endPort"]:
            return True
    return False


def policy_allows(policies, namespace, src, dst, port, protocol="TCP"):
    """Whether Kubernetes lets src open port/protocol on dst: dst's ingress policies and src's egress policies."""
    def side(direction, subject, other, target):
        if subject["namespace"] != namespace:
            return True  # pods outside the release's namespace: their own policies are not ours
        selecting = [p for p in policies if direction.capitalize() in p["spec"].get("policyTypes", ["Ingress"])
                     and selector_matches(p["spec"]["podSelector"], subject["labels"])]
        if not selecting:
            return True
        peers_key = "from" if direction == "ingress" else "to"
        for p in selecting:
            for rule in p["spec"].get(direction) or []:
                if not ports_match(rule.get("ports"), port, protocol, target):
                    continue
                peers = rule.get(peers_key)
                if not peers or any(peer_matches(peer, other, namespace) for peer in peers):
                    return True
        return False
    if dst["namespace"] is None:
        return side("egress", src, dst, dst)
    return side("ingress", dst, src, dst) and side("egress", src, dst, dst)


def check_network_policies(where, by_kind):
    policies = list(by_kind.get("NetworkPolicy", {}).values())
    deployments = by_kind.get("Deployment", {})
    check(bool(policies), f"{where}: no NetworkPolicy rendered")
    if not policies:
        return
    namespace = "checkout"
    pods = {}
    for name, d in deployments.items():
        component = d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        container = d["spec"]["template"]["spec"]["containers"][0]
        pods[component] = pod(namespace, d["spec"]["template"]["metadata"]["labels"],
                              [(p["name"], p["containerPort"]) for p in container["ports"]])
        check(any(selector_matches(p["spec"]["podSelector"], pods[component]["labels"]) for p in policies),
              f"{where}: no NetworkPolicy selects the pods of {name}")
    port = {c: SERVICES[c][1] for c in SERVICES}
    ingress_controller = pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx",
                                               "app.kubernetes.io/component": "controller"})
    prometheus = pod("monitoring", {"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"})
    stranger = pod(namespace, {"app": "something-else"})
    other_namespace = pod("default", {"app": "something-else"})
    dns = pod("kube-system", {"k8s-app": "kube-dns"})
    outside = pod(None, {})
    tests = [d for d in by_kind.get("Pod", {}).values()
             if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]
    graph = call_graph()
    for c in SERVICES:
        if c not in pods:
            continue
        dst = pods[c]
        public = c != "coordinator"
        if by_kind.get("Ingress"):
            check(policy_allows(policies, namespace, ingress_controller, dst, port[c]) == public,
                  f"{where}: the ingress controller {'cannot' if public else 'can'} reach {c}")
        check(not policy_allows(policies, namespace, stranger, dst, port[c]),
              f"{where}: any pod in the namespace can reach {c}")
        check(not policy_allows(policies, namespace, other_namespace, dst, port[c]),
              f"{where}: pods of other namespaces can reach {c}")
        for t in tests:
            test_pod = pod(namespace, t["metadata"]["labels"])
            check(policy_allows(policies, namespace, test_pod, dst, port[c]) == public,
                  f"{where}: the helm test pod {'cannot' if public else 'can'} reach {c}")
        if by_kind.get("ServiceMonitor"):
            check(policy_allows(policies, namespace, prometheus, dst, port[c]),
                  f"{where}: Prometheus cannot scrape {c}")
        for caller in SERVICES:
            if caller == c or caller not in pods:
                continue
            expected = c in graph[caller]
            check(policy_allows(policies, namespace, pods[caller], dst, port[c]) == expected,
                  f"{where}: {caller} {'cannot' if expected else 'can'} reach {c} "
                  f"({caller}'s config {'reads' if expected else 'does not read'} {c.upper()}_URL)")
        src = pods[c]
        check(policy_allows(policies, namespace, src, dns, 53, "UDP"), f"{where}: {c} cannot resolve names (DNS)")
        if by_kind.get("Cluster"):
            pg = pod(namespace, {"cnpg.io/cluster": next(iter(by_kind["Cluster"])), "role": "primary"})
            check(policy_allows(policies, namespace, src, pg, 5432), f"{where}: {c} cannot reach PostgreSQL")
        else:
            check(policy_allows(policies, namespace, src, outside, 5432), f"{where}: {c} cannot reach the database")
        if by_kind.get("RabbitmqCluster"):
            rmq = pod(namespace, {"app.kubernetes.io/name": next(iter(by_kind["RabbitmqCluster"]))})
            check(policy_allows(policies, namespace, src, rmq, 5672), f"{where}: {c} cannot reach RabbitMQ")
            check(not policy_allows(policies, namespace, src, outside, 5672), f"{where}: {c} may reach any address on 5672")
        else:
            check(policy_allows(policies, namespace, src, outside, 5672), f"{where}: {c} cannot reach the broker")
        check(not policy_allows(policies, namespace, src, stranger, 22), f"{where}: {c} may reach any pod")


# --- the helm test pod --------------------------------------------------------------------------------------------

TEST_STEPS = ["/payment/create_user", "/payment/add_funds/", "/stock/item/create/", "/stock/add/", "/orders/create/",
              "/orders/addItem/", "/orders/checkout/"]


def check_test_pod(where, by_kind):
    tests = [d for d in by_kind.get("Pod", {}).values()
             if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]
    check(len(tests) == 1, f"{where}: expected one helm test pod, got {len(tests)}")
    services = by_kind.get("Service", {})
    for t in tests:
        container = t["spec"]["containers"][0]
        script = "\n".join(container.get("command", []) + container.get("args", []))
        positions = [script.find(step) for step in TEST_STEPS]
        check(all(p >= 0 for p in positions) and positions == sorted(positions),
              f"{where}: the helm test does not run the checkout steps in order ({', '.join(TEST_STEPS)})")
        check("paid" in script, f"{where}: the helm test does not check that the order is paid")
        check(t["spec"].get("restartPolicy") == "Never", f"{where}: the helm test pod must not restart")
        for e in container.get("env", []):
            match = re.match(r"^http://([^:/]+):(\d+)$", e.get("value", ""))
            if e["name"].endswith("_URL"):
                check(match is not None and match.group(1) in services and
                      int(match.group(2)) in [p["port"] for p in services[match.group(1)]["spec"]["ports"]],
                      f"{where}: the helm test's {e['name']} does not point at a Service port")


def run_test_script(directory):
    """Runs the helm test pod's script with curl against a stand-in of the three services."""
    docs = [d for d in yaml.safe_load_all((directory / "all.yaml").read_text()) if d]
    tests = [d for d in docs if d["kind"] == "Pod" and
             (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]
    if not tests or not shutil.which("curl"):
        check(bool(tests), f"{directory.name}: no helm test pod to run")
        return
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = {"users": {}, "items": {}, "orders": {}}

    class StandIn(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.route("GET")

        def do_POST(self):
            self.route("POST")

        def route(self, method):
            p = self.path.strip("/").split("/")
            u, i, o = state["users"], state["items"], state["orders"]
            try:
                if p == ["health"]:
                    return self.answer(200, {"status": "ok"})
                if method == "POST" and p[:2] == ["payment", "create_user"]:
                    u[str(len(u) + 1)] = 0
                    return self.answer(200, {"user_id": str(len(u))})
                if method == "POST" and p[:2] == ["payment", "add_funds"]:
                    u[p[2]] += int(p[3])
                    return self.answer(200, {"done": True, "user_id": p[2], "credit": u[p[2]]})
                if method == "GET" and p[:2] == ["payment", "find_user"]:
                    return self.answer(200, {"user_id": p[2], "credit": u[p[2]]})
                if method == "POST" and p[:3] == ["stock", "item", "create"]:
                    key = f"item-{len(i) + 1}"
                    i[key] = {"stock": 0, "price": int(p[3])}
                    return self.answer(200, {"item_id": key})
                if method == "POST" and p[:2] == ["stock", "add"]:
                    i[p[2]]["stock"] += int(p[3])
                    return self.answer(200, {"item_id": p[2], **i[p[2]]})
                if method == "GET" and p[:2] == ["stock", "find"]:
                    return self.answer(200, i[p[2]])
                if method == "POST" and p[:2] == ["orders", "create"]:
                    key = f"order-{len(o) + 1}"
                    o[key] = {"user_id": p[2], "items": [], "paid": False}
                    return self.answer(200, {"order_id": key})
                if method == "POST" and p[:2] == ["orders", "addItem"]:
                    o[p[2]]["items"].append([p[3], int(p[4])])
                    total = sum(i[k]["price"] * q for k, q in o[p[2]]["items"])
                    return self.answer(200, {"order_id": p[2], "total_cost": total, "items": o[p[2]]["items"]})
                if method == "POST" and p[:2] == ["orders", "checkout"]:
                    order = o[p[2]]
                    for k, q in order["items"]:
                        i[k]["stock"] -= q
                        u[order["user_id"]] -= i[k]["price"] * q
                    order["paid"] = True
                    return self.answer(200, {"order_id": p[2], "paid": True})
                if method == "GET" and p[:2] == ["orders", "find"]:
                    order = o[p[2]]
                    total = sum(i[k]["price"] * q for k, q in order["items"])
                    return self.answer(200, {"order_id": p[2], "paid": order["paid"], "items": order["items"],
                                             "user_id": order["user_id"], "total_cost": total})
            except (KeyError, IndexError, ValueError):
                return self.answer(404, {"error": "not found"})
            return self.answer(404, {"error": f"no route for {method} {self.path}"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    container = tests[0]["spec"]["containers"][0]
    env = {**os.environ, **{e["name"]: base for e in container.get("env", []) if e["name"].endswith("_URL")}}
    try:
        result = subprocess.run(container["command"] + container["args"], env=env, capture_output=True, text=True,
                                timeout=60)
    finally:
        server.shutdown()
    check(result.returncode == 0 and "checkout test passed" in result.stdout,
          f"{directory.name}: the helm test script fails against the stand-in services: "
          f"{result.stderr.strip().splitlines()[-1:] if result.stderr.strip() else result.stdout}")


# --- values.schema.json -------------------------------------------------------------------------------------------

def check_schema_covers_values():
    chart = ROOT / "charts/checkout"
    schema = json.loads((chart / "values.schema.json").read_text())

    def walk(values, node, path):
        if not isinstance(values, dict) or node.get("type") != "object":
            return
        props = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        for key, value in values.items():
            if key in props:
                walk(value, props[key], f"{path}.{key}")
            else:
                check(extra is not False and not props,
                      f"values.schema.json: {path}.{key} is not declared")

    for file in ("values.yaml", "values-production.yaml"):
        walk(yaml.safe_load((chart / file).read_text()), schema, file.removesuffix(".yaml"))
    check(schema.get("additionalProperties") is False, "values.schema.json: unknown top-level values are accepted")


def check_toolchain():
    toolchain = tomllib.loads((ROOT / "rust-toolchain.toml").read_text())["toolchain"]["channel"]
    builder = re.search(r"^FROM rust:(\S+?)-slim-bookworm AS builder", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    check(builder is not None and builder.group(1) == toolchain,
          f"Dockerfile: the builder image is not rust:{toolchain}-slim-bookworm (rust-toolchain.toml)")


# --- the Docker build context ------------------------------------------------------------------------------------
#
# docker_context() reproduces what `docker build .` sends: the working tree (tracked or not) minus what
# .dockerignore excludes, with the semantics of Docker's pattern matcher (github.com/moby/patternmatcher, used by
# both the classic builder and BuildKit):
# - one pattern per line, `#` lines are comments, blank lines are ignored, surrounding spaces are trimmed;
# - patterns are relative to the context root (a leading `/` is dropped) and cleaned like Go's filepath.Clean;
# - `*` matches any run of characters but `/`, `?` one character but `/`, `[...]` a class, `**` any number of
#   directories (zero included);
# - a pattern matching a directory excludes everything below it;
# - `!pattern` re-includes; the last matching line wins.
# Unlike .gitignore, `target` matches only ./target, not a/target (that takes `**/target`).


def dockerignore_patterns(text):
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        if not exclude:
            line = line[1:].strip()
        line = os.path.normpath(line.lstrip("/")) if line.lstrip("/") else "."
        if line == ".":
            continue
        patterns.append((exclude, line, re.compile(pattern_regex(line))))
    return patterns


def pattern_regex(pattern):
    """Docker's patternmatcher conversion of one pattern to a regular expression."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 2
                if pattern[i:i + 1] == "/":
                    i += 1
                out += ".*" if i >= len(pattern) else "(.*/)?"
                continue
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ValueError(f".dockerignore: unterminated [ in {pattern!r}")
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body.startswith("^") else body) + "]"
            i = end
        else:
            out += re.escape(ch)
        i += 1
    return out + "$"


def excluded(path, patterns):
    """Whether the context-relative path is left out: the last pattern matching it or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for exclude, _, regex in patterns:
        if any(regex.match(p) for p in prefixes):
            result = exclude
    return result


def may_reinclude_below(directory, patterns):
    """Whether some `!` pattern could bring back a path below an excluded directory (then it must be walked)."""
    for exclude, text, _ in patterns:
        if exclude:
            continue
        literal = re.split(r"[*?\[\\]", text, maxsplit=1)[0]
        if literal.startswith(directory + "/") or (directory + "/").startswith(literal) or text.startswith("**"):
            return True
    return False


def context_files(root):
    ignore = root / ".dockerignore"
    patterns = dockerignore_patterns(ignore.read_text()) if ignore.is_file() else []
    files = []
    for current, dirs, names in os.walk(root):
        rel_dir = os.path.relpath(current, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        kept = []
        for d in sorted(dirs):
            rel = rel_dir + d
            if not excluded(rel, patterns) or may_reinclude_below(rel, patterns):
                kept.append(d)
        dirs[:] = kept
        for name in sorted(names):
            rel = rel_dir + name
            if not excluded(rel, patterns):
                files.append(rel)
    return files


def docker_context(dest):
    """Makes DEST hold exactly the build context: copies new or changed files (keeping their modification times, so
    cargo's fingerprints stay valid between runs) and deletes what is no longer in the context."""
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = set(context_files(ROOT))
    for rel in sorted(wanted):
        src, dst = ROOT / rel, dest / rel
        if src.is_symlink() or not src.is_file():
            continue
        st = src.stat()
        if dst.is_file() and not dst.is_symlink():
            dt = dst.stat()
            if dt.st_size == st.st_size and int(dt.st_mtime) == int(st.st_mtime):
                continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    for current, dirs, names in os.walk(dest, topdown=False):
        for name in names:
            rel = os.path.relpath(os.path.join(current, name), dest)
            if rel not in wanted:
                os.remove(os.path.join(current, name))
        if not os.listdir(current) and current != str(dest):
            os.rmdir(current)
    print(f"docker build context: {len(wanted)} files in {dest}")


def main():
    if sys.argv[1:2] == ["--docker-context"]:
        docker_context(sys.argv[2])
        return 0
    check_dockerfile()
    check_toolchain()
    check_compose()
    check_dashboard()
    check_alerts()
    check_schema_covers_values()
    check_ha_defaults()
    check_amqp_use_against_code()
    for arg in sys.argv[1:]:
        check_rendered(pathlib.Path(arg))
    if sys.argv[1:]:
        run_test_script(pathlib.Path(sys.argv[1]))
    for failure in failures:
        print(f"FAIL {failure}")
    print(f"deployment consistency: {passed} checks held, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

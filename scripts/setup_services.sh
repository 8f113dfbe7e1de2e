#!/usr/bin/env bash
# What the test suite needs beside the Python environment, installed and started idempotently:
#
#   postgres  Debian's `postgresql` (apt-get, as root or through sudo), its cluster started,
#             and `trust` for the `postgres` role on loopback (127.0.0.1:5432, ::1), the
#             server the SQL adapter and demo tests use. Nothing else in pg_hba.conf changes.
#   prometheus  Debian's `prometheus` (apt-get, as root or through sudo, only when
#             /usr/bin/prometheus or promtool is missing): the metrics tests start their own
#             server on a free loopback port, with their own config and data directory, and
#             check the exposition and the alerting rules with `promtool`. A service the
#             package may start (where policy-rc.d lets it) is not used.
#   browser   Debian's `chromium` and `chromium-driver` (apt-get, as root or through sudo, only
#             when /usr/bin/chromium or /usr/bin/chromedriver is missing): the console's pages
#             are tested in a real, headless browser driven by Selenium.
#   tools     third-party binaries built from their pinned Go modules with `go install` into
#             .tools/bin (gitignored): OPA (the second policy engine's server and `opa
#             test`), grpcurl (a third-party gRPC client the tests drive), ghz (the bench's
#             independent load generator), kustomize (renders deploy/kubernetes/ overlays for
#             the manifest tests). Go's module and build caches make a rebuild fast.
#
# `scripts/setup_services.sh` does them all; `scripts/setup_services.sh tools` only the tools.
# A second run that finds everything in place returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

OPA_VERSION=v1.22.4
GRPCURL_VERSION=v1.9.4
GHZ_VERSION=v0.120.0
KUSTOMIZE_VERSION=v5.8.2
TOOLS="$PWD/.tools/bin"

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_postgres() {
    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        say "installing PostgreSQL from Debian's packages"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
    fi
    local version
    version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -qx "$version main"; then
        say "creating PostgreSQL cluster $version/main"
        as_root pg_createcluster "$version" main >/dev/null
    fi
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    local marker="# concordat: the test suite connects as postgres over loopback"
    local changed=0
    if ! as_root grep -qF "$marker" "$hba"; then
        say "trusting the postgres role on loopback in $hba"
        # First match wins in pg_hba.conf, so the lines go on top.
        as_root sed -i "1i $marker\nhost all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust" "$hba"
        changed=1
    fi
    if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
        say "starting PostgreSQL $version/main"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        for _ in $(seq 1 30); do
            pg_isready -h 127.0.0.1 -p 5432 -q && break
            sleep 1
        done
    elif [ "$changed" -eq 1 ]; then
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
    if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
        say "PostgreSQL did not start on 127.0.0.1:5432"
        return 1
    fi
}

ensure_prometheus() {
    if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then
        return 0
    fi
    say "installing Prometheus (and promtool) from Debian's packages"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq prometheus >/dev/null
}

ensure_browser() {
    if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
        return 0
    fi
    say "installing chromium and chromium-driver from Debian's packages"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver >/dev/null
}

# go_tool NAME MODULE@VERSION: build NAME once per version into .tools/bin.
go_tool() {
    local name="$1" module="$2"
    local stamp="$TOOLS/.$name.version"
    if [ -x "$TOOLS/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$module" ]; then
        return 0
    fi
    if ! command -v go >/dev/null; then
        say "Go is needed to build $name ($module)"
        return 1
    fi
    say "building $name from $module (go install; a first build takes a few minutes)"
    mkdir -p "$TOOLS"
    GOBIN="$TOOLS" GOFLAGS=-mod=mod go install "$module"
    echo "$module" >"$stamp"
}

ensure_tools() {
    go_tool opa "github.com/open-policy-agent/opa@$OPA_VERSION"
    go_tool grpcurl "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
    go_tool ghz "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
    go_tool kustomize "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
}

case "${1:-all}" in
    postgres) ensure_postgres ;;
    prometheus) ensure_prometheus ;;
    browser) ensure_browser ;;
    tools) ensure_tools ;;
    all) ensure_postgres; ensure_prometheus; ensure_browser; ensure_tools ;;
    *) say "usage: $0 [all|postgres|prometheus|browser|tools]"; exit 2 ;;
esac

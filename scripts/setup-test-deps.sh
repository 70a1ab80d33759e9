#!/usr/bin/env bash
# Install everything the real-client tests (tests/clients) need:
#   .venv/                 Python venv with pytest, kafka-python, confluent-kafka
#                          (pins in tests/clients/requirements.txt)
#   kcat                   from Debian's packages, if not already on PATH
#   .deps/java/            kafka-clients 4.3.1 and its runtime jars (Maven Central)
#   .deps/java-classes/    tests/clients/java/src/*.java, compiled
#   .deps/kafka-tools/     Apache Kafka's kafka-tools 4.3.1 and its runtime jars
#                          (LogDirsCommand, what kafka-log-dirs.sh runs)
#   jepsen's tools         matplotlib (jepsen/requirements.txt) in .venv; iptables,
#                          libfaketime, fuse3 (fusermount3, for jepsen/lazyfs) and curl
#                          (toxiproxy's API) from Debian's packages (the fault harness's
#                          faults); toxiproxy itself is built by the harness with go
#
# Idempotent, and quick when everything is already in place: each step keeps
# a stamp (checksum of its inputs) and is skipped when the stamp matches.
#
# Usage: scripts/setup-test-deps.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { echo "setup-test-deps: $*" >&2; }
checksum() { cat "$@" | sha256sum | cut -d' ' -f1; }

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
    local log
    log="$(mktemp)"
    if (( ! apt_updated )); then
        if ! as_root apt-get update -qq >"$log" 2>&1; then
            cat "$log" >&2; rm -f "$log"; return 1
        fi
        apt_updated=1
    fi
    if ! as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1; then
        cat "$log" >&2; rm -f "$log"; return 1
    fi
    rm -f "$log"
}

# --- Python venv --------------------------------------------------------------
reqs="tests/clients/requirements.txt"
jepsen_reqs="jepsen/requirements.txt"
want="$(checksum "$reqs" "$jepsen_reqs")"
if [[ ! -x .venv/bin/python || "$(cat .venv/.headwater-reqs 2>/dev/null)" != "$want" ]]; then
    if [[ ! -x .venv/bin/python ]]; then
        say "creating .venv"
        if ! python3 -m venv .venv 2>/dev/null; then
            rm -rf .venv
            apt_install python3-venv
            python3 -m venv .venv
        fi
    fi
    say "installing Python packages from $reqs"
    .venv/bin/python -m pip install -q --disable-pip-version-check -r "$reqs" -r "$jepsen_reqs"
    echo "$want" >.venv/.headwater-reqs
fi

# --- kcat ---------------------------------------------------------------------
if ! command -v kcat >/dev/null; then
    say "installing kcat (apt)"
    apt_install kcat
fi

# --- Java client jars and the compiled check program ----------------------------
if ! command -v javac >/dev/null; then
    say "installing a JDK (apt)"
    apt_install default-jdk-headless
fi
if ! command -v mvn >/dev/null; then
    say "installing maven (apt)"
    apt_install maven
fi

# fetch_jars POM DIR: the runtime dependencies of POM into .deps/DIR, replaced whole and
# stamped with the pom's checksum (callers skip it when the stamp matches).
fetch_jars() {
    local pom="$1" dir=".deps/$2" want
    want="$(checksum "$pom")"
    mkdir -p .deps
    rm -rf "$dir.tmp"
    if ! mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$root/$dir.tmp" >"$dir-mvn.log" 2>&1; then
        cat "$dir-mvn.log" >&2
        exit 1
    fi
    rm -f "$dir-mvn.log"
    echo "$want" >"$dir.tmp/.stamp"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
}

if [[ "$(cat .deps/java/.stamp 2>/dev/null)" != "$(checksum tests/clients/java/pom.xml)" ]]; then
    say "fetching kafka-clients and its dependencies (Maven)"
    fetch_jars tests/clients/java/pom.xml java
    rm -f .deps/java-classes/.stamp
fi

srcs=(tests/clients/java/src/*.java)
want="$(checksum "${srcs[@]}" .deps/java/.stamp)"
if [[ "$(cat .deps/java-classes/.stamp 2>/dev/null)" != "$want" ]]; then
    say "compiling ${srcs[*]}"
    rm -rf .deps/java-classes
    mkdir -p .deps/java-classes
    javac -nowarn --release 17 -encoding UTF-8 -cp ".deps/java/*" -d .deps/java-classes "${srcs[@]}"
    echo "$want" >.deps/java-classes/.stamp
fi

# --- Apache Kafka's command-line tools (test_durability.py runs LogDirsCommand) ----------
if [[ "$(cat .deps/kafka-tools/.stamp 2>/dev/null)" != "$(checksum tests/clients/java/tools/pom.xml)" ]]; then
    say "fetching kafka-tools and its dependencies (Maven)"
    fetch_jars tests/clients/java/tools/pom.xml kafka-tools
fi

# --- The fault harness's system tools (jepsen/) ------------------------------------------
if ! command -v iptables >/dev/null || ! command -v faketime >/dev/null \
        || ! command -v fusermount3 >/dev/null || ! command -v curl >/dev/null; then
    say "installing iptables, faketime, fuse3 and curl (apt)"
    apt_install iptables faketime fuse3 curl
fi

#!/usr/bin/env bash
# Fetch the Apache Kafka 4.3.1 broker (kafka_2.13 and every runtime
# dependency) from Maven Central into <repo>/.deps/kafka/.
#
# Idempotent: does nothing when the jars for the current pom.xml are already
# in place (a stamp file records the pom's checksum).
#
# Usage: bench/kafka/fetch-kafka.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="$root/.deps/kafka"
pom="$here/pom.xml"

stamp_want="$(sha256sum "$pom" | cut -d' ' -f1)"
if [[ -f "$dest/.stamp" && "$(cat "$dest/.stamp")" == "$stamp_want" ]] \
   && compgen -G "$dest/kafka_2.13-*.jar" >/dev/null; then
    exit 0
fi

command -v mvn >/dev/null || { echo "fetch-kafka: mvn not found (apt-get install maven)" >&2; exit 1; }

mkdir -p "$root/.deps"
tmp="$(mktemp -d "$root/.deps/kafka.tmp.XXXXXX")"
trap 'rm -rf "$tmp" "$tmp.log"' EXIT

echo "fetch-kafka: downloading Kafka broker jars from Maven Central ..." >&2
if ! mvn -q -B -Dstyle.color=never -f "$pom" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2
    exit 1
fi
rm -f "$tmp.log"

if ! compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null; then
    echo "fetch-kafka: kafka_2.13 jar missing after download" >&2
    exit 1
fi

echo "$stamp_want" >"$tmp/.stamp"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "fetch-kafka: $(ls "$dest"/*.jar | wc -l) jars in $dest" >&2

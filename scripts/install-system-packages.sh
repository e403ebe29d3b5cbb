#!/usr/bin/env bash
# Installs the Debian packages the local stack needs, only when they are missing:
# PostgreSQL (the Hive metastore database), a Java runtime (Kafka, Spark), Maven
# (resolves the jars of jvm/pom.xml), Prometheus (promtool checks the alert rules; the
# server scrapes a dispatcher in the tests) and Chromium (the tests look at the status
# page in a headless browser).
set -euo pipefail

missing=()
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
{ command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "installing Debian packages: ${missing[*]}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
# The package's own cluster is not used (the stack makes its own); do not start it.
"${sudo[@]}" env RUNLEVEL=1 apt-get install -y -q --no-install-recommends "${missing[@]}"

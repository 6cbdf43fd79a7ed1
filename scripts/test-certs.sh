#!/usr/bin/env bash
# A throwaway certificate authority for the TLS tests: scripts/test-certs.sh DIR writes ca.crt,
# server.crt/.key (for localhost and 127.0.0.1), client.crt/.key, and other-ca.crt (a CA that
# signed nothing, to check that verification fails).
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
quiet() { "$@" >/dev/null 2>&1; }
quiet openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=outbox-relay test CA" -keyout ca.key -out ca.crt
quiet openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=unrelated CA" -keyout other-ca.key -out other-ca.crt
for name in server client; do
    quiet openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$name.key" -out "$name.csr"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$name.ext"
    quiet openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$name.ext" -out "$name.crt"
done
chmod 600 ./*.key

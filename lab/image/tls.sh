#!/bin/sh
# TLS service on port $1: openssl s_server answering HTTP (-www) with /lab/tls/cert.pem and key.pem.
# Started again when it exits, so the lab installs a new certificate by killing the running server.
child=""
trap 'kill $child 2>/dev/null; exit 0' TERM INT
while :; do
  if [ -s /lab/tls/cert.pem ] && [ -s /lab/tls/key.pem ]; then
    openssl s_server -quiet -www -accept "$1" -cert /lab/tls/cert.pem -key /lab/tls/key.pem \
      </dev/null >/dev/null 2>&1 &
    child=$!
    wait $child
  fi
  sleep 1 &
  wait $!
done

#!/bin/sh
# Stand-in VO-Box services: one busybox httpd per TCP port given as argument (listening on [::],
# so IPv4 and IPv6) and, when LAB_TLS_PORT is set, the TLS service of /lab/tls.sh on that port.
# Exits promptly on SIGTERM (docker stop).
pids=""
for port in "$@"; do
  httpd -f -p "$port" -h /www &
  pids="$pids $!"
done
if [ -n "$LAB_TLS_PORT" ]; then
  sh /lab/tls.sh "$LAB_TLS_PORT" &
  pids="$pids $!"
fi
trap 'kill $pids 2>/dev/null; exit 0' TERM INT
while :; do
  wait
  sleep 1 &
  wait $!
done

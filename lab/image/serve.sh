#!/bin/sh
# Stand-in VO-Box services: one busybox httpd per TCP port given as argument
# (listening on [::], so IPv4 and IPv6). Exits promptly on SIGTERM (docker stop).
pids=""
for port in "$@"; do
  httpd -f -p "$port" -h /www &
  pids="$pids $!"
done
trap 'kill $pids 2>/dev/null; exit 0' TERM INT
while :; do
  wait
  sleep 1 &
  wait $!
done

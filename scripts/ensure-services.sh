#!/usr/bin/env bash
# Make sure the real services the test suite uses are installed and running:
# Mosquitto on 127.0.0.1:1883 and PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`),
# and the `mbpoll` Modbus client the simulator tests run against the simulator.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto mosquitto-clients)
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
command -v mbpoll >/dev/null 2>&1 || missing+=(mbpoll)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (needed by the integration tests)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if ! port_open 1883; then
  echo "starting mosquitto on 127.0.0.1:1883"
  as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf
fi
if ! port_open 5432; then
  echo "starting postgresql on 127.0.0.1:5432"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
for _ in $(seq 1 50); do
  if port_open 1883 && port_open 5432; then exit 0; fi
  sleep 0.2
done
echo "mosquitto (1883) or postgresql (5432) did not come up on 127.0.0.1" >&2
exit 1

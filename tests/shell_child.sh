#!/bin/sh
# A child in "any language": announces readiness with systemd-notify (which reports this shell's pid,
# the one sockact started), then execs a server that takes fd 3. Connections that arrive in between
# wait in the listening socket's backlog.
set -e
systemd-notify --ready --status="shell child $$ ready"
exec "$1" "$(dirname "$0")/plain_server.py" "$2" --no-notify

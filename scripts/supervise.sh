#!/bin/sh
# Keeps the outpost daemon running where systemd is not PID 1.
#   supervise.sh LAUNCHER STATE_DIR
# Writes STATE_DIR/supervisor.pid and appends the daemon's log to STATE_DIR/daemon.log. A daemon
# that exits is restarted after a second; SIGTERM to the supervisor stops the daemon too
# (containers keep running: they never depend on the daemon process).
LAUNCHER=$1
STATE_DIR=$2
echo $$ > "$STATE_DIR/supervisor.pid"
child=
# The pid file goes only if it is still this supervisor's: a new one may have been started
# (install.sh, an upgrade) while this one was finishing its last sleep.
trap '[ -n "$child" ] && kill "$child" 2>/dev/null
  [ "$(cat "$STATE_DIR/supervisor.pid" 2>/dev/null)" = "$$" ] && rm -f "$STATE_DIR/supervisor.pid"
  exit 0' TERM INT
while :; do
  OUTPOST_DIR="$STATE_DIR" "$LAUNCHER" daemon >>"$STATE_DIR/daemon.log" 2>&1 &
  child=$!
  wait "$child"
  sleep 1
done

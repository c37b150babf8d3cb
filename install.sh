#!/usr/bin/env bash
# Installs outpost on this Debian/Ubuntu host from a source checkout, as root. Idempotent.
#   ./install.sh [--state-dir DIR] [--no-image] [--no-network]
#   ./install.sh --uninstall [--purge] [--state-dir DIR]   (--purge: also every instance and the state)
# Environment: OUTPOST_PREFIX (default /opt/outpost), OUTPOST_BIN (default /usr/local/bin/outpost),
# OUTPOST_SERVICE=systemd|supervise (default: systemd where it is PID 1), OUTPOST_BUILD (the
# agent program's sha256, when it came from a fleet hub), OUTPOST_NO_NETWORK=1 (as --no-network: the
# daemon's first start makes no default network, outpostbr0).
# Installs apt packages and Deno, copies the agent to /opt/outpost, puts an `outpost` launcher on
# PATH, starts the daemon as a service (systemd unit, or a supervised background process where
# systemd is not PID 1) and builds the busybox image.
set -euo pipefail

SRC=$(cd "$(dirname "$0")" && pwd)
PREFIX=${OUTPOST_PREFIX:-/opt/outpost}
BIN=${OUTPOST_BIN:-/usr/local/bin/outpost}
STATE_DIR=${OUTPOST_DIR:-/var/lib/outpost}
BUILD_IMAGE=1
UNINSTALL=0
PURGE=0

while [ $# -gt 0 ]; do
  case "$1" in
    --state-dir) STATE_DIR=$2; shift 2 ;;
    --no-image) BUILD_IMAGE=0; shift ;;
    --no-network) export OUTPOST_NO_NETWORK=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 1 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (LXC containers need it)" >&2
  exit 1
fi

# stop_service: stops the daemon however it was started (instances keep running).
stop_service() {
  if [ -f /etc/systemd/system/outpost.service ] && command -v systemctl >/dev/null; then
    systemctl disable --now outpost.service >/dev/null 2>&1 || true
  fi
  # Each process is waited for (up to 5 s): a supervisor ends only after its current sleep.
  for f in supervisor.pid daemon.pid; do
    if [ -f "$STATE_DIR/$f" ] && kill -0 "$(cat "$STATE_DIR/$f")" 2>/dev/null; then
      pid=$(cat "$STATE_DIR/$f")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
}

if [ "$UNINSTALL" = 1 ]; then
  stop_service
  rm -f /etc/systemd/system/outpost.service "$BIN"
  # (With what an upgrade may have left beside it: the previous tree, a failed one.)
  [ "$SRC" != "$PREFIX" ] && rm -rf "$PREFIX" "$PREFIX.old" "$PREFIX.failed"
  if [ "$PURGE" = 1 ] && [ -d "$STATE_DIR" ]; then
    for c in "$STATE_DIR"/containers/*/; do
      if [ -d "$c" ]; then
        lxc-stop -P "$STATE_DIR/containers" -n "$(basename "$c")" -k >/dev/null 2>&1 || true
      fi
    done
    for p in "$STATE_DIR"/virtual-machines/*/qemu.pid; do
      if [ -f "$p" ]; then kill -9 "$(cat "$p")" 2>/dev/null || true; fi
    done
    # Storage pools on loop files the daemon mounted under the state dir, deepest first.
    awk -v dir="$STATE_DIR/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    rm -rf "$STATE_DIR"
  fi
  echo "outpost is uninstalled$([ "$PURGE" = 1 ] && echo ", its instances and state removed" || echo "; instances and $STATE_DIR are kept")"
  exit 0
fi

# shellcheck source=scripts/host-deps.sh
. "$SRC/scripts/host-deps.sh"
apt_install $OUTPOST_APT_PACKAGES
ensure_deno

# The agent: a copy of the checkout's sources with its pinned npm modules.
if [ "$SRC" != "$PREFIX" ]; then
  mkdir -p "$PREFIX" "$(dirname "$BIN")"
  tar -C "$SRC" --exclude=./node_modules --exclude=./.git --exclude=./dist -cf - . | tar -C "$PREFIX" -xf -
fi
ensure_modules "$PREFIX"
# What an upgrade from a fleet hub needs to know of this install (OUTPOST_BUILD: the sha256 of the
# agent program it came from, set by the hub's install script and upgrades).
for v in "$PREFIX" "$BIN" "$STATE_DIR"; do
  case "$v" in *'"'*|*'\\'*) echo "install.sh: paths may not hold \" or \\" >&2; exit 1 ;; esac
done
printf '{"prefix": "%s", "bin": "%s", "state_dir": "%s", "build": "%s"}\n' \
  "$PREFIX" "$BIN" "$STATE_DIR" "${OUTPOST_BUILD:-}" > "$PREFIX/.install.json"

# The launcher: `deno run` with narrowed permissions and V8 memory limits (the same flags `deno
# task compile` bakes into the release binary; scripts/permissions.ts reads them). Commands run
# the prebuilt bundle (`deno task bundle`: nothing is resolved or transpiled per call, and only
# the command's own chunk is loaded); the daemon runs from the sources, beside the file helper
# it copies from them.
FLAGS=$("$DENO" run --quiet --allow-read "$PREFIX/scripts/permissions.ts")
(cd "$PREFIX" && "$DENO" task --quiet bundle)
cat > "$BIN" <<LAUNCHER
#!/bin/sh
for arg in "\$@"; do
  case "\$arg" in
    --) break ;;
    daemon) exec "$DENO" run --quiet --no-prompt $FLAGS "$PREFIX/main.ts" "\$@" ;;
  esac
done
exec "$DENO" run --quiet --no-prompt --no-config --no-lock $FLAGS "$PREFIX/dist/cli/main.js" "\$@"
LAUNCHER
chmod 0755 "$BIN"

# The service.
mkdir -p "$STATE_DIR"
SERVICE=${OUTPOST_SERVICE:-}
if [ -z "$SERVICE" ]; then
  if [ "$(cat /proc/1/comm 2>/dev/null)" = "systemd" ]; then SERVICE=systemd; else SERVICE=supervise; fi
fi
if [ "$SERVICE" = systemd ]; then
  cat > /etc/systemd/system/outpost.service <<UNIT
[Unit]
Description=outpost daemon (LXC containers through an Incus-compatible API)
After=network.target

[Service]
Environment=OUTPOST_DIR=$STATE_DIR
Environment=OUTPOST_NO_NETWORK=${OUTPOST_NO_NETWORK:-0}
ExecStart=$BIN daemon
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable outpost.service >/dev/null
  systemctl restart outpost.service
else
  SUPERVISOR="$PREFIX/scripts/supervise.sh"
  stop_service
  OUTPOST_DIR="$STATE_DIR" setsid "$SUPERVISOR" "$BIN" "$STATE_DIR" </dev/null >/dev/null 2>&1 &
fi

# Wait for the API, up to 60 s by the clock (a count of tries would stretch with each try's
# start-up time on a loaded host, and an upgrade waits on this to decide whether to roll back).
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  if OUTPOST_DIR="$STATE_DIR" "$BIN" list --format csv >/dev/null 2>&1; then break; fi
  sleep 0.2
done
if ! OUTPOST_DIR="$STATE_DIR" "$BIN" list --format csv >/dev/null; then
  echo "install.sh: the daemon did not come up; see $STATE_DIR/daemon.log" >&2
  exit 1
fi

if [ "$BUILD_IMAGE" = 1 ] && ! OUTPOST_DIR="$STATE_DIR" "$BIN" image alias list | grep -q '| busybox '; then
  OUTPOST_DIR="$STATE_DIR" "$BIN" image build busybox --alias busybox
fi
echo "outpost is installed: try 'outpost launch busybox c1 && outpost exec c1 -- echo hi'"

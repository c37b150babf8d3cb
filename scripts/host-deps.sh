# Sourced by install.sh and tests/run.sh: installs what outpost needs on a Debian/Ubuntu host.
# Everything comes from Debian's packages and the npm registry, so a fresh machine works offline
# from any other source.

OUTPOST_DENO_VERSION=2.9.6
OUTPOST_APT_PACKAGES="lxc busybox-static uidmap iproute2 util-linux procps tar gzip xz-utils ca-certificates qemu-system-x86 qemu-utils qemu-guest-agent ovmf kmod cpio e2fsprogs openssl dnsmasq-base nftables iptables btrfs-progs"
# Real clients the compatibility tests drive outpost with (the stock LXD client, pylxd, Ansible),
# and what the fleet test needs (curl for the served install script,
# chromium for the dashboard, postgresql for hubs sharing one database).
OUTPOST_TEST_APT_PACKAGES="lxd-client python3-pylxd ansible curl chromium postgresql"

# apt_install PKG...: installs the packages that are missing (one apt-get update at most).
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "outpost: installing ${missing[*]}" >&2
  if [ -z "${OUTPOST_APT_UPDATED:-}" ]; then
    apt-get update -q >/dev/null
    OUTPOST_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_incus_client: the Incus 6.0 client, a test client, from Debian's bookworm-backports (enabled
# when the host is Debian 12 without it); elsewhere, where no package has it, its tests skip.
ensure_incus_client() {
  command -v incus >/dev/null && return 0
  if grep -q '^VERSION_CODENAME=bookworm$' /etc/os-release 2>/dev/null &&
    ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" "Suites: bookworm-backports" \
      "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
      >/etc/apt/sources.list.d/bookworm-backports.sources
    OUTPOST_APT_UPDATED=
  fi
  if [ -z "${OUTPOST_APT_UPDATED:-}" ]; then
    apt-get update -q >/dev/null
    OUTPOST_APT_UPDATED=1
  fi
  echo "outpost: installing incus-client" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -t bookworm-backports incus-client >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends incus-client \
      >/dev/null 2>&1 || echo "outpost: no incus-client package here: its tests skip" >&2
}

# ensure_deno: Deno from npm, pinned; sets DENO to its path.
ensure_deno() {
  DENO=$(command -v deno || true)
  if [ -n "$DENO" ] && "$DENO" --version 2>/dev/null | head -1 | grep -q "deno $OUTPOST_DENO_VERSION"; then
    return 0
  fi
  if ! command -v npm >/dev/null; then apt_install nodejs npm; fi
  echo "outpost: installing deno $OUTPOST_DENO_VERSION from npm" >&2
  npm install -g --silent "deno@$OUTPOST_DENO_VERSION" >/dev/null 2>&1 || npm install -g "deno@$OUTPOST_DENO_VERSION"
  hash -r
  DENO=$(command -v deno)
}

# ensure_modules DIR: the npm dependencies pinned by deno.lock, installed into DIR/node_modules.
ensure_modules() {
  (cd "$1" && "$DENO" install --frozen >/dev/null)
}

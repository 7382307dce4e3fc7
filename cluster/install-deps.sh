#!/usr/bin/env bash
# System packages the emulated cluster needs (idempotent; needs root, Debian/Ubuntu).
#   openssh-server  one sshd per emulated host (ray up talks SSH)
#   openssh-client  ssh/ssh-keygen for ray up and the head's autoscaler
#   rsync           the updater rsyncs file_mounts to every node
#   iproute2        ip netns / veth / bridge and tc (bandwidth shaping)
#   util-linux      unshare (PID/mount/UTS namespaces), procps: ps/pkill-free checks
#   nftables        `emulate.sh block`: drop a host's traffic (a stalled link)
set -euo pipefail
PKGS=(openssh-server openssh-client rsync iproute2 util-linux procps nftables)
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: needs root (network namespaces, sshd, tc)" >&2
    exit 1
fi
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# sshd's privilege-separation directory (normally made by systemd-tmpfiles).
install -d -m 0755 /run/sshd
echo "install-deps.sh: ok (${PKGS[*]})"

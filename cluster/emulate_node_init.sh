#!/usr/bin/env bash
# PID 1 of one emulated host (run by emulate.sh inside
# `ip netns exec NS unshare --pid --fork --mount-proc --uts --mount`).
# Gives the host its own hostname, /tmp (so /tmp/ray), tmpfs /dev/shm, $HOME and
# /etc/hosts, then runs its sshd and reaps orphans until told to stop.
set -euo pipefail
name=$1 dir=$2 emu=$3
hostname "$name"
# A private $HOME over /root and a private /tmp. Parts of the real ones that the shared
# Python needs (a pyenv interpreter the venv links to, a venv under /tmp) are bound
# back in at the same paths (read-only use), before the private dirs cover them.
for keep in ${RAY_RELU_EMU_KEEP:-}; do
    case "$keep" in
        /root/*) target="$dir/home/${keep#/root/}" ;;
        /tmp/*) target="$dir/tmp/${keep#/tmp/}" ;;
        *) continue ;;
    esac
    mkdir -p "$target"
    mount --bind "$keep" "$target"
done
mount --rbind "$dir/home" /root
mount --rbind "$dir/tmp" /tmp
mount -t tmpfs -o size=2g,mode=1777 tmpfs /dev/shm
mount --bind "$emu/hosts" /etc/hosts
mount --bind "$emu/resolv.conf" /etc/resolv.conf
/usr/sbin/sshd -D -e -f "$dir/sshd_config" &
sshd=$!
trap 'kill -TERM -1 2>/dev/null; exit 0' TERM INT
echo "$name: sshd pid $sshd (in-namespace), ready"
# `wait` returns on every SIGCHLD; bash reaps re-parented orphans meanwhile.
while kill -0 "$sshd" 2>/dev/null; do wait "$sshd" || true; done
echo "$name: sshd exited"

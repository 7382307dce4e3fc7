#!/usr/bin/env bash
# Emulated multi-node Ray cluster on one machine, brought up by the real `ray up`.
#
#   cluster/emulate.sh up [--nodes N] [--rate R] [--delay D] [--cpus C] [--head-cpus H]
#                         [--direct] [--autoscale [--idle-minutes M]]
#                                  hosts + sshd + `ray up` of a rendered local.yaml;
#                                  --autoscale: `ray up` starts the head only, the other
#                                  hosts are the autoscaler's pool (min_workers 0),
#                                  started over SSH when actors wait for CPUs and
#                                  released after M idle minutes (default 1)
#   cluster/emulate.sh down        `ray down`, `ray stop` on the workers over SSH,
#                                  then namespaces, bridge and state removed
#   cluster/emulate.sh status [--json]
#   cluster/emulate.sh shape --rate R [--delay D]   reshape the links of a running cluster
#   cluster/emulate.sh block I | unblock I   stall host I's link: drop every packet in
#                                  and out of it (nftables in its namespace; TCP
#                                  connections stay open and retransmit) / let it pass
#   cluster/emulate.sh submit [ray job submit options] -- ENTRYPOINT...
#                                  ray job submit to the head (token auth set up)
#   cluster/emulate.sh logs ID [--follow]   a job's output (`ray job logs` with the
#                                  cluster's address and token)
#   cluster/emulate.sh fetch PATH [DEST]    copy a file from the head (PATH relative to
#                                  its home, e.g. a job's --out) to DEST (default .)
#   cluster/emulate.sh exec -- CMD...   run a client command with the cluster's
#                                  addresses and auth token in its environment,
#                                  e.g. exec -- ray job status ID
#   cluster/emulate.sh ssh I CMD...     run CMD on emulated host I (0 = head); a login
#                                  shell there has Ray and token auth:
#                                  ssh 0 "bash -lc 'ray status'"
#   cluster/emulate.sh env         print the client environment as `export` lines
#   cluster/emulate.sh ACTION --help    this text
#
# Each emulated host i is
#   - a network namespace rr<ID>n<i> with one veth on a private bridge rrbr<ID>
#     (10.213.<ID>.0/24, no default route, no NAT): it can reach the other hosts and
#     the bridge's host side, nothing else;
#   - a PID + mount + UTS namespace (`unshare --pid --fork --mount-proc --uts`), so
#     `ray stop` (which scans every PID it can see) only sees its own host;
#   - a private /tmp (hence /tmp/ray), a private tmpfs /dev/shm, a private $HOME (bind
#     over /root), its own hostname, /etc/hosts and an empty /etc/resolv.conf;
#   - its own sshd (own config, host key and AuthorizedKeysFile under the state dir;
#     the user's ~/.ssh is never read or written).
# The host side of the bridge is 10.213.<ID>.1, so `ray job submit` works from here.
# The client side (ray up, ray job submit) runs with a private HOME and TMPDIR under
# the state dir: nothing of the user's ~/.ray or /tmp/ray is read or written.
#
# Links are shaped with tc on both ends of every veth (each host gets RATE up and RATE
# down, like a switch port): netem "rate R" at both ends plus "delay D" at the host's
# egress (one-way latency D between any two hosts) when the kernel has sch_netem;
# otherwise tbf at RATE and no added latency (`status` and cluster.json say which).
#
# Teardown is idempotent and also runs when `up` fails or is interrupted (Ctrl-C: says
# "interrupted", exits 130, keeps nothing; a failure keeps the logs in
# /tmp/ray_relu_emu_failed_<ID> until the next `up` or `down` of that ID).
# Settings (environment; `up` options win): RAY_RELU_EMU_ID (0; clusters with
# different IDs can run side by side), RAY_RELU_EMU_NODES (3), RAY_RELU_EMU_RATE
# (100mbit), RAY_RELU_EMU_DELAY (1ms), RAY_RELU_EMU_CPUS (2 per host),
# RAY_RELU_EMU_HEAD_CPUS (the head's; default as the others, 0 keeps actors off it),
# RAY_RELU_EMU_OBJECT_STORE (300000000 bytes per host), RAY_RELU_EMU_DIR
# (/run/ray_relu_emu/<ID>), RAY_RELU_EMU_SUBNET (10.213.<ID>), RAY_RELU_EMU_PYTHON
# (the venv's python), RAY_RELU_EMU_AUTOSCALER_V2 (0; see cluster/README.md),
# RAY_RELU_EMU_AUTOSCALE (0; 1 as --autoscale), RAY_RELU_EMU_IDLE_MINUTES (1).
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"

log() { echo "[emulate] $*" >&2; }
# How the user runs this script, for hints: `ray-relu cluster` sets RAY_RELU_EMU_CMD.
EMU_CMD="${RAY_RELU_EMU_CMD:-$0}"
[ "${RAY_RELU_EMU_ID:-0}" != 0 ] && EMU_CMD="RAY_RELU_EMU_ID=$RAY_RELU_EMU_ID $EMU_CMD"
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk "BEGIN{printf \"%.1f\", $(now)-$1}"; }

ID="${RAY_RELU_EMU_ID:-0}"
[[ "$ID" =~ ^[0-9]{1,3}$ && "$ID" -le 250 ]] || die "RAY_RELU_EMU_ID must be 0..250, got '$ID'"
EMU_DIR="${RAY_RELU_EMU_DIR:-/run/ray_relu_emu/$ID}"
STATE="$EMU_DIR/cluster.env"
FAILED_LOGS="/tmp/ray_relu_emu_failed_$ID"
# A delay is applied where the kernel can (netem) either way; the warning that it cannot
# be is for a delay somebody asked for (--delay or RAY_RELU_EMU_DELAY), not the default.
DELAY_ASKED=0

# The settings `up` used are saved in $STATE, so every later command sees the same.
if [ -f "$STATE" ]; then
    # shellcheck disable=SC1090
    source "$STATE"
else
    NODES="${RAY_RELU_EMU_NODES:-3}"
    SUBNET="${RAY_RELU_EMU_SUBNET:-10.213.$ID}"
    RATE="${RAY_RELU_EMU_RATE:-100mbit}"
    DELAY="${RAY_RELU_EMU_DELAY:-1ms}"
    [ -n "${RAY_RELU_EMU_DELAY:-}" ] && DELAY_ASKED=1
    NUM_CPUS="${RAY_RELU_EMU_CPUS:-2}"
    HEAD_CPUS="${RAY_RELU_EMU_HEAD_CPUS:-}"   # empty: as many as the other hosts
    OBJECT_STORE_BYTES="${RAY_RELU_EMU_OBJECT_STORE:-300000000}"
    PY="${RAY_RELU_EMU_PYTHON:-$REPO/.venv/bin/python}"
    AUTOSCALE="${RAY_RELU_EMU_AUTOSCALE:-0}"
    IDLE_MINUTES="${RAY_RELU_EMU_IDLE_MINUTES:-1}"
fi
VENV_BIN="$(dirname "$PY")"
BRIDGE="rrbr$ID"
HOST_IP="$SUBNET.1"
CLUSTER_NAME="ray-relu-emu$ID"
DASHBOARD_PORT=8265
GCS_PORT=6379
CLIENT_PORT=10001

node_name() { echo "rr-node$1"; }
node_ns() { echo "rr${ID}n$1"; }
node_veth() { echo "rr${ID}v$1"; }
node_ip() { echo "$SUBNET.$((10 + $1))"; }
head_ip() { node_ip 0; }

save_state() {
    install -d -m 0700 "$EMU_DIR"
    cat > "$STATE" <<EOF
NODES=$NODES
SUBNET=$SUBNET
RATE=$RATE
DELAY=$DELAY
NUM_CPUS=$NUM_CPUS
HEAD_CPUS=$HEAD_CPUS
OBJECT_STORE_BYTES=$OBJECT_STORE_BYTES
PY=$PY
AUTOSCALE=$AUTOSCALE
IDLE_MINUTES=$IDLE_MINUTES
EOF
}

check_settings() {
    [[ "$NODES" =~ ^[0-9]+$ && "$NODES" -ge 1 && "$NODES" -le 32 ]] \
        || die "nodes must be 1..32, got '$NODES'"
    [[ "$NUM_CPUS" =~ ^[0-9]+$ && "$NUM_CPUS" -ge 1 ]] || die "cpus must be >= 1, got '$NUM_CPUS'"
    [[ "$HEAD_CPUS" =~ ^[0-9]+$ ]] || die "head cpus must be >= 0, got '$HEAD_CPUS'"
    [[ "$OBJECT_STORE_BYTES" =~ ^[0-9]+$ ]] || die "object store bytes must be an integer"
    [[ "$SUBNET" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] \
        || die "subnet must be three octets like 10.213.0, got '$SUBNET'"
    [[ "$AUTOSCALE" =~ ^[01]$ ]] || die "RAY_RELU_EMU_AUTOSCALE must be 0 or 1, got '$AUTOSCALE'"
    [[ "$IDLE_MINUTES" =~ ^[0-9]+$ && "$IDLE_MINUTES" -ge 1 ]] \
        || die "idle minutes must be a whole number >= 1 (Ray's idle_timeout_minutes), got '$IDLE_MINUTES'"
    if [ "$AUTOSCALE" -eq 1 ]; then
        [ "$NODES" -ge 2 ] || die "--autoscale needs --nodes >= 2 (the head plus a pool of worker hosts), got $NODES"
        [ "$LAUNCHER" = "ray up" ] || die "--autoscale and --direct exclude each other: the autoscaler starts hosts only under ray up"
    fi
    check_rate "$RATE"
    check_delay "$DELAY"
}

check_rate() {
    [[ "$1" =~ ^[0-9]+(\.[0-9]+)?(bit|kbit|mbit|gbit)$ ]] \
        || die "rate must look like 100mbit, 10mbit, 500kbit or 1gbit; got '$1'"
}

check_delay() {
    [[ "$1" =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ || "$1" = 0 ]] \
        || die "delay must look like 1ms, 250us or 0; got '$1'"
}

require_root() {
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, sshd, tc)"
    local t
    for t in ip tc unshare rsync ssh ssh-keygen /usr/sbin/sshd; do
        command -v "$t" >/dev/null || die "missing $t: run 'bash cluster/install-deps.sh'"
    done
    [ -x "$PY" ] || die "no python at $PY: run 'make install'"
    install -d -m 0755 /run/sshd
}

# --- client environment: what ray up / ray job submit / ray status run with --------
client_env() {
    # A private HOME and TMPDIR (Ray's temp dir, the local provider's state file and
    # the config cache live under TMPDIR), so the user's ~/.ray and /tmp/ray stay
    # untouched; the token is named explicitly, never taken from ~/.ray/auth_token.
    export HOME="$EMU_DIR/client/home"
    export TMPDIR="$EMU_DIR/client/tmp"
    export PATH="$VENV_BIN:$PATH"
    export RAY_AUTH_MODE=token
    export RAY_AUTH_TOKEN_PATH="$EMU_DIR/client/auth_token"
    export RAY_USAGE_STATS_ENABLED=0
    # v2 (the default since Ray 2.50) did not launch the local provider's worker_ips.
    export RAY_UP_enable_autoscaler_v2="${RAY_RELU_EMU_AUTOSCALER_V2:-0}"
    # Jobs go to the dashboard; ray.init() from here goes through Ray Client.
    export RAY_API_SERVER_ADDRESS="http://$(head_ip):$DASHBOARD_PORT"
    export RAY_ADDRESS="ray://$(head_ip):$CLIENT_PORT"
}

# --- network ---------------------------------------------------------------------
shape_dev() { # shape_dev NETNS-or-"" DEV EGRESS_DELAY -> prints what was applied
    local ns=$1 dev=$2 delay=$3 run=() err
    [ -n "$ns" ] && run=(ip netns exec "$ns")
    local netem=(netem rate "$RATE" limit 10000)
    [ "$delay" != 0 ] && netem+=(delay "$delay")
    if err=$("${run[@]}" tc qdisc replace dev "$dev" root "${netem[@]}" 2>&1); then
        echo "netem rate $RATE delay $DELAY"
        return
    fi
    # Only a kernel without sch_netem falls back; any other tc error is fatal.
    case "$err" in *"qdisc kind is unknown"*|*"No such file or directory"*) ;;
        *) die "tc netem on $dev failed: $err" ;; esac
    "${run[@]}" tc qdisc replace dev "$dev" root tbf rate "$RATE" burst 64kb latency 50ms
    echo "tbf rate $RATE, no added delay (kernel has no sch_netem)"
}

apply_shaping() {
    local i shaping=""
    for ((i = 0; i < NODES; i++)); do
        # Into host i: egress of the bridge-side veth; out of host i: egress of its eth0,
        # which also carries the one-way delay.
        shape_dev "" "$(node_veth "$i")" 0 >/dev/null
        shaping=$(shape_dev "$(node_ns "$i")" eth0 "$DELAY")
    done
    echo "$shaping" > "$EMU_DIR/shaping"
    case "$shaping" in tbf*) [ "$DELAY" != 0 ] && [ "$DELAY_ASKED" -eq 1 ] && \
        log "WARNING: delay $DELAY requested but this kernel has no sch_netem: rate only" ;; esac
    log "links: $shaping"
}

check_subnet_free() {
    # Refuse a subnet the host already routes (it must be ours alone).
    if ip -4 route show | awk '{print $1}' | grep -q "^$SUBNET\." \
        || ip -4 addr show | grep -q "inet $SUBNET\."; then
        die "subnet $SUBNET.0/24 is already in use on this host; set RAY_RELU_EMU_SUBNET or RAY_RELU_EMU_ID"
    fi
}

net_up() {
    check_subnet_free
    ip link add "$BRIDGE" type bridge
    ip addr add "$HOST_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local i ns veth
    for ((i = 0; i < NODES; i++)); do
        ns=$(node_ns "$i"); veth=$(node_veth "$i")
        ip netns add "$ns"
        ip link add "$veth" type veth peer name eth0 netns "$ns"
        ip link set "$veth" master "$BRIDGE" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$(node_ip "$i")/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    apply_shaping
    log "network: bridge $BRIDGE $HOST_IP/24, $NODES hosts $(node_ip 0)..$(node_ip $((NODES - 1)))"
}

# --- hosts -------------------------------------------------------------------------
write_host_files() {
    install -d -m 0700 "$EMU_DIR/client" "$EMU_DIR/client/home" "$EMU_DIR/client/tmp" \
        "$EMU_DIR/ssh"
    ssh-keygen -q -t ed25519 -N '' -C ray-relu-emu-client -f "$EMU_DIR/client/id_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C ray-relu-emu-host -f "$EMU_DIR/ssh/ssh_host_ed25519_key"
    install -m 0600 "$EMU_DIR/client/id_ed25519.pub" "$EMU_DIR/ssh/authorized_keys"
    # The cluster's auth token, generated on the client as on a laptop (private HOME).
    (client_env; unset RAY_AUTH_TOKEN_PATH; ray get-auth-token --generate >/dev/null 2>&1) \
        || die "could not generate the auth token"
    install -m 0600 "$EMU_DIR/client/home/.ray/auth_token" "$EMU_DIR/client/auth_token"
    : > "$EMU_DIR/resolv.conf" # no name servers: nothing to ask outside
    local i
    {
        echo "127.0.0.1 localhost"
        for ((i = 0; i < NODES; i++)); do echo "$(node_ip "$i") $(node_name "$i")"; done
    } > "$EMU_DIR/hosts"
    for ((i = 0; i < NODES; i++)); do
        local d; d="$EMU_DIR/nodes/$(node_name "$i")"
        install -d -m 0700 "$d" "$d/home" "$d/home/.ray"
        install -d -m 1777 "$d/tmp"
        cat > "$d/home/.bashrc" <<EOF
# emulated host $(node_name "$i"): Python and Ray from the shared venv (read-only use)
export PATH="$VENV_BIN:\$PATH"
export RAY_USAGE_STATS_ENABLED=0
EOF
        # As Ubuntu's /etc/skel/.profile: login shells read ~/.bashrc too. The setup
        # commands of the rendered YAML add token auth to both (as on EC2).
        cat > "$d/home/.profile" <<'EOF'
if [ -n "$BASH_VERSION" ] && [ -f "$HOME/.bashrc" ]; then . "$HOME/.bashrc"; fi
EOF
        cat > "$d/sshd_config" <<EOF
ListenAddress $(node_ip "$i")
Port 22
HostKey $EMU_DIR/ssh/ssh_host_ed25519_key
AuthorizedKeysFile $EMU_DIR/ssh/authorized_keys
PidFile $d/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
StrictModes yes
MaxSessions 64
MaxStartups 64
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
EOF
    done
}

keep_dirs() { # dirs the shared venv and its python live in, under the hosts' private /root or /tmp
    local p out="" top
    for p in "$(readlink -f "$PY")" "$(cd "$VENV_BIN/.." && pwd -P)"; do
        for top in /root /tmp; do
            case "$p" in "$top"/*) p=${p#"$top"/}; out+=" $top/${p%%/*}" ;; esac
        done
    done
    echo $out | tr ' ' '\n' | sort -u | tr '\n' ' '
}

start_host() { # start_host INDEX
    local i=$1 name ns d
    name=$(node_name "$i"); ns=$(node_ns "$i"); d="$EMU_DIR/nodes/$name"
    export RAY_RELU_EMU_KEEP; RAY_RELU_EMU_KEEP=$(keep_dirs)
    # setsid: the host outlives this script; --kill-child: killing unshare kills the
    # namespace's PID 1, and with it every process of that host.
    setsid ip netns exec "$ns" \
        unshare --pid --fork --kill-child=SIGKILL --mount-proc --uts --mount \
        --propagation private \
        bash "$HERE/emulate_node_init.sh" "$name" "$d" "$EMU_DIR" \
        >"$d/init.log" 2>&1 < /dev/null &
    echo $! > "$d/unshare.pid"
    disown  # `down` ends it, maybe from this very shell: no job-status noise then
}

SSH_OPTS=(-i "$EMU_DIR/client/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes
          -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
          -o ConnectTimeout=5)

ssh_node() { # ssh_node INDEX CMD...
    local i=$1; shift
    ssh "${SSH_OPTS[@]}" "root@$(node_ip "$i")" "$@"
}

wait_ssh() {
    local i t
    for ((i = 0; i < NODES; i++)); do
        for ((t = 0; t < 100; t++)); do
            if ssh_node "$i" true 2>/dev/null; then continue 2; fi
            sleep 0.1
        done
        die "sshd on $(node_name "$i") ($(node_ip "$i")) did not answer; see $EMU_DIR/nodes/$(node_name "$i")/init.log"
    done
}

render_yaml() {
    local workers="" i min_workers=$((NODES - 1)) idle=5 prepared=()
    for ((i = 1; i < NODES; i++)); do workers+="${workers:+, }$(node_ip "$i")"; done
    if [ "$AUTOSCALE" -eq 1 ]; then
        min_workers=0 idle=$IDLE_MINUTES prepared=(--worker-cpus "$NUM_CPUS")
    fi
    "$PY" "$HERE/render_yaml.py" "$HERE/templates/emulated-local.yaml" "$EMU_DIR/local.yaml" \
        "CLUSTER_NAME=$CLUSTER_NAME" "HEAD_IP=$(head_ip)" "WORKER_IPS=$workers" \
        "NUM_WORKERS=$((NODES - 1))" "EMU_DIR=$EMU_DIR" "NUM_CPUS=$NUM_CPUS" \
        "HEAD_CPUS=$HEAD_CPUS" "OBJECT_STORE_BYTES=$OBJECT_STORE_BYTES" \
        "MIN_WORKERS=$min_workers" "IDLE_TIMEOUT_MINUTES=$idle" "${prepared[@]}" \
        2> "$EMU_DIR/render.log" \
        || { cat "$EMU_DIR/render.log" >&2; die "could not render $HERE/templates/emulated-local.yaml"; }
    log "rendered $EMU_DIR/local.yaml (head $(head_ip), workers ${workers:-none})"
}

# The long Python steps of `up` (pip wheel, ray up) run in a session of their own, in
# the background, and this script waits for them: Ctrl-C (SIGINT to the terminal's
# foreground process group) then reaches this script only, whose trap stops the child,
# says "interrupted" and tears down, instead of the child printing a traceback and the
# script taking that for a failure.
CHILD=""
INTERRUPTED=0
run_child() { # run_child LOG FUNCTION: FUNCTION (ending in `exec setsid ...`) in a subshell
    local log=$1 rc=0; shift
    ( "$@" ) > "$log" 2>&1 < /dev/null &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

wheel_cmd() { exec setsid "$PY" -m pip wheel --quiet --no-deps -w "$EMU_DIR/wheelhouse" "$REPO"; }

build_wheel() {
    # The project's wheel, built once on the client from this checkout: the emulated
    # hosts install exactly that (they have no route to a package index).
    install -d "$EMU_DIR/wheelhouse"
    run_child "$EMU_DIR/wheel.log" wheel_cmd \
        || { tail -20 "$EMU_DIR/wheel.log" >&2; die "could not build the ray_relu wheel from $REPO"; }
    log "wheel: $(cd "$EMU_DIR/wheelhouse" && ls)"
}

# --- ray up / direct ray start -----------------------------------------------------
ray_up_cmd() { client_env; cd "$REPO"; exec setsid ray up -y --no-config-cache "$EMU_DIR/local.yaml"; }

ray_up() {
    local t0=$1
    run_child "$EMU_DIR/ray_up.log" ray_up_cmd \
        || { tail -40 "$EMU_DIR/ray_up.log" >&2; die "ray up failed (log: $EMU_DIR/ray_up.log)"; }
    HEAD_S=$(since "$t0")
    log "ray up returned (head up) in $HEAD_S s"
}

alive_nodes() { # how many Ray nodes the head's dashboard reports ALIVE
    (client_env; "$PY" - <<'EOF'
import json, os, urllib.request
token = open(os.environ["RAY_AUTH_TOKEN_PATH"]).read().strip()
req = urllib.request.Request(os.environ["RAY_API_SERVER_ADDRESS"] + "/nodes?view=summary",
                             headers={"Authorization": f"Bearer {token}"})
data = json.load(urllib.request.urlopen(req, timeout=3))
print(sum(1 for n in data["data"]["summary"] if n["raylet"]["state"] == "ALIVE"))
EOF
    ) 2>/dev/null
}

wait_nodes() { # until the Ray nodes `up` starts are alive: all NODES (the head's
    # autoscaler launches the workers), or with --autoscale the head alone
    local t0=$1 n=0 t want=$NODES
    [ "$AUTOSCALE" -eq 1 ] && want=1
    for ((t = 0; t < 240; t++)); do
        n=$(alive_nodes || echo 0)
        [ "$n" -ge "$want" ] && break
        sleep 1
    done
    [ "$n" -ge "$want" ] || die "only $n of $want Ray nodes came up; see $EMU_DIR/ray_up.log and $EMU_DIR/nodes/rr-node0/tmp/ray/session_latest/logs/monitor.*"
    ALL_S=$(since "$t0")
    if [ "$AUTOSCALE" -eq 1 ]; then
        log "head alive $ALL_S s after ray up started; $((NODES - 1)) worker hosts wait for demand (autoscaler, idle timeout $IDLE_MINUTES min)"
    else
        log "all $NODES Ray nodes alive $ALL_S s after ray up started"
    fi
}

direct_start() { # ray start in each host over SSH, without ray up (debugging the hosts)
    local i env t0=$1
    env="export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=\$HOME/.ray/auth_token RAY_USAGE_STATS_ENABLED=0 PYTHONPATH=\$HOME/site;"
    for ((i = 0; i < NODES; i++)); do
        ssh_node "$i" "source ~/.bashrc; mkdir -p ~/.ray ~/site && cp $EMU_DIR/client/auth_token ~/.ray/auth_token && python -m pip install -q --no-deps --no-index --target ~/site $EMU_DIR/wheelhouse/ray_relu-*.whl"
        # Token auth in the host's shells, as the rendered YAML's setup commands do.
        ssh_node "$i" "for f in ~/.profile ~/.bashrc; do echo 'export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=\$HOME/.ray/auth_token  # ray_relu env' >> \$f; done"
    done
    ssh_node 0 "source ~/.bashrc; $env ray start --head --port=$GCS_PORT --node-ip-address=$(head_ip) --dashboard-host=0.0.0.0 --num-cpus=$HEAD_CPUS --object-store-memory=$OBJECT_STORE_BYTES" >/dev/null
    HEAD_S=$(since "$t0")
    for ((i = 1; i < NODES; i++)); do
        ssh_node "$i" "source ~/.bashrc; $env ray start --address=$(head_ip):$GCS_PORT --node-ip-address=$(node_ip "$i") --num-cpus=$NUM_CPUS --object-store-memory=$OBJECT_STORE_BYTES" >/dev/null
    done
}

write_cluster_json() { # what the Python helper (ray_relu.emulated) reads
    local ips="" i
    for ((i = 0; i < NODES; i++)); do ips+="${ips:+, }\"$(node_ip "$i")\""; done
    cat > "$EMU_DIR/cluster.json" <<EOF
{"id": $ID, "nodes": $NODES, "node_ips": [$ips], "head_ip": "$(head_ip)",
 "host_ip": "$HOST_IP", "dashboard": "http://$(head_ip):$DASHBOARD_PORT",
 "client_address": "ray://$(head_ip):$CLIENT_PORT", "gcs_address": "$(head_ip):$GCS_PORT",
 "auth_token_path": "$EMU_DIR/client/auth_token", "emu_dir": "$EMU_DIR",
 "rate": "$RATE", "delay": "$DELAY", "shaping": "$(cat "$EMU_DIR/shaping")",
 "cpus_per_node": $NUM_CPUS, "head_cpus": $HEAD_CPUS, "launcher": "$LAUNCHER",
 "autoscale": $([ "$AUTOSCALE" -eq 1 ] && echo true || echo false), "idle_timeout_minutes": $IDLE_MINUTES,
 "seconds": {"hosts": $HOSTS_S, "head": $HEAD_S, "all_nodes": $ALL_S, "total": $TOTAL_S}}
EOF
}

# --- commands ----------------------------------------------------------------------
UP_DONE=0
keep_logs() { # the logs of a failed `up`, kept after teardown for a look
    local dest="$FAILED_LOGS" f
    rm -rf "$dest"; install -d -m 0700 "$dest"
    for f in ray_up.log wheel.log local.yaml; do
        [ -f "$EMU_DIR/$f" ] && cp "$EMU_DIR/$f" "$dest/"
    done
    for f in "$EMU_DIR"/nodes/*/init.log "$EMU_DIR"/nodes/*/tmp/ray/session_2*/logs/monitor.*; do
        [ -f "$f" ] && cp "$f" "$dest/$(echo "${f#"$EMU_DIR"/nodes/}" | cut -d/ -f1)-$(basename "$f")"
    done
    log "logs of the failed up kept in $dest until the next '$EMU_CMD up' or '$EMU_CMD down'"
}

on_interrupt() {
    INTERRUPTED=1
    if [ -n "$CHILD" ]; then
        kill -TERM -- "-$CHILD" 2>/dev/null || kill -TERM "$CHILD" 2>/dev/null || true
    fi
    exit 130
}

on_up_exit() {
    local rc=$?
    [ "$UP_DONE" -eq 1 ] && return 0
    trap - EXIT
    trap 'log "teardown interrupted: run '"'$EMU_CMD down'"' to finish it"; exit 130' INT TERM
    if [ "$INTERRUPTED" -eq 1 ]; then
        log "interrupted: tearing cluster $ID down (nothing is kept)"
        cmd_down || true
        exit 130
    fi
    log "up failed (exit $rc): tearing down"
    keep_logs || true
    cmd_down || true
    exit $(( rc == 0 ? 1 : rc ))
}

cmd_up() {
    LAUNCHER="ray up"
    while [ $# -gt 0 ]; do
        case "$1" in
            --nodes) NODES=$2; shift 2 ;;
            --rate) RATE=$2; shift 2 ;;
            --delay) DELAY=$2; DELAY_ASKED=1; shift 2 ;;
            --cpus) NUM_CPUS=$2; shift 2 ;;
            --head-cpus) HEAD_CPUS=$2; shift 2 ;;
            --direct) LAUNCHER="ray start over ssh (--direct)"; shift ;;
            --autoscale) AUTOSCALE=1; shift ;;
            --idle-minutes) IDLE_MINUTES=$2; shift 2 ;;
            *) die "unknown option for up: $1 (see '$EMU_CMD up --help')" ;;
        esac
    done
    HEAD_CPUS=${HEAD_CPUS:-$NUM_CPUS}
    [ -e "$EMU_DIR" ] && die "cluster $ID is already up (or left over in $EMU_DIR): run '$EMU_CMD down' first"
    check_settings
    require_root
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        die "bridge $BRIDGE exists (left over?): run '$EMU_CMD down' first"
    fi
    trap on_up_exit EXIT
    trap on_interrupt INT TERM
    rm -rf "$FAILED_LOGS"      # an earlier failed up's logs: this up replaces them
    local t0; t0=$(now)
    save_state
    write_host_files
    build_wheel
    net_up
    local i
    for ((i = 0; i < NODES; i++)); do start_host "$i"; done
    wait_ssh
    HOSTS_S=$(since "$t0")
    log "$NODES hosts with sshd up in $HOSTS_S s"
    render_yaml
    local t1; t1=$(now)
    if [ "$LAUNCHER" = "ray up" ]; then ray_up "$t1"; else direct_start "$t1"; fi
    wait_nodes "$t1"
    TOTAL_S=$(since "$t0")
    write_cluster_json
    UP_DONE=1
    trap - EXIT INT TERM
    log "cluster $ID up in $TOTAL_S s: jobs and dashboard at http://$(head_ip):$DASHBOARD_PORT (token auth on)"
    local k=$NODES; [ "$HEAD_CPUS" -eq 0 ] && k=$((NODES - 1))
    if [ "$AUTOSCALE" -eq 1 ]; then
        log "  e.g. $EMU_CMD submit -- ray-relu fit --workers $((NODES - 1)) --cpus-per-worker 1 --address auto  (one-CPU actors: the autoscaler adds hosts)"
    else
        log "  e.g. $EMU_CMD submit -- ray-relu fit --workers $k --placement spread --address auto"
    fi
}

HOSTS_REMOVED=0
stop_hosts() {
    local i
    for ((i = 0; i < 64; i++)); do
        local name ns d
        name=$(node_name "$i"); ns=$(node_ns "$i"); d="$EMU_DIR/nodes/$name"
        [ -d "$d" ] || [ -e "/run/netns/$ns" ] || continue
        HOSTS_REMOVED=$((HOSTS_REMOVED + 1))
        if [ -f "$d/unshare.pid" ]; then
            local pid; pid=$(cat "$d/unshare.pid")
            # Only our own process: an `unshare` whose command line names this host.
            if [ -r "/proc/$pid/cmdline" ] \
                && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "emulate_node_init.sh $name $d "; then
                kill -TERM "$pid" 2>/dev/null || true
            fi
        fi
        if [ -e "/run/netns/$ns" ]; then
            # Whatever still lives in our namespace is ours.
            local pids t
            for ((t = 0; t < 50; t++)); do
                pids=$(ip netns pids "$ns" 2>/dev/null || true)
                [ -z "$pids" ] && break
                [ "$t" -ge 20 ] && kill -KILL $pids 2>/dev/null
                sleep 0.1
            done
            ip netns del "$ns" 2>/dev/null || true
        fi
        ip link del "$(node_veth "$i")" 2>/dev/null || true
    done
}

raylets_running() { # names of our hosts where a raylet process still runs
    local i out="" p
    for ((i = 0; i < NODES; i++)); do
        for p in $(ip netns pids "$(node_ns "$i")" 2>/dev/null); do
            if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = raylet ]; then out+=" $(node_name "$i")"; break; fi
        done
    done
    echo "${out# }"
}

cmd_down() {
    # Idempotent: every step tolerates what is already gone.
    set +e
    local t0 i; t0=$(now)
    if [ -f "$EMU_DIR/local.yaml" ] && [ -d "$EMU_DIR/client" ] && ssh_node 0 true 2>/dev/null; then
        # `ray down` with the local provider runs `ray stop` on the head only (the
        # workers are merely marked terminated), so stop the workers over SSH first,
        # while their GCS is still there to say goodbye to; each `ray stop` runs in
        # its host's own PID namespace. Then the real `ray down` for the head.
        local pids=()
        for ((i = 1; i < NODES; i++)); do
            ssh_node "$i" "source ~/.bashrc; ray stop" >/dev/null 2>&1 &
            pids+=($!)
        done
        for i in "${pids[@]}"; do wait "$i"; done
        [ "${#pids[@]}" -gt 0 ] && log "ray stop on the workers: done ($(since "$t0") s)"
        (client_env; cd "$REPO"; timeout 120 ray down -y "$EMU_DIR/local.yaml") \
            > "$EMU_DIR/ray_down.log" 2>&1 && log "ray down: ok ($(since "$t0") s)"
        local left; left=$(raylets_running)
        [ -n "$left" ] && log "raylets still running on: $left (killed with their namespaces)"
    fi
    stop_hosts
    local removed=()
    [ "$HOSTS_REMOVED" -gt 0 ] && removed+=("$HOSTS_REMOVED hosts (namespaces, processes)")
    ip link del "$BRIDGE" 2>/dev/null && removed+=("bridge $BRIDGE")
    # Ray's SSH ControlMaster sockets for this cluster (a fixed /tmp path in Ray).
    local ctl; ctl="/tmp/ray_ssh_$(printf %s "$(id -un)" | sha256sum | cut -c1-10)"
    rm -rf "$ctl/$(printf %s "$CLUSTER_NAME" | sha256sum | cut -c1-10)"
    rmdir "$ctl" 2>/dev/null
    # Nothing was mounted in this dir from the host's mount namespace: plain rm.
    [ -d "$EMU_DIR" ] && rm -rf --one-file-system "$EMU_DIR" && removed+=("$EMU_DIR")
    rmdir "$(dirname "$EMU_DIR")" 2>/dev/null
    if [ "${#removed[@]}" -gt 0 ]; then
        local what; what=$(printf '%s, ' "${removed[@]}")
        log "down in $(since "$t0") s: removed ${what%, }"
    else
        log "cluster $ID: nothing was up, nothing removed"
    fi
    set -e
    return 0
}

cmd_status() {
    local json=0
    [ "${1:-}" = "--json" ] && json=1
    if [ ! -f "$STATE" ] && ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        if [ "$json" -eq 1 ]; then echo '{"up": false}'; else echo "emulated cluster $ID: down"; fi
        return 3
    fi
    local alive; alive=$(alive_nodes || echo 0)
    if [ "$json" -eq 1 ]; then
        local info="{}"; [ -f "$EMU_DIR/cluster.json" ] && info=$(cat "$EMU_DIR/cluster.json")
        echo "{\"up\": true, \"alive_nodes\": ${alive:-0}, \"shaping\": \"$(cat "$EMU_DIR/shaping" 2>/dev/null)\", \"info\": $info}"
        return 0
    fi
    echo "emulated cluster $ID ($EMU_DIR): links $(cat "$EMU_DIR/shaping" 2>/dev/null)"
    local i
    for ((i = 0; i < NODES; i++)); do
        local state="no sshd"
        ssh_node "$i" true 2>/dev/null && state="sshd ok"
        echo "  $(node_name "$i") $(node_ip "$i") netns $(node_ns "$i"): $state"
    done
    local pool=""
    [ "$AUTOSCALE" -eq 1 ] && pool=" (autoscaling: worker hosts join on demand, leave after $IDLE_MINUTES idle min)"
    echo "  Ray nodes alive: ${alive:-?} of $NODES$pool; jobs/dashboard at http://$(head_ip):$DASHBOARD_PORT"
    (client_env; ray status --address "$(head_ip):$GCS_PORT" 2>&1) || true
}

cmd_shape() {
    [ -f "$STATE" ] || die "cluster $ID is not up"
    while [ $# -gt 0 ]; do
        case "$1" in
            --rate) RATE=$2; shift 2 ;;
            --delay) DELAY=$2; DELAY_ASKED=1; shift 2 ;;
            *) die "unknown option for shape: $1 (see '$EMU_CMD shape --help')" ;;
        esac
    done
    check_rate "$RATE"; check_delay "$DELAY"
    require_root
    save_state
    apply_shaping
    if [ -f "$EMU_DIR/cluster.json" ]; then
        "$PY" - "$EMU_DIR/cluster.json" "$RATE" "$DELAY" "$(cat "$EMU_DIR/shaping")" <<'EOF'
import json, sys
path, rate, delay, shaping = sys.argv[1:]
info = json.load(open(path))
info.update(rate=rate, delay=delay, shaping=shaping)
json.dump(info, open(path, "w"))
EOF
    fi
}

BLOCK_TABLE=rr_block
cmd_block() { # cmd_block block|unblock INDEX
    local action=$1 i=${2:-}
    [[ "$i" =~ ^[0-9]+$ && "$i" -lt "$NODES" ]] \
        || die "usage: $EMU_CMD $action INDEX  (a host 0..$((NODES - 1)); 0 is the head)"
    command -v nft >/dev/null || die "missing nft: run 'bash cluster/install-deps.sh'"
    local ns; ns=$(node_ns "$i")
    ip netns exec "$ns" nft delete table inet "$BLOCK_TABLE" 2>/dev/null || true
    if [ "$action" = block ]; then
        ip netns exec "$ns" nft -f - <<EOF || die "nft could not block $(node_name "$i")"
table inet $BLOCK_TABLE {
    chain in { type filter hook input priority 0; policy accept; iifname "eth0" drop; }
    chain out { type filter hook output priority 0; policy accept; oifname "eth0" drop; }
}
EOF
        log "$(node_name "$i") ($(node_ip "$i")): link blocked (every packet dropped)"
    else
        log "$(node_name "$i") ($(node_ip "$i")): link open again"
    fi
}

require_up() { [ -f "$EMU_DIR/cluster.json" ] || die "cluster $ID is not up: run '$EMU_CMD up' first"; }

anything_up() { # any trace of cluster $ID on this machine
    [ -e "$EMU_DIR" ] || ip link show "$BRIDGE" >/dev/null 2>&1 \
        || compgen -G "/run/netns/rr${ID}n*" >/dev/null
}

cmd_fetch() { # copy PATH from the head (relative: to its home) to DEST
    [ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $EMU_CMD fetch PATH [DEST]  (PATH on the head; relative to its home)"
    local src=$1 dest=${2:-.}
    # rsync -e takes one string; single quotes keep each option whole.
    rsync -a -e "ssh $(printf "'%s' " "${SSH_OPTS[@]}")" "root@$(head_ip):$src" "$dest" \
        || die "could not fetch $src from $(node_name 0) ($(head_ip))"
    log "fetched $(node_name 0):$src to $dest"
}

usage() { # the header of this file, from its second line to "Each emulated host"
    awk 'NR > 1 && /^# Each emulated host/ {exit} NR > 1 {print}' "${BASH_SOURCE[0]}" \
        | sed 's/^# \{0,1\}//' \
        | sed "s#cluster/emulate.sh#${RAY_RELU_EMU_CMD:-cluster/emulate.sh}#"
}

# `ACTION --help` (and -h) for every action: the usage, nothing done.
case "${2:-}" in -h|--help) [ -n "${1:-}" ] && { usage; exit 0; } ;; esac

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down)
        if [ -d "$FAILED_LOGS" ]; then
            rm -rf "$FAILED_LOGS" && log "removed the logs of an earlier failed up ($FAILED_LOGS)"
        fi
        if ! anything_up; then log "cluster $ID is not up: nothing to take down"; exit 0; fi
        require_root; cmd_down ;;
    status) shift; cmd_status "$@" ;;
    shape) shift; cmd_shape "$@" ;;
    block|unblock) require_up; require_root; cmd_block "$@" ;;
    submit) shift; require_up; client_env; cd "$REPO"
        log "Ray's own hints below (ray job logs|status|stop ID) need this cluster's address" \
            "and token: run them as '$EMU_CMD logs ID' or '$EMU_CMD exec -- ray job status ID'"
        exec ray job submit --address "$RAY_API_SERVER_ADDRESS" "$@" ;;
    logs) shift; require_up; [ $# -ge 1 ] || die "usage: $EMU_CMD logs JOB_ID [--follow]"
        client_env; cd "$REPO"; exec ray job logs --address "$RAY_API_SERVER_ADDRESS" "$@" ;;
    fetch) shift; require_up; cmd_fetch "$@" ;;
    exec) shift; [ "${1:-}" = "--" ] && shift; require_up; client_env; exec "$@" ;;
    ssh) shift; require_up; [ $# -ge 1 ] || die "usage: $EMU_CMD ssh INDEX [CMD...]"
        i=$1; shift; ssh_node "$i" "$@" ;;
    env) require_up; client_env
        # Quoted for `eval "$(... env)"`; RAY_RELU_EMU_CMD is this script's, not a client's.
        for v in $(compgen -e | grep -E '^(HOME|TMPDIR|RAY_[A-Za-z_0-9]*)$' \
                   | grep -v '^RAY_RELU_EMU_CMD$' | sort); do
            printf 'export %s=%q\n' "$v" "${!v}"
        done ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac

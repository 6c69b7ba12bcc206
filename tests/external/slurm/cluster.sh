#!/usr/bin/env bash
# A private, throw-away 2-node SLURM cluster on this one machine, for tests.
#
#   cluster.sh start DIR     install slurm+munge if needed, write the config into DIR,
#                            start munged, slurmctld and two slurmd (nodes n1, n2), wait
#                            until both nodes are idle, then print `export VAR=...` lines
#                            (eval them to use sbatch/squeue/scancel against this cluster)
#   cluster.sh stop DIR      cancel all jobs, stop every daemon, kill leftover job processes
#   cluster.sh status DIR    show nodes and queue
#   cluster.sh env DIR       print the `export VAR=...` lines again
#   cluster.sh kill-node DIR NODE    SIGKILL one node's slurmd, slurmstepd and job
#                                    processes (a crash, for chaos tests)
#   cluster.sh start-node DIR NODE   start that node's slurmd again, wait until it is back
#
# Everything (config, state, spool, logs, munge socket and key) lives under DIR; the
# system's /etc/slurm, /etc/munge and /run/munge are never used.  Both simulated nodes
# run on this host (same `hostname`), each slurmd on its own port; jobs can tell the
# nodes apart by $SLURMD_NODENAME.
#
# Environment knobs (all optional):
#   CLUSTER_EXTRA_CONF   extra slurm.conf lines appended verbatim (later lines win)
#   CLUSTER_TIMEOUT      seconds to wait for the nodes to become idle (default 90)
#
# Needs root (SlurmUser=root, and apt-get for the install).
set -euo pipefail

readonly NODES=(n1 n2)
readonly CPUS_PER_NODE=2

log() { printf '[cluster.sh %s] %s\n' "$(date +%T.%3N)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0" >&2
    exit 2
}

# ---------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------
ensure_installed() {
    local tool missing=()
    for tool in slurmctld slurmd sbatch munged; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    ((${#missing[@]})) || return 0
    [[ $(id -u) -eq 0 ]] || die "${missing[*]} missing, and not root: cannot apt-get install"
    command -v apt-get >/dev/null 2>&1 || die "${missing[*]} missing, and no apt-get"
    log "installing slurm-wlm and munge with apt-get"
    # Lock::Timeout: another apt-get may be running (e.g. a parallel setup step).
    export DEBIAN_FRONTEND=noninteractive
    apt-get -q -o DPkg::Lock::Timeout=300 update >&2
    apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends \
        slurm-wlm munge >&2
    command -v slurmctld >/dev/null 2>&1 || die "slurmctld still missing after install"
}

# ---------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------

# Is a TCP port in use (listening or otherwise bound) on this machine?
port_in_use() {
    local port=$1 hex
    if command -v ss >/dev/null 2>&1; then
        [[ -n $(ss -Htan "( sport = :$port )" 2>/dev/null) ]]
        return
    fi
    # Fallback without iproute2: local ports are column 2 of /proc/net/tcp{,6}, in hex.
    hex=$(printf ':%04X' "$port")
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '{print $2}' | grep -q -- "$hex\$"
}

# Print a free port in 20000-31999: below Linux's usual ephemeral range (32768-60999),
# so a client connection cannot grab it between our check and the daemon's bind().
# Ports already handed out in this run are passed as arguments and avoided.
pick_port() {
    local port i
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + RANDOM % 12000))
        [[ " $* " == *" $port "* ]] && continue
        port_in_use "$port" || { echo "$port"; return 0; }
    done
    die "no free TCP port found in 20000-31999"
}

# Is process PID alive?  A zombie counts as dead: our daemons are reparented to init
# (setsid), which may take a second or two to reap them, and `kill -0` succeeds on
# zombies.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }   # field 3 (state) follows "(comm) "
    [[ ${stat:0:1} != Z ]]
}

# Is the process with the pid stored in FILE alive?
pidfile_alive() {
    [[ -s $1 ]] && alive "$(<"$1")"
}

# Start a daemon in the background, detached from our session (so the caller's Ctrl-C
# or closing pipe does not hit it), stdio to its log, and record its pid.
#   spawn NAME LOGFILE CMD...
spawn() {
    local name=$1 logfile=$2
    shift 2
    # CLUSTER_DIR marks our daemons' environment, so `stop` can find stragglers without
    # matching on names (slurmstepd inherits it, but overwrites its environ, see below).
    CLUSTER_DIR="$DIR" setsid "$@" </dev/null >>"$logfile" 2>&1 &
    echo $! >"$DIR/run/$name.pid"
}

print_env() {
    echo "export SLURM_CONF=$DIR/etc/slurm.conf"
    # Let the clients of this cluster use our munged too (slurm.conf's AuthInfo covers
    # the slurm commands; this covers `munge`/`unmunge` run by hand).
    echo "export MUNGE_SOCKET=$DIR/munge/munge.socket"
}

dump_logs() {
    local f
    for f in "$DIR"/log/*; do
        [[ -s $f ]] || continue
        log "---- tail of $f"
        tail -n 20 "$f" >&2 || true
    done
}

# ---------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------
write_config() {
    local host ctld_port node_ports=() port n i
    host=$(hostname -s)
    ctld_port=$(pick_port)
    for n in "${NODES[@]}"; do
        port=$(pick_port "$ctld_port" "${node_ports[@]}")
        node_ports+=("$port")
    done

    cat >"$DIR/etc/slurm.conf" <<EOF
# Generated by tests/external/slurm/cluster.sh for a private test cluster in $DIR
ClusterName=tftest
# slurmctld insists that the short hostname matches; the address avoids relying on
# name resolution (CI containers often cannot resolve their own hostname).
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root

# Munge on our own socket; cred_expire also sets how long a requeued job waits before
# it may start again (BeginTime = requeue time + cred_expire + 1).  Default 120 s,
# minimum 5.
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=5

StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pidfile
SlurmdPidFile=$DIR/run/slurmd-%n.pidfile
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups (unavailable or read-only in containers), no accounting daemon.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
# Trust the node lines below rather than the hardware (CI machines may be smaller).
SlurmdParameters=config_overrides

SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
# A node whose slurmd stops answering is set DOWN after SlurmdTimeout (its jobs are
# requeued or fail); it comes back by itself once its slurmd registers again.
ReturnToService=2
SlurmdTimeout=30
# Batch jobs may be requeued (scontrol requeue); no automatic requeue on exit codes.
JobRequeue=1
# Finished jobs stay visible to scontrol/squeue for this long (no sacct here).
MinJobAge=300
# Seconds between SIGTERM and SIGKILL when a job is cancelled or requeued.
KillWait=5
InactiveLimit=0

EOF
    i=0
    for n in "${NODES[@]}"; do
        echo "NodeName=$n NodeHostname=$host NodeAddr=127.0.0.1 Port=${node_ports[$i]}" \
            "CPUs=$CPUS_PER_NODE Sockets=1 CoresPerSocket=$CPUS_PER_NODE ThreadsPerCore=1" \
            "RealMemory=1000 State=UNKNOWN" >>"$DIR/etc/slurm.conf"
        i=$((i + 1))
    done
    local nodelist
    nodelist=$(IFS=,; echo "${NODES[*]}")
    echo "PartitionName=debug Nodes=$nodelist Default=YES MaxTime=INFINITE State=UP" \
        >>"$DIR/etc/slurm.conf"
    if [[ -n ${CLUSTER_EXTRA_CONF:-} ]]; then
        printf '\n# CLUSTER_EXTRA_CONF\n%s\n' "$CLUSTER_EXTRA_CONF" >>"$DIR/etc/slurm.conf"
    fi
}

# ---------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------
# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.2 s until it succeeds; fail
# (with the logs) after SECONDS, or at once if one of our daemons has died.
wait_for() {
    local timeout=$1 what=$2 deadline f
    shift 2
    deadline=$((SECONDS + timeout))
    until "$@"; do
        for f in "$DIR"/run/*.pid; do
            [[ -e $f ]] || continue
            if ! pidfile_alive "$f"; then
                log "$(basename "$f" .pid) died while waiting for $what"
                dump_logs
                return 1
            fi
        done
        if ((SECONDS >= deadline)); then
            log "timed out after ${timeout}s waiting for $what"
            dump_logs
            return 1
        fi
        sleep 0.2
    done
}

quiet() { "$@" >/dev/null 2>&1; }

nodes_idle() {
    # Both nodes registered and idle (not idle*, i.e. responding; not drained/down).
    local states
    states=$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u) || return 1
    [[ $(grep -c ' idle$' <<<"$states") -eq ${#NODES[@]} ]]
}

cmd_start() {
    ensure_installed
    [[ $(id -u) -eq 0 ]] || die "must run as root (SlurmUser=root)"
    if pidfile_alive "$DIR/run/slurmctld.pid"; then
        die "a cluster is already running in $DIR (run: $0 stop $DIR)"
    fi
    mkdir -p "$DIR"/{etc,state,log,run,munge} "${NODES[@]/#/$DIR/spool/}"
    DIR=$(cd "$DIR" && pwd)   # absolute path for the config
    # The daemons (and slurmstepd, which inherits it) keep their working directory busy:
    # make that DIR, not wherever the caller happens to be.
    cd "$DIR"
    local sock="$DIR/munge/munge.socket"
    # A unix socket path is limited to 107 bytes; slurmstepd also puts sockets in spool.
    ((${#sock} < 100)) || die "DIR path too long for a unix socket: $sock"

    write_config
    export SLURM_CONF="$DIR/etc/slurm.conf"
    export MUNGE_SOCKET="$sock"

    # --- munge: own key, socket, pid file and seed; -F foreground (logs to stderr),
    #     -f: run even if it finds the permissions of some path too lax
    if [[ ! -s $DIR/munge/munge.key ]]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey -c -k "$DIR/munge/munge.key"
        else
            dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        fi
        chmod 0600 "$DIR/munge/munge.key"
    fi
    spawn munged "$DIR/log/munged.log" munged -F -f \
        --socket="$sock" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/munged.seed"
    wait_for 20 "munged socket" test -S "$sock"

    # --- slurmctld (-D foreground, -i ignore any stale state in a reused DIR).  In the
    #     foreground the slurm daemons log to their log file and stderr: *.out has the
    #     same lines, plus anything said before the log file was opened.
    spawn slurmctld "$DIR/log/slurmctld.out" slurmctld -D -i -f "$SLURM_CONF"
    wait_for 30 "slurmctld to answer" quiet scontrol -o ping

    # --- one slurmd per simulated node
    local n
    for n in "${NODES[@]}"; do
        spawn "slurmd-$n" "$DIR/log/slurmd-$n.out" slurmd -D -N "$n" -f "$SLURM_CONF"
    done
    wait_for "${CLUSTER_TIMEOUT:-90}" "nodes ${NODES[*]} to be idle" nodes_idle

    log "cluster up in $DIR (${SECONDS}s)"
    print_env
}

# ---------------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------------

any_alive() {
    local pid
    for pid in "$@"; do alive "$pid" && return 0; done
    return 1
}

# Stop the daemons recorded in run/NAME.pid for each NAME: SIGTERM to all of them, wait
# up to 10 s for them to exit, SIGKILL what is left.
stop_daemons() {
    local name pids=() pid i
    for name in "$@"; do
        if pidfile_alive "$DIR/run/$name.pid"; then
            pid=$(<"$DIR/run/$name.pid")
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        rm -f "$DIR/run/$name.pid"
    done
    for ((i = 0; i < 100; i++)); do
        any_alive "${pids[@]}" || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if alive "$pid"; then
            log "pid $pid ignored SIGTERM, killing"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

# Pids of processes that belong to this cluster (read from /proc/PID/environ):
#   job processes: our SLURM_CONF and a SLURM_JOB_ID (jobs inherit the submitter's env);
#   with "all":    also our daemons (they carry CLUSTER_DIR, see spawn) and slurmstepd
#                  (it overwrites its environ with its title, but keeps our SLURM_CONF).
# Never ourselves or our ancestors (the caller may have our SLURM_CONF exported, and may
# itself run inside a job).
leftover_pids() {
    local which=${1:-all} conf="$DIR/etc/slurm.conf" p pid env cmd ancestors=" " a=$$
    while [[ -n $a && $a -gt 1 ]]; do
        ancestors+="$a "
        a=$(awk '/^PPid:/ {print $2}' "/proc/$a/status" 2>/dev/null || true)
    done
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [[ $ancestors == *" $pid "* ]] && continue
        env=$(tr '\0' '\n' 2>/dev/null <"$p/environ") || continue
        if grep -qxF "SLURM_CONF=$conf" <<<"$env" && grep -q '^SLURM_JOB_ID=' <<<"$env"; then
            echo "$pid"
        elif [[ $which == all ]]; then
            cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
            if grep -qxF "CLUSTER_DIR=$DIR" <<<"$env" \
                || { [[ $cmd == slurmstepd* ]] && grep -qxF "SLURM_CONF=$conf" <<<"$env"; }
            then
                echo "$pid"
            fi
        fi
    done
}

# SIGKILL the pids listed (whitespace-separated) in $1, if any.
kill_pids() {
    local pids
    read -r -d '' -a pids <<<"$1" || true
    ((${#pids[@]})) || return 0
    log "killing processes: ${pids[*]}"
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

cmd_stop() {
    # 1. Cancel every job while slurmctld is there to record it (pending ones first, so
    #    nothing new starts), then SIGKILL the job processes directly: a cancel sends
    #    SIGTERM and waits KillWait before SIGKILL, and there is nothing to wait for.
    if pidfile_alive "$DIR/run/slurmctld.pid" && quiet scontrol -o ping; then
        local jobs
        jobs=$(squeue -h -o '%A' 2>/dev/null | tr '\n' ' ') || jobs=""
        if [[ -n ${jobs// /} ]]; then
            log "cancelling jobs: $jobs"
            quiet scancel --state=PENDING || true
            # shellcheck disable=SC2086  # word splitting of the job list is intended
            quiet scancel $jobs || true
        fi
    fi
    kill_pids "$(leftover_pids jobs)"

    # 2. Daemons: nodes first, then the controller, then munge.
    stop_daemons "${NODES[@]/#/slurmd-}"
    stop_daemons slurmctld
    stop_daemons munged

    # 3. Anything left (slurmstepd, job processes that cleared their environment's
    #    SLURM_JOB_ID are not found: they die with their session when stepd is gone).
    kill_pids "$(leftover_pids all)"
    log "cluster in $DIR stopped"
}

# ---------------------------------------------------------------------------------
# chaos: crash / revive one simulated node
# ---------------------------------------------------------------------------------
check_node() {
    [[ " ${NODES[*]} " == *" $1 "* ]] || die "unknown node '$1' (nodes: ${NODES[*]})"
}

# Like a power cut: SIGKILL the node's slurmd, its slurmstepds and job processes.  The
# controller notices after SlurmdTimeout (node DOWN, its jobs NODE_FAIL or requeued).
cmd_kill_node() {
    local node=$1 conf="$DIR/etc/slurm.conf" p pid env ppid pids=""
    check_node "$node"
    if pidfile_alive "$DIR/run/slurmd-$node.pid"; then
        pids=$(<"$DIR/run/slurmd-$node.pid")
    fi
    # Job processes know their node (SLURMD_NODENAME); their slurmstepd is the parent of
    # the batch script / task processes.
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        env=$(tr '\0' '\n' 2>/dev/null <"$p/environ") || continue
        grep -qxF "SLURM_CONF=$conf" <<<"$env" || continue
        grep -qxF "SLURMD_NODENAME=$node" <<<"$env" || continue
        pids+=" $pid"
        ppid=$(awk '/^PPid:/ {print $2}' "$p/status" 2>/dev/null) || continue
        if [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$ppid/cmdline") == slurmstepd* ]]; then
            pids+=" $ppid"
        fi
    done
    kill_pids "$(tr ' ' '\n' <<<"$pids" | sort -u)"
    rm -f "$DIR/run/slurmd-$node.pid"
}

# Start the node's slurmd again and wait until the controller hears from it.
cmd_start_node() {
    local node=$1
    check_node "$node"
    pidfile_alive "$DIR/run/slurmd-$node.pid" && die "slurmd for $node is running"
    cd "$DIR"
    spawn "slurmd-$node" "$DIR/log/slurmd-$node.out" slurmd -D -N "$node" -f "$SLURM_CONF"
    # Responding = its state in sinfo has no '*' suffix, and it is not down.
    node_back() {
        local st
        st=$(sinfo -h -N -n "$node" -o '%t' 2>/dev/null | head -n1)
        [[ -n $st && $st != *'*' && $st != down* ]]
    }
    wait_for "${CLUSTER_TIMEOUT:-90}" "node $node to come back" node_back
}

cmd_status() {
    sinfo -N -l
    squeue -l
}

# ---------------------------------------------------------------------------------
(($# >= 2)) || usage
DIR=$2
if [[ $1 != start ]]; then
    [[ -d $DIR ]] || die "no such directory: $DIR"
    DIR=$(cd "$DIR" && pwd)
    export SLURM_CONF="$DIR/etc/slurm.conf"
fi
case $1 in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) print_env ;;
    kill-node) (($# == 3)) || usage; cmd_kill_node "$3" ;;
    start-node) (($# == 3)) || usage; cmd_start_node "$3" ;;
    *) usage ;;
esac

#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster on localhost for the tests: munge, a private MariaDB on
# 127.0.0.1:3307, slurmdbd (so sacct works), slurmctld, and `slurmd -N localhost`. No systemd and no
# cgroup setup needed. Needs root on Linux (Debian 12: Slurm 22.05). Undo with slurm-down.sh.
#
# Environment:
#   SLURM_LOCAL_STATE=/var/lib/slurm-local  private state: MariaDB datadir, recorded pids, db password
#   SLURM_LOCAL_ACCOUNTING=1   0: no slurmdbd/MariaDB (then sacct fails, and submitit never sees a
#                              cancelled job as done)
#   SLURM_LOCAL_CPUS=8         CPUs declared for the node (config_overrides: may exceed the cores)
#   SLURM_LOCAL_CRED_EXPIRE=10 seconds a requeued job waits before it may start again (default 120)
#   SLURM_LOCAL_CLEAN=1        0: keep controller state and accounting (job ids continue)
set -euo pipefail

STATE=${SLURM_LOCAL_STATE:-/var/lib/slurm-local}
ACCOUNTING=${SLURM_LOCAL_ACCOUNTING:-1}
CPUS=${SLURM_LOCAL_CPUS:-8}
CRED_EXPIRE=${SLURM_LOCAL_CRED_EXPIRE:-10}
CLEAN=${SLURM_LOCAL_CLEAN:-1}
PIDS=$STATE/pids
DB_RUN=$STATE/mysql-run  # socket and pid file: owned by mysql, which mariadbd runs as
DB_SOCK=$DB_RUN/mysqld.sock
T0=$EPOCHREALTIME

log() { awk -v t="$EPOCHREALTIME" -v t0="$T0" -v m="$*" 'BEGIN { printf "[slurm-up %6.2fs] %s\n", t - t0, m }' >&2; }
die() { echo "slurm-up: error: $*" >&2; exit 1; }

# wait_for SECONDS WHAT CMD...: poll CMD every 0.1 s until it succeeds.
wait_for() {
    local limit=$1 what=$2; shift 2
    local end=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        [[ $(date +%s) -lt $end ]] || die "$what not ready after ${limit}s (see /var/log/slurm and $STATE)"
        sleep 0.1
    done
}

# alive PID NAME: the process exists, is not a zombie, and is still NAME (guards against pid reuse).
alive() {
    [[ -r /proc/$1/stat && "$(cat /proc/"$1"/comm 2>/dev/null)" == "$2" ]] || return 1
    [[ "$(awk '{print $3}' /proc/"$1"/stat 2>/dev/null)" != Z ]]
}

record() {  # record NAME PIDFILE: remember a daemon we started, for slurm-down.sh
    local pid; pid=$(cat "$2")
    echo "$1 $pid" >> "$PIDS"
    log "$1 started (pid $pid)"
}

preflight() {
    [[ $(uname -s) == Linux ]] || die "needs Linux (this is $(uname -s))"
    [[ $EUID -eq 0 ]] || die "needs root to start the SLURM daemons"
    if [[ -s $PIDS ]]; then
        while read -r name pid; do
            alive "$pid" "$name" && die "a cluster is already up ($name pid $pid); run slurm-down.sh first"
        done < "$PIDS"
    fi
    if command -v scontrol >/dev/null && timeout 5 scontrol ping 2>/dev/null | grep -q UP; then
        die "a slurmctld is already answering; run slurm-down.sh first"
    fi
    mkdir -p "$STATE"
    : > "$PIDS"
}

install_packages() {
    local want=(slurmctld slurmd slurm-client munge) missing=()
    [[ $ACCOUNTING == 1 ]] && want+=(slurmdbd mariadb-server)
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return
    command -v apt-get >/dev/null || die "packages ${missing[*]} are missing and apt-get is not available"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Without --no-install-recommends slurm-wlm pulls in 42 packages (hdf5, rocm-smi, ipmi...).
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } \
        || die "apt-get install ${missing[*]} failed"
    log "packages installed"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "reusing the running munged"  # not ours: slurm-down.sh leaves it alone
        return
    fi
    [[ -s /etc/munge/munge.key ]] || mungekey --create >/dev/null
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 munged sh -c 'munge -n | unmunge'
    record munged /run/munge/munged.pid
}

write_slurm_conf() {
    local mem; mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
    chown slurm:slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
    if [[ $CLEAN == 1 ]]; then  # fresh controller state: job ids restart, no stale jobs come back
        rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*
    fi
    local acct="AccountingStorageType=accounting_storage/none"
    [[ $ACCOUNTING == 1 ]] && acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
    cat > /etc/slurm/slurm.conf <<CONF
# Written by tests/slurm/slurm-up.sh: one node on localhost, for tests. No cgroups, no enforcement.
ClusterName=localcluster
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits this long (BeginTime) before it may restart; the default 120 s.
AuthInfo=cred_expire=$CRED_EXPIRE
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
MailProg=/bin/true
# /proc-based tracking and no task plugin: works without cgroup.conf on this kind of host.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
$acct
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
# After an external requeue nothing wakes the scheduler when BeginTime passes: poll often.
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it a job with no --mem gets the whole node's memory and jobs run one at a time.
DefMemPerCPU=1024
# Trust CPUs/RealMemory below instead of the hardware: more job slots than cores.
SlurmdParameters=config_overrides
ReturnToService=2
# submitit's job process ignores SIGTERM; SIGKILL comes KillWait s later (default 30).
KillWait=5
# Jobs in "high" preempt jobs in "debug" by requeueing them; send them submitit's USR2 first.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=30
PartitionName=high Nodes=ALL Default=NO MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
CONF
    if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
        # Pure cgroup v2 host (UNTESTED here: the test machine is a v1/v2 hybrid, which needs no file).
        printf 'CgroupPlugin=cgroup/v2\nIgnoreSystemd=yes\n' > /etc/slurm/cgroup.conf
    fi
    log "wrote /etc/slurm/slurm.conf ($CPUS CPUs, ${mem} MB)"
}

start_mariadb() {
    local data=$STATE/mysql logs=$STATE/mysql-log pass
    [[ $CLEAN == 1 ]] && rm -rf "$data"
    mkdir -p "$data" "$logs" "$DB_RUN"
    chown mysql:mysql "$data" "$logs" "$DB_RUN"  # mariadbd runs as mysql: it cannot write to /var/log/slurm
    if [[ ! -d $data/mysql ]]; then
        mariadb-install-db --user=mysql --datadir="$data" --auth-root-authentication-method=socket \
            --skip-test-db >/dev/null 2>&1 || die "mariadb-install-db failed"
    fi
    # setsid and closed stdio: a daemon left holding the caller's stdout would keep a pipe (| tee) open.
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$data" --socket="$DB_SOCK" \
        --pid-file="$DB_RUN/mysqld.pid" --port=3307 --bind-address=127.0.0.1 --log-error="$logs/mariadb.err" \
        --innodb-buffer-pool-size=256M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
        </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadbd mariadb-admin --socket="$DB_SOCK" ping
    wait_for 10 "mariadbd pid file" test -s "$DB_RUN/mysqld.pid"
    record mariadbd "$DB_RUN/mysqld.pid"
    [[ -s $STATE/db.pass ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$STATE/db.pass")
    pass=$(cat "$STATE/db.pass")
    mariadb --socket="$DB_SOCK" -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
}

start_slurmdbd() {
    cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3307
StorageUser=slurm
StoragePass=$(cat "$STATE/db.pass")
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
CONF
    chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf  # slurmdbd insists
    slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
    record slurmdbd /run/slurmdbd.pid
}

start_slurm() {
    slurmctld
    wait_for 30 slurmctld sh -c 'scontrol ping | grep -q UP'
    record slurmctld /run/slurmctld.pid
    slurmd -N localhost  # forces the node name, whatever this machine's hostname is
    wait_for 30 "slurmd (node idle)" sh -c '[ "$(sinfo -h -n localhost -o %T)" = idle ]'
    record slurmd /run/slurmd.pid
}

smoke_test() {
    local id state
    id=$(timeout 60 sbatch --parsable --wait --wrap 'hostname; srun true' -o /dev/null) \
        || die "the smoke-test job did not complete"
    if [[ $ACCOUNTING == 1 ]]; then
        wait_for 10 "sacct record of job $id" sh -c "sacct -n -X -P -o State -j $id | grep -q COMPLETED"
    fi
    log "smoke-test job $id COMPLETED"
}

main() {
    preflight
    install_packages
    start_munge
    write_slurm_conf
    if [[ $ACCOUNTING == 1 ]]; then
        start_mariadb
        start_slurmdbd
    fi
    start_slurm
    smoke_test
    log "cluster up: partitions debug (default) and high; stop it with tests/slurm/slurm-down.sh"
}

main "$@"

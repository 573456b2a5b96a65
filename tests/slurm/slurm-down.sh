#!/usr/bin/env bash
# Stop the cluster started by slurm-up.sh: cancel jobs, then signal only the daemons it recorded in
# $SLURM_LOCAL_STATE/pids, each after checking its /proc comm (pids get reused). Nothing is killed by
# name. A munged that slurm-up.sh found running is not ours and is left alone.
set -euo pipefail

STATE=${SLURM_LOCAL_STATE:-/var/lib/slurm-local}
PIDS=$STATE/pids
T0=$EPOCHREALTIME

log() { awk -v t="$EPOCHREALTIME" -v t0="$T0" -v m="$*" 'BEGIN { printf "[slurm-down %6.2fs] %s\n", t - t0, m }' >&2; }

# alive PID NAME: exists, still NAME, and not a zombie (PID 1 here reaps orphans ~2 s late).
alive() {
    [[ -r /proc/$1/stat && "$(cat /proc/"$1"/comm 2>/dev/null)" == "$2" ]] || return 1
    [[ "$(awk '{print $3}' /proc/"$1"/stat 2>/dev/null)" != Z ]]
}

cancel_jobs() {
    command -v scontrol >/dev/null && timeout 5 scontrol ping 2>/dev/null | grep -q UP || return 0
    local jobs; jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    [[ -n ${jobs// } ]] || return 0
    log "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    local end=$(( $(date +%s) + 20 ))  # KillWait=5: SIGKILL follows SIGTERM after 5 s
    while [[ -n $(squeue -h -o %A 2>/dev/null) && $(date +%s) -lt $end ]]; do sleep 0.2; done
}

stop() {  # stop NAME PID: TERM, wait up to 20 s, then KILL
    local name=$1 pid=$2
    alive "$pid" "$name" || { log "$name (pid $pid) already gone"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do alive "$pid" "$name" || { log "$name (pid $pid) stopped"; return 0; }; sleep 0.1; done
    log "$name (pid $pid) ignored SIGTERM for 20 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

remove_stale_pidfiles() {
    # slurmctld/slurmdbd run as slurm and cannot unlink their pidfiles in root-owned /run; a stale
    # one makes the package's prerm (scancel) fail and `apt-get remove` abort.
    local name file pid
    for name in slurmctld slurmdbd slurmd; do
        file=/run/$name.pid
        [[ -f $file ]] || continue
        pid=$(cat "$file" 2>/dev/null || true)
        [[ -n $pid ]] && alive "$pid" "$name" && continue
        rm -f "$file"
    done
}

main() {
    [[ $EUID -eq 0 ]] || { echo "slurm-down: error: needs root" >&2; exit 1; }
    cancel_jobs
    if [[ -s $PIDS ]]; then
        # Reverse start order: slurmd, slurmctld, slurmdbd, mariadbd, munged.
        tac "$PIDS" | while read -r name pid; do stop "$name" "$pid"; done
    else
        log "no recorded daemons in $PIDS"
    fi
    rm -f "$PIDS"
    remove_stale_pidfiles
    log "cluster down"
}

main "$@"

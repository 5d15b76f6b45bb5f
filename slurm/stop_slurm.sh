#!/usr/bin/env bash
# Stop the local one-node Slurm cluster started by slurm/start_slurm.sh:
# slurmd, slurmctld, slurmdbd, mariadbd, munged (reverse start order).
# Each daemon gets SIGTERM and up to 15 s to exit cleanly, then SIGKILL.
# Running jobs are cancelled first. Packages, configs, the accounting
# database and logs are kept. Safe to call when nothing is running.
set -euo pipefail

if [[ $EUID -ne 0 ]]; then
    exec sudo "$0" "$@"
fi

log() { echo "[stop_slurm] $*" >&2; }

# stop <process-name...>: TERM all matching processes, wait, then KILL leftovers.
stop() {
    local name pids=()
    for name in "$@"; do
        # pgrep -x: exact process name, never a broad pattern match.
        mapfile -t -O "${#pids[@]}" pids < <(pgrep -x "$name" || true)
    done
    ((${#pids[@]})) || return 0
    log "stopping $1 (pid ${pids[*]})"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local i
    for ((i = 0; i < 75; i++)); do
        kill -0 "${pids[@]}" 2>/dev/null || return 0
        sleep 0.2
    done
    log "$1 did not exit after 15s, sending SIGKILL"
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

# Cancel all jobs first: job processes (slurmstepd and its children) are not
# children of slurmd and would otherwise outlive it.
if pgrep -x slurmctld >/dev/null || pgrep -x slurmctld-wlm >/dev/null; then
    if [[ -n "$(timeout 10 squeue -h -o %i 2>/dev/null)" ]]; then
        log "cancelling all jobs"
        timeout 10 scancel --partition=debug 2>/dev/null || true
        for ((i = 0; i < 75; i++)); do   # KillWait is 5 s, allow 15
            pgrep -x slurmstepd >/dev/null || break
            sleep 0.2
        done
    fi
fi

# Debian's binaries are alternatives symlinks to *-wlm, accept both names.
stop slurmd slurmd-wlm
# Only left if the cancel above failed (e.g. slurmctld was already down).
stop slurmstepd
stop slurmctld slurmctld-wlm
stop slurmdbd
stop mariadbd mysqld
stop munged
log "done"

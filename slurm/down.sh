#!/usr/bin/env bash
# Stop the single-node Slurm cluster started by slurm/up.sh.
#
#   slurm/down.sh           # stop slurmd, slurmctld, slurmdbd, mariadb, munged
#   slurm/down.sh --wipe    # also cancel all jobs and delete Slurm state and
#                           # the accounting DB (job ids restart at 1)
#
# Idempotent: daemons that are not running are skipped.
set -euo pipefail

T0=$(date +%s.%N)
elapsed() { awk -v t0="$T0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }'; }
log() { echo "[down.sh +$(elapsed)s] $*"; }

WIPE=0
for a in "$@"; do
    case "$a" in
        --wipe) WIPE=1 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown argument: $a" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "must run as root" >&2; exit 1; }
# up.sh and down.sh never run at the same time (shared lock)
exec 9>/run/memsweep-slurm.lock
flock -w 300 9 || { echo "another slurm/up.sh or down.sh is running" >&2; exit 1; }

RUN=/run/slurm
DB_NAME=slurm_acct_db

# pids of a daemon: from its pid file, else by exact process name
daemon_pids() {
    local name=$1 pidfile=$2 p
    if [ -s "$pidfile" ]; then
        p=$(cat "$pidfile" 2>/dev/null || true)
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null && [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "$name" ]; then
            echo "$p"; return
        fi
    fi
    pgrep -x "$name" 2>/dev/null || true
}

# stop NAME PIDFILE [TIMEOUT]: SIGTERM, wait, then SIGKILL
stop() {
    local name=$1 pidfile=$2 timeout=${3:-20} pids end
    pids=$(daemon_pids "$name" "$pidfile")
    if [ -z "$pids" ]; then
        log "$name not running"; rm -f "$pidfile"; return 0
    fi
    log "stopping $name (pid $(echo $pids))"
    kill -TERM $pids 2>/dev/null || true
    end=$(( $(date +%s) + timeout ))
    while kill -0 $pids 2>/dev/null; do
        if [ "$(date +%s)" -ge "$end" ]; then
            log "$name did not stop in ${timeout}s: SIGKILL"
            kill -KILL $pids 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    rm -f "$pidfile"
}

if [ $WIPE -eq 1 ] && scontrol ping >/dev/null 2>&1; then
    log "cancelling all jobs"
    scancel --full --quiet --user=root 2>/dev/null || true
    for u in $(squeue -h -o %u 2>/dev/null | sort -u); do scancel --full --quiet --user="$u" 2>/dev/null || true; done
fi

stop slurmd $RUN/slurmd.pid
stop slurmctld $RUN/slurmctld.pid
if [ $WIPE -eq 1 ]; then
    # job step daemons keep running without slurmd; their state is going away
    steps=$(pgrep -x slurmstepd 2>/dev/null || true)
    if [ -n "$steps" ]; then
        log "killing leftover slurmstepd (pid $(echo $steps))"
        kill -KILL $steps 2>/dev/null || true
    fi
fi
stop slurmdbd $RUN/slurmdbd.pid

if [ $WIPE -eq 1 ] && [ -d /var/lib/mysql/$DB_NAME ] && ! mariadb-admin ping >/dev/null 2>&1 \
        && [ -x /usr/bin/mysqld_safe ]; then
    # the DB must be dropped by a running server (InnoDB keeps a dictionary)
    log "starting mariadb to drop $DB_NAME"
    install -d -o mysql -g mysql -m 755 /run/mysqld
    setsid /usr/bin/mysqld_safe --user=mysql </dev/null >/dev/null 2>&1 9>&- &
    for _ in $(seq 150); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
if mariadb-admin ping >/dev/null 2>&1; then
    if [ $WIPE -eq 1 ]; then
        log "dropping database $DB_NAME"
        mariadb -u root -e "DROP DATABASE IF EXISTS $DB_NAME" || true
    fi
    log "stopping mariadb"
    mariadb-admin shutdown >/dev/null 2>&1 || true
fi
# mysqld_safe exits after mariadbd; make sure neither is left over
stop mariadbd /run/mysqld/mysqld.pid 30
stop mysqld_safe /nonexistent 10

stop munged /run/munge/munged.pid

if [ $WIPE -eq 1 ]; then
    log "wiping Slurm state and logs"
    rm -rf /var/spool/slurmctld/* /var/spool/slurmd/* /var/log/slurm/*
    if [ -d /var/lib/mysql/$DB_NAME ]; then log "WARNING: could not drop database $DB_NAME"; fi
fi

echo "down.sh took $(elapsed) s"

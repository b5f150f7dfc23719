#!/usr/bin/env bash
# Bring up a single-node Slurm cluster (slurmctld + slurmd + slurmdbd/MariaDB
# accounting + munge) on this Debian 12 machine, without systemd.
#
#   sudo slurm/up.sh            # install if needed, configure, start, wait
#
# Idempotent: when everything already runs with the same configuration it
# only checks and returns in about a second. See slurm/README.md.
set -euo pipefail

T0=$(date +%s.%N)
elapsed() { awk -v t0="$T0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }'; }
log() { echo "[up.sh +$(elapsed)s] $*"; }
die() { echo "[up.sh +$(elapsed)s] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
# up.sh and down.sh never run at the same time (shared lock)
exec 9>/run/memsweep-slurm.lock
flock -w 300 9 || { echo "another slurm/up.sh or down.sh is running" >&2; exit 1; }

# ----------------------------------------------------------------- settings
CLUSTER=${SLURM_CLUSTER_NAME:-memsweep}
ACCOUNT=${SLURM_ACCOUNT_NAME:-memsweep}
NODE=$(hostname -s)
ETC=/etc/slurm
RUN=/run/slurm
LOGDIR=/var/log/slurm
CTLD_STATE=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
DB_NAME=slurm_acct_db
DB_USER=slurm
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
export DEBIAN_FRONTEND=noninteractive

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }
# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.2 s
wait_for() {
    local timeout=$1 what=$2; shift 2
    local end=$(( $(date +%s) + timeout ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || die "timed out after ${timeout}s waiting for $what"
        sleep 0.2
    done
}

# ------------------------------------------------------------ 1. packages
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    # Services must not be started by the package scripts (no systemd here;
    # we start everything ourselves below).
    # Rebuilding the man-db index (a dpkg trigger) costs ~4 s: skip it for
    # this install only (its trigger looks at /var/lib/man-db/auto-update).
    # Both changes are undone on exit, even when the install fails.
    policy_created=0 mandb_flag=0
    restore_apt_env() {
        if [ $policy_created -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
        if [ $mandb_flag -eq 1 ]; then mv -f /var/lib/man-db/auto-update.memsweep-off /var/lib/man-db/auto-update; fi
        policy_created=0 mandb_flag=0
    }
    trap restore_apt_env EXIT
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    if [ -e /var/lib/man-db/auto-update ]; then
        mv /var/lib/man-db/auto-update /var/lib/man-db/auto-update.memsweep-off
        mandb_flag=1
    fi
    # apt-get update only when the package lists do not know the packages
    need_update=0
    policy=$(apt-cache policy "${missing[@]}" 2>/dev/null || true)
    [ "$(grep -c 'Candidate: [0-9]' <<< "$policy")" -eq ${#missing[@]} ] || need_update=1
    apt_install() {
        apt-get install -y -q --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            -o Dpkg::Options::=--force-unsafe-io "${missing[@]}" > /tmp/slurm-up-apt.log 2>&1
    }
    if [ $need_update -eq 1 ]; then
        log "apt-get update"
        apt-get update -q > /tmp/slurm-up-apt-update.log 2>&1 || log "apt-get update reported errors (ignored; see /tmp/slurm-up-apt-update.log)"
    fi
    if ! apt_install; then
        log "install failed, retrying after apt-get update"
        apt-get update -q > /tmp/slurm-up-apt-update.log 2>&1 || true
        apt_install || { tail -20 /tmp/slurm-up-apt.log >&2; die "apt-get install failed (log: /tmp/slurm-up-apt.log)"; }
    fi
    restore_apt_env
    trap - EXIT
    log "packages installed"
fi

# ------------------------------------------------------ 2. directories, keys
install -d -o slurm -g slurm -m 755 "$ETC" "$RUN" "$LOGDIR" "$CTLD_STATE"
install -d -o root -g root -m 755 "$SLURMD_SPOOL"
install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 755 /run/munge
install -d -o mysql -g mysql -m 755 /run/mysqld

if [ ! -s /etc/munge/munge.key ]; then
    log "creating munge key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key

# --------------------------------------------------------- 3. configuration
# write_if_changed FILE OWNER MODE < content ; sets CHANGED=1 when rewritten
write_if_changed() {
    local f=$1 owner=$2 mode=$3 tmp
    tmp=$(mktemp)
    cat > "$tmp"
    if [ -f "$f" ] && cmp -s "$tmp" "$f"; then
        rm -f "$tmp"; CHANGED=0
    else
        install -o "${owner%%:*}" -g "${owner##*:}" -m "$mode" "$tmp" "$f"
        rm -f "$tmp"; CHANGED=1
    fi
}

# Node hardware as slurmd sees it; RealMemory a bit below the machine's so
# the node is never drained for "Low RealMemory".
HW=$(slurmd -C 2>/dev/null | head -1)
hw() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<< "$HW"; }
CPUS=$(hw CPUs); CPUS=${CPUS:-$(nproc)}
BOARDS=$(hw Boards); SPB=$(hw SocketsPerBoard); CPS=$(hw CoresPerSocket); TPC=$(hw ThreadsPerCore)
MEM=$(hw RealMemory); MEM=${MEM:-$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)}
REALMEM=$(( MEM > 4096 ? MEM - 1024 : MEM * 9 / 10 ))
TOPO=""
[ -n "$BOARDS" ] && [ -n "$SPB" ] && [ -n "$CPS" ] && [ -n "$TPC" ] && \
    TOPO="Boards=$BOARDS SocketsPerBoard=$SPB CoresPerSocket=$CPS ThreadsPerCore=$TPC"

write_if_changed "$ETC/slurm.conf" root:root 644 <<EOF
# Generated by memsweep slurm/up.sh -- edits are overwritten on the next run.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Job credentials expire after 10 s (default 1200/120 s): a requeued job can
# start again after ~30 s instead of ~2 min.
AuthInfo=cred_expire=10

StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No systemd / cgroup plugins on this machine.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MailProg=/bin/true

# Fast scheduling for tests.
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2,bf_resolution=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MinJobAge=30
KillWait=5
InactiveLimit=0
Waittime=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=60
JobRequeue=1

# Preemption: jobs in partition "high" requeue jobs in "debug". The job's
# --signal (submitit: USR2) is sent at once, the job is requeued (TERM, then
# KILL after KillWait) when the debug GraceTime (10 s) has passed.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal

# Accounting (sacct) through slurmdbd: submitit reads job states from it.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobCompType=jobcomp/none

NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS $TOPO RealMemory=$REALMEM State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=10
PartitionName=high Nodes=$NODE Default=NO MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
SLURM_CONF_CHANGED=$CHANGED

write_if_changed "$ETC/cgroup.conf" root:root 644 <<EOF
# Generated by memsweep slurm/up.sh. No cgroup plugin is used
# (proctrack/linuxproc, task/none, jobacct_gather/linux).
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF

# Keep the DB password across runs.
DB_PASS=""
[ -f "$ETC/slurmdbd.conf" ] && DB_PASS=$(sed -n 's/^StoragePass=//p' "$ETC/slurmdbd.conf")
[ -n "$DB_PASS" ] || DB_PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)

write_if_changed "$ETC/slurmdbd.conf" slurm:slurm 600 <<EOF
# Generated by memsweep slurm/up.sh -- edits are overwritten on the next run.
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=$LOGDIR/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
SLURMDBD_CONF_CHANGED=$CHANGED

write_if_changed /etc/mysql/mariadb.conf.d/99-memsweep-slurm.cnf root:root 644 <<EOF
# Generated by memsweep slurm/up.sh: settings recommended for slurmdbd.
[mariadbd]
innodb_buffer_pool_size=1024M
innodb_lock_wait_timeout=900
innodb_log_file_size=64M
bind-address=127.0.0.1
EOF

# ------------------------------------------------------------------ 4. munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1 9>&- \
        || die "munged failed to start (see /var/log/munge/munged.log)"
    wait_for 10 munged sh -c 'munge -n | unmunge'
fi

# ---------------------------------------------------------------- 5. mariadb
if ! mariadb-admin ping >/dev/null 2>&1; then
    if [ ! -d /var/lib/mysql/mysql ]; then
        log "initialising MariaDB data directory"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/tmp/slurm-up-mariadb-install.log 2>&1 \
            || die "mariadb-install-db failed (see /tmp/slurm-up-mariadb-install.log)"
    fi
    log "starting mariadb"
    setsid /usr/bin/mysqld_safe --user=mysql </dev/null >/dev/null 2>&1 9>&- &
    wait_for 60 mariadb mariadb-admin ping
fi
mariadb -u root <<EOF
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
EOF

# --------------------------------------------------------------- 6. slurmdbd
if pid_alive $RUN/slurmdbd.pid && [ "$SLURMDBD_CONF_CHANGED" = 1 ]; then
    log "slurmdbd.conf changed: restarting slurmdbd"
    kill "$(cat $RUN/slurmdbd.pid)"
    wait_for 20 "slurmdbd to stop" sh -c "! kill -0 $(cat $RUN/slurmdbd.pid)"
fi
if ! pid_alive $RUN/slurmdbd.pid; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd </dev/null >/dev/null 2>&1 9>&- || die "slurmdbd failed (see $LOGDIR/slurmdbd.log)"
fi
wait_for 60 "slurmdbd (sacctmgr)" sacctmgr -n -P list cluster format=cluster

# ------------------------------------------- 7. cluster/account registration
if [ -z "$(sacctmgr -n -P list cluster "$CLUSTER" format=cluster 2>/dev/null)" ]; then
    log "registering cluster $CLUSTER"
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null
fi
if [ -z "$(sacctmgr -n -P list account "$ACCOUNT" format=account 2>/dev/null)" ]; then
    log "adding account $ACCOUNT"
    sacctmgr -i -Q add account "$ACCOUNT" Cluster="$CLUSTER" \
        Description="memsweep experiments" Organization=memsweep >/dev/null
fi
if [ -z "$(sacctmgr -n -P list assoc cluster="$CLUSTER" account="$ACCOUNT" user=root format=user 2>/dev/null)" ]; then
    log "adding user root to account $ACCOUNT"
    sacctmgr -i -Q add user root Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
fi

# ------------------------------------------------- 8. slurmctld and slurmd
if [ "$SLURM_CONF_CHANGED" = 1 ] && { pid_alive $RUN/slurmctld.pid || pid_alive $RUN/slurmd.pid; }; then
    log "slurm.conf changed: restarting slurmctld and slurmd"
    for d in slurmd slurmctld; do
        if pid_alive $RUN/$d.pid; then
            p=$(cat $RUN/$d.pid); kill "$p"
            wait_for 30 "$d to stop" sh -c "! kill -0 $p"
        fi
    done
fi
if ! pid_alive $RUN/slurmctld.pid; then
    log "starting slurmctld"
    /usr/sbin/slurmctld </dev/null >/dev/null 2>&1 9>&- || die "slurmctld failed (see $LOGDIR/slurmctld.log)"
fi
wait_for 30 slurmctld scontrol ping
if ! pid_alive $RUN/slurmd.pid; then
    log "starting slurmd"
    /usr/sbin/slurmd </dev/null >/dev/null 2>&1 9>&- || die "slurmd failed (see $LOGDIR/slurmd.log)"
fi

# ------------------------------------------------------------------ 9. wait
node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -1; }
node_ready() { case "$(node_state)" in idle|mixed|allocated|completing) return 0;; *) return 1;; esac; }
end=$(( $(date +%s) + 60 ))
until node_ready; do
    case "$(node_state)" in
        drain*|down*|fail*)
            log "node is $(node_state): resuming"
            scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    [ "$(date +%s)" -lt "$end" ] || die "node $NODE not ready (state: $(node_state)); see $LOGDIR/"
    sleep 0.3
done
wait_for 30 sacct sacct -n -X -a -S now-1minutes

log "cluster $CLUSTER is up: node $NODE $(node_state), partitions: $(sinfo -h -o %P | tr '\n' ' ')"
echo "up.sh took $(elapsed) s"

#!/usr/bin/env bash
# Integration test on a real SLURM: a single-node cluster on this machine runs a small demo grid through
# `snakemake --profile profiles/slurm`; its results must equal a local run of the same config.
# Needs root on Debian (it installs slurmctld, slurmd, slurm-client and munge); skips with a message elsewhere.
# Usage: bash tests/cluster/run_slurm.sh [snakemake target]   (default: the demo's Figure 4-1, 12 jobs)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RESULTS=results/demo   # config/demo.yaml's `results` folder
TARGET=${1:-$RESULTS/figures/fig4-1.png}
SNAKEMAKE=${SNAKEMAKE:-$ROOT/.venv/bin/snakemake}

if [[ $(id -u) -ne 0 || ! -x /usr/bin/apt-get ]]; then
    echo "SKIP tests/cluster/run_slurm.sh: needs root on Debian to install and start SLURM"; exit 0
fi
install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null; }
install || { apt-get update -qq && install; }   # a fresh machine may have no package lists yet

WORK=$(mktemp -d /tmp/slurm-it.XXXXXX)
STATE=$WORK/state
mkdir -p "$STATE"/{ctld,spool,log} /run/munge
chown munge:munge /run/munge

# job steps (srun inside sbatch) read the default config path, so the cluster's files live in /etc/slurm;
# an existing config there belongs to a real cluster and is left alone
CONF_DIR=/etc/slurm
if [[ -e $CONF_DIR/slurm.conf ]]; then
    echo "SKIP tests/cluster/run_slurm.sh: $CONF_DIR/slurm.conf exists (a configured SLURM; not overwritten)"; exit 0
fi
stop_daemons() {  # only the daemons this script started, by their pid files; then remove its config
    for pid_file in "$STATE"/slurmd.pid "$STATE"/slurmctld.pid "$STATE"/munged.pid; do
        [[ -s $pid_file ]] && kill "$(cat "$pid_file")" 2>/dev/null || true
    done
    rm -f "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"
}
trap stop_daemons EXIT

HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))   # leave 1 GiB to the daemons
cat > "$CONF_DIR/slurm.conf" <<CONF
# written by tests/cluster/run_slurm.sh, removed when it ends
ClusterName=ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
# keep finished jobs visible to squeue: there is no accounting database for sacct
MinJobAge=600
GresTypes=gpu
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:2 State=UNKNOWN
PartitionName=ci Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
# two stand-in GPUs (character devices like /dev/null): jobs request --gpus=1 exactly as on a GPU cluster and
# SLURM sets their CUDA_VISIBLE_DEVICES; torch finds no CUDA, so a job given a GPU would fail, and
# PIPELINE_GPU_FALLBACK=cpu (exported to the jobs by sbatch) lets it say so and run on the CPU
mkdir -p "$STATE/dev"
for i in 0 1; do mknod "$STATE/dev/gpu$i" c 1 3; done
echo "NodeName=$HOST Name=gpu File=$STATE/dev/gpu[0-1]" > "$CONF_DIR/gres.conf"

runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
cp /run/munge/munged.pid "$STATE/munged.pid"
slurmctld
slurmd
for _ in $(seq 60); do
    sinfo -h -o %t 2>/dev/null | grep -qx idle && break
    sleep 1
done
sinfo -h -o %t | grep -qx idle || { echo "FAIL: the SLURM node never became idle"; cat "$STATE"/log/*.log; exit 1; }

run_workflow() {  # $1: work directory, then snakemake options
    local dir=$1; shift
    "$SNAKEMAKE" "$TARGET" -s "$ROOT/Snakefile" --configfile "$ROOT/config/demo.yaml" --directory "$dir" "$@"
}
PIPELINE_GPU_FALLBACK=cpu run_workflow "$WORK/slurm" --profile "$ROOT/profiles/slurm" --slurm-no-account --slurm-status-command squeue \
    --slurm-logdir "$WORK/slurm/slurm-logs" --slurm-keep-successful-logs --slurm-init-seconds-before-status-checks 5
run_workflow "$WORK/local" --cores 2 --resources gpu=2
grep -rqs "trains on the CPU (PIPELINE_GPU_FALLBACK=cpu)" "$WORK/slurm/$RESULTS/logs" ||
    { echo "FAIL: no SLURM job said it fell back to the CPU on its stand-in GPU"; exit 1; }

"$ROOT/.venv/bin/python" "$ROOT/tests/cluster/compare_runs.py" "$WORK/local" "$WORK/slurm"
echo "PASS: $TARGET built through SLURM equals the local run ($WORK)"

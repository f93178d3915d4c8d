#!/bin/bash
# Submit the pending train stages as SLURM job arrays of docs/cluster/train-array.sbatch.
#
#   python -m lpa.tools.launch --devices cpu --list > pending.txt    # data stages first, then the list
#   docs/cluster/submit.sh pending.txt [SBATCH OPTIONS]              # e.g. --partition=gpu
#
# PENDING has one `<stage> <processes>` line per stage (the launcher's --list). One array per stage
# kind and number of processes P, each task on P GPUs (--gres=gpu:P); the finetune arrays start
# after every train array ends (--dependency=afterany: a finetune of a failed parent fails alone).
# Each array's list is copied under logs/slurm/ (a task reads its line when it starts, perhaps
# much later), and logs/slurm/ is created here: SLURM opens a task's --output file before the
# script runs, so the script cannot make that folder for itself. Prints the job ids.
set -euo pipefail

pending=${1:?usage: docs/cluster/submit.sh PENDING [SBATCH OPTIONS] (PENDING: python -m lpa.tools.launch --devices cpu --list)}
shift
here=$(dirname "$0")
mkdir -p logs/slurm
lists=$(mktemp -d logs/slurm/lists.XXXXXX)
train_ids=()
for kind in train finetune; do
    for processes in $(awk -v kind="$kind@" 'index($1, kind) == 1 {print ($2 == "" ? 1 : $2)}' "$pending" | sort -un); do
        list=$lists/$kind-$processes.txt
        awk -v kind="$kind@" -v p="$processes" 'index($1, kind) == 1 && ($2 == "" ? 1 : $2) == p' "$pending" > "$list"
        after=()
        if [ "$kind" = finetune ] && [ ${#train_ids[@]} -gt 0 ]; then
            after=("--dependency=afterany:$(IFS=:; echo "${train_ids[*]}")")
        fi
        id=$(sbatch --parsable --array=0-$(( $(wc -l < "$list") - 1 )) --gres=gpu:"$processes" ${after[@]+"${after[@]}"} \
             "$@" "$here/train-array.sbatch" "$list")
        id=${id%%;*}  # --parsable prints "id" or "id;cluster"
        echo "$kind stages on $processes GPU(s) each: job $id, $(wc -l < "$list") task(s), list $list"
        if [ "$kind" = train ]; then
            train_ids+=("$id")
        fi
    done
done

#!/usr/bin/env bash
# End to end through the program: `mpirun -np D minispeed train --zero-stage S`
# with --batch-size B must follow one process with --batch-size D·B step for
# step (training loss and validation loss, as printed to 4 decimals).
#   scripts/test-train-equivalence.sh BUILD_DIR
set -uo pipefail
bin=$1/minispeed
common="--n-layer 2 --n-head 2 --n-embd 32 --seq-len 32 --steps 6 --lr 3e-3 --eval-every 3
        --eval-batches 2 --log-every 1 --sample-tokens 0"
losses() { grep -oE 'loss [0-9.]+|val [0-9.]+' | awk '{print $2}'; }

reference=$(OMP_NUM_THREADS=1 "$bin" train $common --batch-size 8 | losses)
pass=0 fail=0
# The last run forces Open MPI's TCP transport (no shared memory), as between
# two machines (`mpirun --hostfile`); on one machine it goes over loopback.
tcp="--mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include lo"
for run in "2 0" "2 2" "4 1" "4 3" "2 2 tcp"; do
  set -- $run
  ranks=$1 stage=$2 transport=${3:-}
  extra=""
  [ "$transport" = tcp ] && extra=$tcp
  got=$(OMP_NUM_THREADS=1 ${MPIRUN:-mpirun --oversubscribe} $extra -np "$ranks" "$bin" train $common \
        --batch-size $((8 / ranks)) --zero-stage "$stage" | losses)
  # Equal to print precision; allow one unit in the last printed digit for rounding.
  if [ -n "$got" ] && paste <(echo "$reference") <(echo "$got") |
       awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1.5e-4 || NF != 2) bad = 1 } END { exit bad }'; then
    echo "ok: $ranks ranks, ZeRO stage $stage follow one process${transport:+ (over $transport)}"
    pass=$((pass + 1))
  else
    echo "FAILED: $ranks ranks, ZeRO stage $stage${transport:+ over $transport} diverge from one process:"
    paste <(echo "$reference") <(echo "$got") | sed 's/^/  /'
    fail=$((fail + 1))
  fi
done
# Sampling mid-training is rank 0 alone; under ZeRO-3 that must not enter the
# per-block gathers (collectives) on one rank only.
if OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=30 ${MPIRUN:-mpirun --oversubscribe} -np 2 "$bin" train $common \
     --batch-size 4 --zero-stage 3 --sample-every 2 >/dev/null 2>&1; then
  echo "ok: sampling mid-training with ZeRO-3 on 2 ranks"
  pass=$((pass + 1))
else
  echo "FAILED: sampling mid-training with ZeRO-3 on 2 ranks"
  fail=$((fail + 1))
fi
echo "train equivalence: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

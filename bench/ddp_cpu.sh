#!/usr/bin/env bash
# DDP on the CPU against one process (bench/bench_ddp.cpp), one OpenMP thread per process:
#   1. one process alone;
#   2. two processes under mpirun training independently (--no-ddp): the baseline for two
#      ranks, since on a machine with few cores two processes slow each other down even
#      without communicating;
#   3. DDP over two ranks (mpirun -np 2) with gradient buckets of 25 (one bucket), 4 and 1 MB.
# DDP's cost is (3) against (2). Run from the repository root after building build/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bench_ddp
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
for rep in 1 2 3; do
  echo "# repetition $rep"
  $bin "$@"
  mpirun -np 2 $bin --no-ddp "$@"
  for mb in 25 4 1; do mpirun -np 2 $bin --bucket-mb $mb "$@"; done
done

"""What the node and the batch system say: SLURM (:mod:`.slurm`), the job's time limit
(:mod:`.walltime`), GPUs and CPUs per worker slot (:mod:`.resources`), and who a process is
(:mod:`.identity`: enough to prove it dead later)."""

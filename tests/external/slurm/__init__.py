"""Tests against a private 2-node SLURM cluster on this machine (see cluster.sh)."""

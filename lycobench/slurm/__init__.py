"""Sweeps on a SLURM cluster: what the queue says about a sweep's tasks, the record of the jobs a sweep
submitted, the submitting process's progress lines, and the launcher behind `hydra/launcher=slurm` and
`slurm_gpu` (Hydra finds it as hydra_plugins.lycobench_launcher; the code is here)."""

"""`hydra/launcher=slurm` and `slurm_gpu` (conf/hydra/launcher/): the code is lycobench.slurm.launcher."""

from lycobench.slurm.launcher import SweepSlurmLauncher


class SlurmLauncher(SweepSlurmLauncher):
    pass

"""lycobench's Hydra launcher plugin (Hydra only instantiates launchers found under hydra_plugins)."""

"""Calibration of the embedded world: ``world check`` samples the base model, fine-tunes the concepts with
the benchmark's own training stage and measures everything with the oracle and the world encoders. It runs
stages, so it sits above them (the world itself is a source and never calls a stage)."""

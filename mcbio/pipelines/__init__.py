"""Job bodies: what a submitted job runs, stage by stage, from a typed config."""

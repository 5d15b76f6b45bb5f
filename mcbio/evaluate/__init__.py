"""Fine-tuning evaluation: tasks, loaders, heads, metrics, seeds."""

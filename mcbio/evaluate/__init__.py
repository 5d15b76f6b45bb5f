"""Fine-tuning evaluation: tasks, loaders (BRAT, CoNLL, TSV/JSONL, HF datasets), linear heads, metrics.

See ``mcbio/evaluate/README.md`` for the protocol, the BRAT -> IOB2 policy and which head is used.
Entry points: :func:`mcbio.evaluate.run.evaluate_task` (one model, task, seed) and
:func:`mcbio.pipelines.evaluate.launch_evaluation` (job arrays).
"""

"""W&B: offline by default (files under the run directory, sync later), never a prompt.

Every function takes the ``tracking`` section, the run's name and the config to log,
not the whole run config: a stage knows nothing of Slurm or of other stages.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

from mcbio.config.schema import TrackingConfig


def configure_wandb_env(tracking: TrackingConfig, out_dir: Path) -> bool:
    """Set W&B's environment for this process; return whether to log to W&B at all."""
    if not tracking.wandb or tracking.mode == "disabled":
        os.environ["WANDB_MODE"] = "disabled"
        return False
    os.environ["WANDB_MODE"] = tracking.mode
    os.environ.setdefault("WANDB_DIR", str(out_dir))
    os.environ.setdefault("WANDB_SILENT", "true")
    # No login prompt: offline runs need no key; online runs must have WANDB_API_KEY set.
    os.environ.setdefault("WANDB_DISABLE_CODE", "true")
    (out_dir / "wandb").mkdir(parents=True, exist_ok=True)
    return True


def wandb_init_kwargs(tracking: TrackingConfig, name: str, out_dir: Path, job_type: str,
                      config: dict[str, Any]) -> dict[str, Any]:
    return dict(
        project=tracking.project,
        entity=tracking.entity,
        group=tracking.group or name,
        tags=list(tracking.tags),
        name=f"{name}-{job_type}",
        job_type=job_type,
        dir=str(out_dir),
        mode=tracking.mode,
        config=config,
    )


@contextlib.contextmanager
def wandb_run(tracking: TrackingConfig, name: str, out_dir: Path, job_type: str,
              config: dict[str, Any]) -> Iterator[Any]:
    """A W&B run for stages outside Composer (evaluation, reports); yields None when disabled."""
    if not configure_wandb_env(tracking, out_dir):
        yield None
        return
    import wandb

    run = wandb.init(**wandb_init_kwargs(tracking, name, out_dir, job_type, config), reinit=True)
    try:
        yield run
    finally:
        run.finish()


def composer_wandb_logger(tracking: TrackingConfig, name: str, out_dir: Path, job_type: str,
                          config: dict[str, Any]):
    """Composer's WandBLogger, minus its checkpoint download through the W&B API; None when disabled.

    On autoresume, Composer asks every logger for the latest checkpoint when none is on
    disk; WandBLogger answers through the online API, which needs a key and a network.
    Our checkpoints live in the run directory, so the logger declines.
    """
    if not configure_wandb_env(tracking, out_dir):
        return None
    from composer.loggers import WandBLogger

    class LocalCheckpointWandBLogger(WandBLogger):
        def download_file(self, *args: Any, **kwargs: Any) -> None:
            raise FileNotFoundError("checkpoints are local to the run directory; W&B holds none")

    kw = wandb_init_kwargs(tracking, name, out_dir, job_type, config)
    return LocalCheckpointWandBLogger(
        project=kw.pop("project"), entity=kw.pop("entity"), group=kw.pop("group"),
        name=kw.pop("name"), tags=kw.pop("tags"), init_kwargs=kw,
    )

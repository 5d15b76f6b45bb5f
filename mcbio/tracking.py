"""W&B: offline by default (files under the run directory, sync later), never a prompt."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

from mcbio.config.loader import to_container
from mcbio.config.schema import RunConfig


def configure_wandb_env(cfg: RunConfig, out_dir: Path) -> bool:
    """Set W&B's environment for this process; return whether to log to W&B at all."""
    if not cfg.tracking.wandb or cfg.tracking.mode == "disabled":
        os.environ["WANDB_MODE"] = "disabled"
        return False
    os.environ["WANDB_MODE"] = cfg.tracking.mode
    os.environ.setdefault("WANDB_DIR", str(out_dir))
    os.environ.setdefault("WANDB_SILENT", "true")
    # No login prompt: offline runs need no key; online runs must have WANDB_API_KEY set.
    os.environ.setdefault("WANDB_DISABLE_CODE", "true")
    (out_dir / "wandb").mkdir(parents=True, exist_ok=True)
    return True


def wandb_init_kwargs(cfg: RunConfig, out_dir: Path, job_type: str) -> dict[str, Any]:
    return dict(
        project=cfg.tracking.project,
        entity=cfg.tracking.entity,
        group=cfg.tracking.group or cfg.name,
        tags=list(cfg.tracking.tags),
        name=f"{cfg.name}-{job_type}",
        job_type=job_type,
        dir=str(out_dir),
        mode=cfg.tracking.mode,
        config=to_container(cfg),
    )


@contextlib.contextmanager
def wandb_run(cfg: RunConfig, out_dir: Path, job_type: str) -> Iterator[Any]:
    """A W&B run for stages outside Composer (evaluation, reports); yields None when disabled."""
    if not configure_wandb_env(cfg, out_dir):
        yield None
        return
    import wandb

    run = wandb.init(**wandb_init_kwargs(cfg, out_dir, job_type), reinit=True)
    try:
        yield run
    finally:
        run.finish()


def composer_wandb_logger(cfg: RunConfig, out_dir: Path, job_type: str):
    """Composer's WandBLogger, minus its checkpoint download through the W&B API.

    On autoresume, Composer asks every logger for the latest checkpoint when none is on
    disk; WandBLogger answers through the online API, which needs a key and a network.
    Our checkpoints live in the run directory, so the logger declines.
    """
    from composer.loggers import WandBLogger

    class LocalCheckpointWandBLogger(WandBLogger):
        def download_file(self, *args: Any, **kwargs: Any) -> None:
            raise FileNotFoundError("checkpoints are local to the run directory; W&B holds none")

    kw = wandb_init_kwargs(cfg, out_dir, job_type)
    return LocalCheckpointWandBLogger(
        project=kw.pop("project"), entity=kw.pop("entity"), group=kw.pop("group"),
        name=kw.pop("name"), tags=kw.pop("tags"), init_kwargs=kw,
    )

"""The run's Composer checkpoints, checked before autoresume: a truncated newest one is set aside.

A job killed while writing (or a full disk) can leave the newest ``ep*-ba*-rank*.pt`` cut
short; Composer's autoresume loads whatever ``latest-rank*.pt`` points at and every relaunch
then fails in ``torch.load``. Here each rank's newest intact checkpoint becomes ``latest``;
broken ones are renamed ``*.corrupt`` (kept for inspection, never deleted) and named.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

# Composer's default save_filename / save_latest_filename (mcbio.train.pretrain keeps both).
CHECKPOINT = re.compile(r"^ep(?P<epoch>\d+)-ba(?P<batch>\d+)-rank(?P<rank>\d+)\.pt$")
LATEST = "latest-rank{rank}.pt"


def checkpoint_problem(path: Path) -> Optional[str]:
    """Why ``path`` cannot be a checkpoint torch can load (None when it can).

    ``torch.save`` writes a zip archive whose directory is at its end: a truncated file has
    none. Opening the archive reads only that directory, not the (large) weights.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            if not archive.namelist():
                return "an empty archive"
    except (zipfile.BadZipFile, OSError) as err:
        return str(err)
    return None


def _set_aside(path: Path) -> Path:
    target = path.with_name(path.name + ".corrupt")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt{n}")
    path.rename(target)
    return target


def repair_checkpoints(folder: Path) -> list[str]:
    """Point each rank's ``latest`` at its newest intact checkpoint; return a line per repair.

    A ``latest`` link whose target is gone (a checkpoint deleted by hand) is re-pointed too;
    a rank with no intact checkpoint left loses its ``latest``, and that rank starts afresh.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    by_rank: dict[int, list[tuple[int, Path]]] = {}
    for path in folder.iterdir():
        match = CHECKPOINT.match(path.name)
        if match and path.is_file():
            by_rank.setdefault(int(match["rank"]), []).append((int(match["batch"]), path))
    ranks = set(by_rank) | {int(m[1]) for m in (re.match(r"^latest-rank(\d+)\.pt$", p.name) for p in folder.iterdir()) if m}
    repairs = []
    for rank in sorted(ranks):
        intact = None
        for batch, path in sorted(by_rank.get(rank, []), reverse=True):
            problem = checkpoint_problem(path)
            if problem is None:
                intact = path
                break
            moved = _set_aside(path)
            repairs.append(f"checkpoint {path} is unreadable ({problem}): set aside as {moved.name}")
        latest = folder / LATEST.format(rank=rank)
        current = os.readlink(latest) if latest.is_symlink() else None
        if intact is None:
            if latest.is_symlink() or latest.exists():
                latest.unlink()
                repairs.append(f"no intact checkpoint left for rank {rank} in {folder}: it trains from the start")
        elif current != intact.name:
            tmp = folder / f".{latest.name}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(intact.name)
            os.replace(tmp, latest)
            repairs.append(f"resuming from {intact.name}" + (f" (latest pointed at {current})" if current else ""))
    for line in repairs:
        log.warning(line)
    return repairs

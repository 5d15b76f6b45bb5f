"""Load a typed config: schema defaults <- cluster profile <- experiment YAML <- preset <- dotlist.

Each source is merged on its own so that an error names the file (or the command line),
the full key path and, for an unknown key, the keys that are valid there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mcbio.errors import UserError

T = TypeVar("T")

LIBRARY_PRESETS = Path(__file__).resolve().parent / "presets"
# Cluster profiles: their one copy is the repository's slurm/profiles/, which
# mcbio/cluster/profiles links to, so that a built package carries them as package data
# (setuptools copies the files behind the link). Resolved so that messages name the real
# folder. MCBIO_PROFILES (folders, ':'-separated) adds a site's own, searched first.
PACKAGE_PROFILES = (Path(__file__).resolve().parents[1] / "cluster" / "profiles").resolve()

# Keys that change where or how a run executes, not what it computes: left out of the hash.
NON_SEMANTIC_KEYS = ("out_dir", "dry_run", "wait", "cluster", "resources", "tracking", "paths", "preset")


class ConfigError(UserError):
    """A config file or override is wrong; the message names the source and the key."""


def _valid_keys(schema_node: Any, key_path: str) -> list[str]:
    """Keys accepted under the parent of ``key_path`` in the structured schema."""
    parent_path = key_path.rsplit(".", 1)[0] if "." in key_path else ""
    node = OmegaConf.select(schema_node, parent_path) if parent_path else schema_node
    if isinstance(node, DictConfig):
        return sorted(str(k) for k in node.keys())
    return []


def _merge(base: DictConfig, other: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except ConfigKeyError as err:
        key = err.full_key or err.key or "?"
        valid = _valid_keys(base, str(key))
        hint = f" Valid keys here: {', '.join(valid)}." if valid else ""
        raise ConfigError(f"{source}: unknown config key '{key}'.{hint}") from None
    except ValidationError as err:
        msg = str(err.msg).splitlines()[0]
        raise ConfigError(f"{source}: invalid value for '{err.full_key}': {msg}") from None
    except OmegaConfBaseException as err:  # pragma: no cover - other OmegaConf errors
        raise ConfigError(f"{source}: {err}") from None


def _load_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends
        raise ConfigError(f"{path}: cannot parse YAML: {err}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
    return loaded


def parse_dotlist(overrides: Sequence[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(
                f"command line: override '{item}' is not of the form key.sub=value"
            )
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"command line: cannot parse overrides: {err}") from None


def find_preset(name: str, search_dirs: Iterable[Path]) -> Path:
    candidates = [Path(d) / f"{name}.yaml" for d in search_dirs] + [LIBRARY_PRESETS / f"{name}.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    available = sorted({p.stem for d in [*search_dirs, LIBRARY_PRESETS] for p in Path(d).glob("*.yaml")})
    raise ConfigError(f"unknown preset '{name}'. Available presets: {', '.join(available) or 'none'}")


def profile_dirs() -> list[Path]:
    extra = [Path(p).expanduser() for p in os.environ.get("MCBIO_PROFILES", "").split(os.pathsep) if p]
    return [*extra, PACKAGE_PROFILES]


def find_profile(name: str) -> Path:
    """``resources.profile``: a YAML file path, or a name looked up in :func:`profile_dirs`."""
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml"):
        if path.is_file():
            return path
        raise ConfigError(f"resources.profile: profile file {path} not found")
    for folder in profile_dirs():
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    available = sorted({p.stem for d in profile_dirs() for p in d.glob("*.yaml")})
    raise ConfigError(
        f"resources.profile: unknown cluster profile '{name}' (looked in {', '.join(map(str, profile_dirs()))}; "
        f"MCBIO_PROFILES adds folders). Available: {', '.join(available) or 'none'}"
    )


def validate_choices(obj: Any, path: str = "") -> None:
    """Check every dataclass field declared with ``metadata['choices']``."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            key = f"{path}.{f.name}" if path else f.name
            choices = f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(
                    f"invalid value for '{key}': {value!r}. Choose one of: {', '.join(map(str, choices))}"
                )
            validate_choices(value, key)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            validate_choices(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            validate_choices(v, f"{path}[{i}]")


def load_config(
    schema: type[T],
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> T:
    """Build a ``schema`` instance from its defaults, a YAML file and dotlist overrides.

    ``preset=NAME`` (in the file or on the command line) merges ``presets/NAME.yaml`` from
    the experiment's folder, else from ``mcbio/config/presets``, between the file and the
    command line. ``resources.profile`` names a cluster profile (:func:`find_profile`) whose
    keys fill ``resources`` before the file is applied.
    """
    base = OmegaConf.structured(schema)
    exp_dir = Path(config_file).resolve().parent if config_file else None
    file_cfg = _load_yaml(Path(config_file)) if config_file else OmegaConf.create({})
    cli_cfg = parse_dotlist(overrides)

    # First pass: find the preset and the profile the sources ask for.
    merged = _merge(base, file_cfg, str(config_file))
    merged = _merge(merged, cli_cfg, "command line")
    preset_cfg = OmegaConf.create({})
    preset_name = OmegaConf.select(merged, "preset", default=None)
    preset_path: Path | None = None
    if preset_name:
        preset_path = find_preset(str(preset_name), [exp_dir / "presets"] if exp_dir else [])
        preset_cfg = _load_yaml(preset_path)
        merged = _merge(merged, preset_cfg, str(preset_path))
        merged = _merge(merged, cli_cfg, "command line")

    profile_cfg = OmegaConf.create({})
    if "resources" in base:
        profile_path = find_profile(str(merged.resources.profile))
        profile_cfg = OmegaConf.create({"resources": _load_yaml(profile_path)})
        profile_source = str(profile_path)
    # Second pass, in the documented order.
    cfg = base
    if "resources" in base:
        cfg = _merge(cfg, profile_cfg, profile_source)
    cfg = _merge(cfg, file_cfg, str(config_file))
    if preset_path is not None:
        cfg = _merge(cfg, preset_cfg, str(preset_path))
    cfg = _merge(cfg, cli_cfg, "command line")

    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot resolve config: {err}") from None
    validate_choices(obj)
    check = getattr(obj, "check", None)
    if callable(check):
        check()
    return obj  # type: ignore[return-value]


def to_container(cfg: Any) -> Any:
    if dataclasses.is_dataclass(cfg):
        return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(to_container(cfg)))


def stable_hash(data: Any, length: int = 12) -> str:
    """Hex digest of ``data`` (dataclasses, dicts, lists) that is the same in every process and run."""
    blob = json.dumps(to_container(data) if dataclasses.is_dataclass(data) else data, sort_keys=True,
                      default=lambda o: to_container(o) if dataclasses.is_dataclass(o) else str(o)).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def config_hash(cfg: Any, length: int = 12) -> str:
    """Stable hash of what a run computes (placement, tracking and output keys excluded)."""
    data = to_container(cfg)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in NON_SEMANTIC_KEYS}
    return stable_hash(data, length)

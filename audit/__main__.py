"""Command line: ``python -m audit`` — the same :func:`audit.engine.run_audit` the app's audit tab calls.

Examples::

    python -m audit                                     # built-in generated faces, test split, defaults
    python -m audit --data photos/ --labels photos/labels.csv --models wiener none \\
        --degradations gaussian motion --strengths gaussian=2,4,6 motion=9,15 --out results/my_audit
    python -m audit --models none --external mine=mypkg.restore:fn --external 'remote=http://127.0.0.1:7860/#/predict'
    python -m audit --n 1000 --engine local --workers 2      # a process pool (default: every core)
    python -m audit --engine ray --address 10.0.0.1:6379     # Ray Data on a running cluster (docs/AUDIT.md)
    python -m audit --out results/audit --resume             # finish an interrupted audit
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tqdm import tqdm

from audit.config import AuditConfig
from audit.engine import run_audit
from audit.groups import PREDICTED_ATTRIBUTES
from audit.parallel import add_engine_arguments, engine_from_args
from audit.report import rebuild
from deblur.restore.external.spec import DEFAULT_CONCURRENCY
from deblur.strengths import AUDIT_GRID, parse_strengths

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m audit`` argument parser."""
    p = argparse.ArgumentParser(prog="python -m audit", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="builtin",
                   help="'builtin' (generated faces, test split), 'fairface' (FairFace validation split from the "
                        "Hugging Face Hub, 100 faces per race label; needs internet once) or a data folder")
    p.add_argument("--labels", help="labels CSV (folder format: a 'path' column relative to --data + group columns)")
    p.add_argument("--format", choices=("folder", "celeba", "fairface", "utkface"),
                   help="data format (detected if omitted)")
    p.add_argument("--models", nargs="+", help="restorer names (default: every one available per degradation)")
    p.add_argument("--degradations", nargs="+", default=list(AUDIT_GRID), help="degradation kinds")
    p.add_argument("--strengths", nargs="+",
                   help="strengths in px of the 128-px crop: '2 4 6' or 'gaussian=2,4 motion=9' "
                        "(default: deblur.strengths.AUDIT_GRID)")
    p.add_argument("--embedder", default="dlib", help="face embedder: dlib or facenet (needs its VGGFace2 weights)")
    p.add_argument("--out", default="results/audit", help="output folder")
    p.add_argument("--n", type=int, default=200, help="at most this many images")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="seed for bootstrap/permutation tests")
    p.add_argument("--min-group-n", type=int, default=30, help="flag groups smaller than this")
    p.add_argument("--fmr", type=float, default=0.01, help="false-match rate at which the threshold is calibrated")
    p.add_argument("--identity", metavar="COLUMN",
                   help="labels column naming the person in each photo (several photos per person): impostor pairs "
                        "only between different people, same-person pairs reported as FNMR, rank-1 by person")
    p.add_argument("--predict", nargs="*", default=list(PREDICTED_ATTRIBUTES),
                   help=f"predicted attributes ({', '.join(PREDICTED_ATTRIBUTES)}); pass none to use labels only")
    p.add_argument("--crop", default="auto", choices=("auto", "whole", "detect"),
                   help="auto: the built-in set is already cropped (whole), photos get detection and alignment; "
                        "whole: the images already are facedrift face crops (deblur.faces geometry)")
    p.add_argument("--reference", nargs="*", default=[], help="reference groups as attribute=group")
    p.add_argument("--plotlyjs", default="inline", choices=("inline", "cdn"),
                   help="embed plotly.js in figures.html (works offline) or load it from a CDN")
    p.add_argument("--no-contact-sheets", action="store_true", help="skip the skin-tone-bin contact sheets")
    p.add_argument("--external", action="append", default=[], metavar="NAME=SPEC",
                   help="audit an external restorer too (repeatable): NAME=module:callable, "
                        "NAME=http://host:port/#/api_name or NAME=owner/space#/api_name, options after '?' "
                        "(nonblind, timeout=S, retries=N, rate=R, concurrency=N, kinds=a+b, out=K); "
                        "see docs/EXTERNAL.md")
    p.add_argument("--external-concurrency", type=int, default=DEFAULT_CONCURRENCY,
                   help="calls in flight per external restorer")
    p.add_argument("--rebuild-report", metavar="DIR",
                   help="only recompute groups.csv and figures of a finished audit in DIR from its per_image.csv")
    add_engine_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rebuild_report:
        try:
            paths = rebuild(args.rebuild_report)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for path in paths:
            print(f"wrote {path}")
        return 0
    try:
        predict = [] if args.predict in ([], ["none"]) else list(args.predict)
        reference = {}
        for token in args.reference:
            if "=" not in token:
                raise ValueError(f"--reference wants attribute=group, got {token!r}")
            attr, group = token.split("=", 1)
            reference[attr] = group
        degradations = parse_strengths(args.strengths, args.degradations, AUDIT_GRID)
        config = AuditConfig(data=args.data, labels=args.labels, format=args.format, models=args.models,
                             degradations=degradations, embedder=args.embedder,
                             out=args.out, n=args.n, n_boot=args.boot, seed=args.seed, min_group_n=args.min_group_n,
                             fmr=args.fmr, predict=predict, crop=args.crop, reference=reference,
                             contact_sheets=not args.no_contact_sheets, plotlyjs=args.plotlyjs,
                             external=args.external, external_concurrency=args.external_concurrency,
                             identity=args.identity)
        config.validate()
        engine = engine_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))  # exits with status 2 and the message
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = tqdm(total=total, desc={"clean": "clean faces", "audit": "audit"}.get(stage, stage),
                               unit="img", file=sys.stderr)
        bars[stage].n = done
        bars[stage].refresh()
        if done >= total:
            bars[stage].close()

    try:
        with engine:
            result = run_audit(config, progress, engine=engine, resume=args.resume, batch_size=args.batch_size)
    except (ValueError, OSError, RuntimeError) as exc:  # OSError: unreadable data, unwritable cache or --out
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for bar in bars.values():
            bar.close()
    thr = result.threshold
    resumed = f", {result.n_resumed} kept from the earlier run" if result.n_resumed else ""
    print(f"audited {result.n_images} images ({result.n_no_face_clean} without a face in the clean image, "
          f"{len(result.skipped)} skipped{resumed}) in {result.seconds:.0f} s with the {result.engine} engine")
    if thr is not None:
        print(f"match threshold: L2 <= {thr.distance:.3f} ({thr.source}; observed FMR {thr.fmr_observed:.3%} on "
              f"{thr.n_impostor_pairs} impostor pairs, target {thr.fmr_target:g})")
        if thr.note:
            print(f"warning: {thr.note}")
        if thr.n_genuine_pairs:
            lo, hi = thr.fnmr_ci
            print(f"same-person pairs: {thr.n_genuine_pairs}; FNMR at the threshold {thr.fnmr:.1%} "
                  f"(95% Wilson CI {lo:.1%}-{hi:.1%})")
    for model, counts in result.status_counts.items():
        if set(counts) - {"ok", "no_face_restored", "no_face_clean"}:
            print(f"{model}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) + " rows")
    for path in result.files:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

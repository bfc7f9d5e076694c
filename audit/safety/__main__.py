"""Command line of the safety sweep: ``python -m audit.safety`` (see ``docs/SAFETY.md``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from audit import safety
from audit.data import face_items
from audit.engine import to_crop
from audit.parallel import add_engine_arguments, engine_from_args
from audit.safety import (
    KINDS,
    builtin_candidates,
    builtin_gallery,
    figure,
    gallery_from_folder,
    sweep_dataset,
    sweep_face,
)
from audit.safety.anonymise import LADDER, anonymise_file, example_group_photo
from audit.safety.peers import measure_peers, summarise
from audit.safety.recall import detector_recall, summarise_recall
from deblur.data import builtin_faces
from deblur.degrade import DEGRADATIONS
from deblur.embed import get_embedder
from deblur.faces import face_crop
from deblur.io import load_image
from deblur.restore import close_restorers, external_restorers
from deblur.restore.external.spec import DEFAULT_CONCURRENCY
from deblur.strengths import SAFETY_GRID, parse_strengths


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m audit.safety`` argument parser."""
    p = argparse.ArgumentParser(prog="python -m audit.safety", description=safety.__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--image", help="one photo or face crop: sweep it and write figures + obscured PNGs")
    src.add_argument("--data", default="builtin", help="'builtin' or a data folder (dataset mode, as python -m audit)")
    src.add_argument("--anonymise", metavar="PHOTO", help="obscure every face of PHOTO at a strength no attacker "
                     "beats, verify it, write --out (a .png without metadata) and a per-face report beside it")
    src.add_argument("--peers", choices=["deface"], help="measure the deface anonymiser with our attackers")
    src.add_argument("--recall", action="store_true", help="measure the anonymiser's face-detector recall")
    p.add_argument("--labels", help="labels CSV for --data (folder format)")
    p.add_argument("--identity", metavar="COLUMN",
                   help="dataset mode: labels column saying who each photo shows; each face's attackers then hold "
                        "the person through their other photos (not a re-captured proxy)")
    p.add_argument("--gallery", metavar="FOLDER",
                   help="with --image: photos of other people (the same kind of photo) for rank-1 re-identification; "
                        "without it the verdict uses the identity model's published threshold alone")
    p.add_argument("--format", help="folder, celeba, fairface or utkface (detected when omitted)")
    p.add_argument("--n", type=int, default=24, help="faces in dataset mode")
    p.add_argument("--margin", type=float, default=0.0, help="distance margin above the threshold")
    p.add_argument("--degradations", nargs="+", default=None, choices=list(KINDS))
    p.add_argument("--strengths", nargs="+", default=None, metavar="KIND=A,B",
                   help="strengths per kind (e.g. pixelate=8,12,16); default deblur.strengths.SAFETY_GRID")
    p.add_argument("--thorough", action="store_true", help="also run Richardson-Lucy (slower)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plotlyjs", default="cdn", choices=["cdn", "inline"], help="plotly.js in the HTML")
    p.add_argument("--box", action="append", default=[], metavar="x0,y0,x1,y1",
                   help="--anonymise: a face the detector missed, in photo pixels (repeatable)")
    p.add_argument("--method", default="pixelate_noise", choices=sorted(LADDER), help="--anonymise: obscuring kind")
    p.add_argument("--deface", default="deface", help="--peers: the deface executable (e.g. in another venv)")
    p.add_argument("--out", default="results/safety", help="output folder (--anonymise: the output .png)")
    p.add_argument("--external", action="append", default=[], metavar="NAME=SPEC",
                   help="also attack with an external restorer (repeatable): NAME=module:callable, "
                        "NAME=http://host:port/#/api_name or NAME=owner/space#/api_name; see docs/EXTERNAL.md")
    p.add_argument("--external-concurrency", type=int, default=DEFAULT_CONCURRENCY,
                   help="calls in flight per external restorer")
    add_engine_arguments(p, resume=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run a one-face sweep (``--image``) or dataset mode and write the outputs into ``--out``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.anonymise:
        return anonymise_file(args.anonymise, args.out, boxes=args.box, kind=args.method, seed=args.seed)
    try:
        extra = external_restorers(args.external, list(DEGRADATIONS), concurrency=args.external_concurrency)
    except ValueError as exc:  # a bad spec, an unimportable callable or an unreachable app
        parser.error(str(exc))
    try:
        return _run(args, extra)
    finally:
        close_restorers(extra)


def _failures(table) -> None:
    """Print how many rows of each restorer failed (external calls: timeouts, errors...)."""
    failed = table[table["status"].astype(str).str.startswith("error")]
    for name, n in failed.groupby("restorer").size().items():
        print(f"{name}: {n} failed rows (status error): the recommendation counts a failed row as not "
              "re-identifying; rerun before relying on it", file=sys.stderr)


def _run(args, extra) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.peers:
        return _peers(args.deface, out, args.seed)
    if args.recall:
        return _recall(out)
    if args.image:
        crop = to_crop(load_image(args.image))
        if crop is None:
            print(f"no face found in {args.image}", file=sys.stderr)
            return 2
        embedder = get_embedder("dlib")
        try:
            gallery, candidates = gallery_from_folder(args.gallery, embedder) if args.gallery else (None, None)
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        kinds = args.degradations or KINDS
        grid = parse_strengths(args.strengths, kinds, SAFETY_GRID) if args.strengths else None
        res = sweep_face(crop, gallery=gallery, embedder=embedder, degradations=kinds, strengths=grid,
                         margin=args.margin, thorough=args.thorough, seed=args.seed, extra_restorers=extra,
                         candidates=candidates)
        _failures(res.table)
        print(res.settings["gallery"])
        res.table.to_csv(out / "safety_sweep.csv", index=False)
        res.summary().to_csv(out / "safety_recommendations.csv", index=False)
        with (out / "safety_sweep.html").open("w", encoding="utf-8") as fh:
            for k, kind in enumerate(res.recommendations):
                js = args.plotlyjs if k == 0 else False
                fh.write(figure(res, kind).to_html(full_html=False, include_plotlyjs=js))
        for kind in res.recommendations:
            data = res.png(kind)
            if data is not None:
                (out / f"obscured_{kind}.png").write_bytes(data)
        print(res.summary()[["degradation", "recommended", "first_safe", "tested_max"]].to_string(index=False))
        print(f"{res.seconds:.1f} s, {res.n_embeddings} embeddings; excluded: {list(res.excluded)}")
        return 0
    try:
        engine = engine_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.identity and args.data == "builtin":
        print("error: --identity needs labelled data (--data FOLDER --labels CSV with that column)", file=sys.stderr)
        return 2
    items = face_items(args.data, n=args.n, labels=args.labels, fmt=args.format)
    try:
        with engine:
            ds = sweep_dataset(items, degradations=args.degradations or DEGRADATIONS, margin=args.margin,
                               thorough=args.thorough, n_boot=args.n_boot, seed=args.seed, engine=engine,
                               crop="whole" if args.data == "builtin" else "detect",
                               # built-in faces are judged among built-in faces; a folder among its own faces
                               gallery=builtin_gallery("dlib") if args.data == "builtin" else None,
                               candidates=builtin_candidates() if args.data == "builtin" else None,
                               progress=lambda d, t: print(f"\r{d}/{t} faces", end="", file=sys.stderr, flush=True),
                               extra_restorers=extra, identity=args.identity)
    except ValueError as exc:  # a missing identity column, too few faces
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    paths = ds.write(out, args.plotlyjs)
    cols = [c for c in ds.per_face.columns if c.startswith("safe_")]
    print(ds.per_face[cols].describe().to_string())
    print("wrote", ", ".join(str(p) for p in paths))
    return 0


def _real_faces() -> list[tuple[str, object]]:
    """Aligned crops of the two real photographs of the example group photo (astronaut, Grace Hopper)."""
    photo, names = example_group_photo(n_generated=0)
    return [(name, face_crop(photo[:, k * 224:(k + 1) * 224]).image) for k, name in enumerate(names)]


def _peers(deface: str, out: Path, seed: int) -> int:
    test = builtin_faces(4000, seed).subset("test")
    # the attackers' gallery holds the first 200 test faces; the probes are strangers to it
    probes = [(test.ids[i], test.images[i].astype("float32") / 255) for i in range(300, 301)] + _real_faces()
    df = measure_peers(probes, deface=deface, seed=seed, progress=lambda m: print(m, file=sys.stderr))
    df.to_csv(out / "peers.csv", index=False)
    summary = summarise(df)
    summary.to_csv(out / "peers_summary.csv", index=False)
    print(summary.to_string(index=False))
    return 0


def _recall(out: Path) -> int:
    df = detector_recall(real=_real_faces())
    df.to_csv(out / "recall.csv", index=False)
    summary = summarise_recall(df)
    summary.to_csv(out / "recall_summary.csv", index=False)
    print(summary.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The zoo's command line, run as `python -m diffnb.zoo` (diffnb/zoo.py hands its arguments here).

    python -m diffnb.zoo list                     # what there is
    python -m diffnb.zoo verify                   # check every toy model against the manifest
    python -m diffnb.zoo train toy-attr           # retrain into runs/toy-attr
    python -m diffnb.zoo install toy-attr runs/toy-attr   # measure, write the card, copy, update the manifest

`list` and `verify` import only the registry; the trainers and cards are imported by `train` and `install`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import zoo


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffnb.zoo", description=zoo.__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    v = sub.add_parser("verify")
    v.add_argument("name", nargs="?")
    t = sub.add_parser("train")
    t.add_argument("name", choices=sorted(zoo.TOY_MODELS))
    t.add_argument("--steps", type=int, help="override the config's number of steps")
    t.add_argument("--out", help="run folder (default runs/<name>)")
    t.add_argument("--batch-size", type=int, help="override the config's batch size")
    t.add_argument("--lr", type=float, help="override the config's learning rate")
    t.add_argument("--device", help="cpu (default) or cuda")
    t.add_argument("--workers", type=int, help="processes drawing world batches ahead (default 0)")
    t.add_argument("--max-minutes", type=float, help="stop and save after this many minutes")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out (toy-ddpm, toy-t2i, toy-ae; copy data/models/<name> there to "
                        "continue the shipped one)")
    i = sub.add_parser("install")
    i.add_argument("name", choices=sorted(zoo.TOY_MODELS))
    i.add_argument("run_dir")
    i.add_argument("--note", default="", help="a paragraph appended to the card (e.g. how the run was shared)")
    i.add_argument("--force", action="store_true",
                   help="install even if the run measures below the shipped model (toy-t2i)")
    a = p.parse_args(argv)
    if a.cmd == "list":
        for n, d in zoo.TOY_MODELS.items():
            print(f"{n:16s} toy   {d}")
        for n, (hub, size, toy) in zoo.REAL_MODELS.items():
            print(f"{n:16s} real  {hub} ({size}); toy stand-in: {toy}")
    elif a.cmd == "verify":
        for n in [a.name] if a.name else list(zoo.TOY_MODELS) + list(zoo.SHIPPED_RESULTS):
            print(n, "ok", zoo.verify(n))
    elif a.cmd == "train":
        from . import cards
        result = cards.train(a.name, steps=a.steps, out=a.out, resume=a.resume, batch_size=a.batch_size, lr=a.lr,
                             device=a.device, workers=a.workers, max_minutes=a.max_minutes)
        print(f"trained {result.name} for {result.steps} steps in {result.minutes:.1f} min into {result.out_dir}")
    elif a.cmd == "install":
        from . import cards
        from .install import install
        try:
            card = cards.write_card(a.name, Path(a.run_dir), force=a.force)
            card += f"\n## Note\n\n{a.note}\n" if a.note else ""
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        install(a.name, Path(a.run_dir), card=card)
        print(f"installed {a.name}; manifest updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())

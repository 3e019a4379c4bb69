"""Study: the two-objective toy problem of CAGrad and Nash-MTL, for every method of the registry.

Question: from the published starting points, which gradient-aggregation and loss-weighting
  methods reach the Pareto set of the 2-D toy problem (harness/toy2d.py), and where on it?
Command:  python experiments/toy2d.py   (options: --steps N, --out DIR, --settings, --methods)
Expected runtime: about 2 minutes on 2 idle CPU cores (16 methods; 100k Adam steps from 3 starts
  at s = 1 as in CAGrad's code, 35k from 5 starts at s = 0.1 as in Nash-MTL's; cagrad's inner
  solver takes half of it).
Expected outcome (the published findings this checks): Liu et al. 2021 (CAGrad, Fig. 1, s = 1):
  CAGrad reaches the Pareto set from every start, at the minimum of the average loss; MGDA reaches
  it but stops at the first Pareto point it meets; Adam on the average loss (equal) and PCGrad can
  stall in the valley x2 > 0. Navon et al. 2022 (Nash-MTL, Fig. 1, s = 0.1): linear scalarisation
  (equal), PCGrad and CAGrad are driven by f2, whose gradient is the larger, towards its end of
  the set; Nash-MTL reaches the Pareto set from every start, at balanced points.
Output: results/toy2d/trajectories_<setting>.png (one panel per method) and
  results/toy2d/endpoints.md (final x, f1, f2 and distance to the Pareto set per method and start).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness.toy2d import REACHED, SETTINGS, run_study

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="Adam steps per run (default: each setting's paper, 100k or 35k)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "toy2d")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=sorted(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=None, help="registry names (default: all)")
    args = parser.parse_args()
    start = time.perf_counter()
    methods = None if args.methods is None else tuple(args.methods)
    results = run_study(args.out, args.steps, tuple(args.settings), methods)
    for key, rows in results.items():
        missed = sorted({r["method"] for r in rows if not r["distance"] < REACHED})
        print(f"{key}: did not reach the Pareto set from every start: {', '.join(missed) or 'none'}")
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

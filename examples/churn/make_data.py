"""Write the churn example data: data/customers.parquet (20,000 customers by default).

    python make_data.py            # 20,000 rows
    python make_data.py --rows 1000000 --seed 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modelport.datasets import churn
from modelport.io import write_table

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="customers to generate")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    parser.add_argument("--drift", type=float, default=0.0, help="0 = none, 1 = strong drift")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "customers.parquet")
    args = parser.parse_args(argv)
    frame = churn.generate(args.rows, seed=args.seed, drift=args.drift)
    path = write_table(frame, args.out)
    print(f"wrote {len(frame):,} customers to {path} (churn rate {frame['churned'].mean():.1%})")
    return path


if __name__ == "__main__":
    main()

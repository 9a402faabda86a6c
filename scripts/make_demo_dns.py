"""Write the DNS demo's inputs: captures/demo-dns-queries.txt and captures/demo-dns-querylog.log.

The capture is a `dig`-style list (`name type` a line), the sample a migration team would
replay; the query log is BIND's (`querylog yes;`), a day of production with another mix,
which ranks the endpoints. Seeded, so rerunning writes the same files.

    .venv/bin/python scripts/make_demo_dns.py
"""

from __future__ import annotations

import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "captures"
#: (name, type, weight in the capture, weight in production)
MIX = [
    ("www.example.com", "A", 30, 400), ("www.example.com", "AAAA", 10, 150),
    ("shop.example.com", "A", 10, 120), ("api.example.com", "A", 10, 90),
    ("cdn.example.com", "A", 5, 200), ("mail.example.com", "A", 8, 60),
    ("example.com", "MX", 8, 80), ("example.com", "TXT", 4, 40),
    ("_dmarc.example.com", "TXT", 4, 30), ("_sip._tcp.example.com", "SRV", 2, 5),
    ("example.com", "ANY", 2, 3), ("nope.example.com", "A", 4, 20),
    ("www.example.com", "MX", 3, 10), ("other.org", "A", 2, 8), ("example.com", "AXFR", 2, 1),
]


def main() -> None:
    rng = random.Random(13)
    names = [(n, t) for n, t, _, _ in MIX]
    capture = rng.choices(names, [c for _, _, c, _ in MIX], k=200)
    ROOT.joinpath("demo-dns-queries.txt").write_text(
        "; shadowdiff demo --dns: the replayed sample (name type)\n"
        + "".join(f"{n} {t}\n" for n, t in capture))
    lines = []
    for i, (n, t) in enumerate(rng.choices(names, [p for _, _, _, p in MIX], k=1200)):
        sec = 8 * 3600 + i * 30
        client = f"198.51.100.{rng.randrange(1, 250)}#{rng.randrange(1024, 65535)}"
        lines.append(f"02-Dec-2026 {sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}.000 "
                     f"queries: info: client @0x7f3a2c00{i:04x} {client} ({n}): query: {n} IN {t} "
                     f"-E(0) (192.0.2.53)\n")
    ROOT.joinpath("demo-dns-querylog.log").write_text("".join(lines))


if __name__ == "__main__":
    main()

"""How long `liaison --help` takes, against a bare Python start in the same run.

Run from the repository root:

    .venv/bin/python bench/cli_help.py [--repeat 15]

Each round starts three processes with the same interpreter, interleaved: `python -c pass`
(the floor: the interpreter alone), `python -c "import typer"` (the CLI library), and
`liaison --help` as the installed entry point runs it (`from app import main; main()`).
The wall time of each is measured from just before the process is started until it has
exited; the median of the rounds is reported, with the ratio to the floor. Issue 14's
target is `liaison --help` under 0.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python (floor)": [sys.executable, "-c", "pass"],
    "import typer": [sys.executable, "-c", "import typer"],
    "liaison --help": [sys.executable, "-c", "from app import main; main()", "--help"],
}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():
        timed(command)  # warm the file cache
    for _ in track(range(args.repeat), description="Starting processes"):
        for name, command in COMMANDS.items():
            times[name].append(timed(command))
    floor = statistics.median(times["python (floor)"])
    table = Table("command", "median s", "min s", "max s", "× floor")
    for name, values in times.items():
        median = statistics.median(values)
        table.add_row(
            name,
            f"{median:.3f}",
            f"{min(values):.3f}",
            f"{max(values):.3f}",
            f"{median / floor:.1f}",
        )
    Console().print(table)
    verdict = "PASS" if statistics.median(times["liaison --help"]) < 0.5 else "FAIL"
    Console().print(f"liaison --help median under 0.5 s: {verdict}")


if __name__ == "__main__":
    main()

"""Re-render this example from the committed real run (tests/data/) and screenshot it in headless Chromium.

.venv/bin/python reports/example/render.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from chromium import Browser  # noqa: E402  (tests/chromium.py: DevTools over a pipe)

from aitune_ci.store.runs import load_run  # noqa: E402
from aitune_ci.report import write_report  # noqa: E402
from aitune_ci.store.history import read_history  # noqa: E402

COMMIT = "cad57c84ebdc1d00ea41c1ddce9b225dc04a8cc9"  # the checkout the H100 run measured


def main() -> None:
    data = ROOT / "tests" / "data"
    run = load_run(data / "report_run.json")
    history = read_history(data / "report_history.jsonl")
    write_report(
        run, HERE / "report.html", history=history, commit=COMMIT, title="aitune-ci report: demo models on an H100"
    )
    write_report(run, HERE / "comment.md")
    write_report(run, HERE / "report.benchmark.json", commit=COMMIT)
    with Browser() as browser:
        for name, options in (
            ("report.png", {}),
            ("report-phone-dark.png", {"width": 390, "height": 844, "mobile": True, "dark": True}),
        ):
            page = browser.load(HERE / "report.html", **options)
            if page.problems:
                raise SystemExit(f"the report has browser errors: {page.problems}")
            (HERE / name).write_bytes(page.screenshot)
            print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()

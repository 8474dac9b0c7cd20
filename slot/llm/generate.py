"""Generate the BAML Python client (`baml_client/`) from `baml_src/`.

The generated client is a build artefact (BAML's advice: generate it in the build, do not
commit it); the set-up step runs `uv run python -m slot.llm.generate`, which regenerates only
when a `.baml` file is newer than the client. `--force` always regenerates.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BAML_SRC = REPO_ROOT / "baml_src"
BAML_CLIENT = REPO_ROOT / "baml_client"


def baml_cli() -> str:
    local = Path(sys.prefix) / "bin" / "baml-cli"
    if local.exists():
        return str(local)
    found = shutil.which("baml-cli")
    if found is None:
        raise RuntimeError("baml-cli not found: install the project's dependencies (uv sync)")
    return found


def is_stale(src: Path = BAML_SRC, client: Path = BAML_CLIENT) -> bool:
    marker = client / "inlinedbaml.py"
    if not marker.exists():
        return True
    built = marker.stat().st_mtime
    return any(p.stat().st_mtime > built for p in src.rglob("*.baml"))


def generate(*, force: bool = False, src: Path = BAML_SRC) -> bool:
    """Run `baml-cli generate`; True if it ran. Raises with BAML's message when it fails."""
    if not force and not is_stale(src):
        return False
    done = subprocess.run(
        [baml_cli(), "generate", "--from", str(src)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        detail = "\n".join(
            line for line in (done.stdout + done.stderr).splitlines() if "error" in line.lower()
        )
        raise RuntimeError(f"baml-cli generate failed:\n{detail or done.stderr[-2000:]}")
    (BAML_CLIENT / "inlinedbaml.py").touch()
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        ran = generate(force="--force" in args)
    except RuntimeError as error:
        print(f"slot: {error}", file=sys.stderr)
        return 1
    print("slot: generated baml_client" if ran else "slot: baml_client is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The GitHub Actions runner's protocol: step summary and output files, and workflow commands on stdout."""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from typing import Literal, Mapping

__all__ = ["annotation", "echo_command", "write_step_outputs", "write_step_summary"]

_OUTPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def echo_command(line: str) -> None:
    """Write one workflow command (``::warning::...``) where the runner reads them: this step's stdout.

    Flushed at once, so the command keeps its place among the lines of the step's other output.
    """
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def write_step_summary(markdown: str) -> bool:
    """Append ``markdown`` to ``$GITHUB_STEP_SUMMARY``; False (nothing written) when it is not set."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as f:
        f.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return True


def write_step_outputs(outputs: Mapping[str, object]) -> bool:
    """Append step outputs to ``$GITHUB_OUTPUT``; False (nothing written) when it is not set.

    Every value uses the multi-line form ``name<<ghadelimiter_<uuid>`` ... ``ghadelimiter_<uuid>``,
    so any text is safe. Values: bool → ``true``/``false``, None → empty, paths → their string,
    list/tuple/dict → JSON (read it with ``fromJSON()``), anything else → ``str()``.

    Raises:
        ValueError: an output name is not a valid step output id (letters, digits, ``_``, ``-``).
    """
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return False
    chunks = []
    for name, value in outputs.items():  # validate everything before writing anything
        if not isinstance(name, str) or not _OUTPUT_NAME.fullmatch(name):
            raise ValueError(
                f"step output name {name!r} is invalid: start with a letter or '_', then letters, digits, '_' or '-'"
            )
        text = _output_text(value)
        delimiter = f"ghadelimiter_{uuid.uuid4()}"
        if delimiter in text:  # a uuid4 collision: astronomically unlikely, but never write a broken file
            raise ValueError(f"step output {name!r} contains its own delimiter")
        chunks.append(f"{name}<<{delimiter}\n{text}\n{delimiter}\n")
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(chunks))
    return True


def annotation(
    level: Literal["error", "warning", "notice"],
    message: str,
    file: str | os.PathLike[str] | None = None,
    title: str | None = None,
    line: int | None = None,
) -> str:
    """A workflow command such as ``::error file=a.py,line=3,title=T::message``, escaped; echo it to emit it.

    ``file`` should be relative to the repository root for GitHub to attach it to the diff.
    """
    if level not in ("error", "warning", "notice"):
        raise ValueError(f"annotation level must be 'error', 'warning' or 'notice', got {level!r}")
    properties = [
        f"{key}={_escape_property(os.fspath(value) if key == 'file' else str(value))}"
        for key, value in (("file", file), ("line", line), ("title", title))
        if value is not None
    ]
    head = f"::{level} {','.join(properties)}" if properties else f"::{level}"
    return f"{head}::{_escape_data(message)}"


def _output_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, os.PathLike):
        return os.fspath(value)  # type: ignore[return-value]
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")

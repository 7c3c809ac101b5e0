"""Every Lua script is a .lua file of responder/adapters with its header (docs/architecture.md,
"State in Redis"): what it does; then KEYS[i] one a line, ARGV[i] one a line, and the reply:

    -- What the script does, and why where it is not plain.
    --
    -- KEYS[1]  one key a line (a range, KEYS[2..], for a variable number)
    -- ARGV[1]  one argument a line, with its unit ("ARGV  none" when it takes none)
    -- Returns  the reply
    --          (a longer entry goes on in lines indented under its text)

and no Python module holds a script inline, so the rule stays kept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ROOT / "responder" / "adapters"
SCRIPTS = sorted(ADAPTERS.glob("*.lua"))

# A header entry: KEYS[...] or ARGV[...] (or either followed by "none"), or Returns.
_ENTRY = re.compile(
    r"^-- (?:(?P<kind>KEYS|ARGV)(?:\[[^\]]+\]|(?= +none$))|(?P<returns>Returns))(?= )"
)
# A line going on with the entry above: indented under its text.
_GOES_ON = re.compile(r"^--  +\S")
# Two entries on one line, as in "KEYS[1] the queue   KEYS[2] the dead letters".
_SECOND_ENTRY = re.compile(r"\S {2,}(?:KEYS|ARGV)\[[^\]]+\] ")


def _header(path: Path) -> list[str]:
    """The comment lines the file begins with."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return lines


def test_the_adapters_hold_the_scripts() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"observe.lua", "incident_write.lua", "batch_driver.lua"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_script_begins_with_its_documented_header(path: Path) -> None:
    header = _header(path)
    entries = [i for i, line in enumerate(header) if _ENTRY.match(line)]
    assert entries, f"{path.name}: no KEYS, ARGV or Returns lines in its header"
    first = entries[0]
    # what it does, then a blank comment line
    assert first >= 2, f"{path.name}: the header must say what the script does first"
    assert header[0].startswith("-- "), path.name
    assert not _ENTRY.match(header[0]), path.name
    assert header[first - 1] == "--", f"{path.name}: a '--' line before KEYS"
    kinds = []
    for line in header[first:]:
        m = _ENTRY.match(line)
        if m is None:
            assert _GOES_ON.match(line), f"{path.name}: neither an entry nor indented: {line!r}"
            continue
        assert not _SECOND_ENTRY.search(line), f"{path.name}: one entry a line: {line!r}"
        text = line[m.end() :]
        assert text.strip(), f"{path.name}: an entry without its text: {line!r}"
        kinds.append(m.group("kind") or "Returns")
    # KEYS, then ARGV, then the reply, once, last
    assert kinds[0] == "KEYS", f"{path.name}: KEYS first"
    assert "ARGV" in kinds, f"{path.name}: no ARGV line"
    assert kinds.count("Returns") == 1, f"{path.name}: one Returns"
    assert kinds[-1] == "Returns", f"{path.name}: Returns last"
    assert kinds == sorted(kinds, key=["KEYS", "ARGV", "Returns"].index), (path.name, kinds)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_script_is_loaded_and_in_the_module_map(path: Path) -> None:
    loaders = "".join(p.read_text(encoding="utf-8") for p in ADAPTERS.glob("*.py"))
    assert f'_lua("{path.name}")' in loaders, f"{path.name} is loaded by no adapter"
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert f"`responder/adapters/{path.name}`" in doc, f"{path.name} is not in the module map"


def test_no_python_module_holds_an_inline_script() -> None:
    inline = [
        p.relative_to(ROOT).as_posix()
        for p in sorted((ROOT / "responder").rglob("*.py"))
        if re.search(r"redis\.p?call\(", p.read_text(encoding="utf-8"))
    ]
    assert inline == [], f"Lua inline in Python (move it to a .lua file): {inline}"

"""The README and docs/architecture.md stay true to the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from responder.app import create_app
from responder.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_configuration_doc_documents_every_setting_with_its_default() -> None:
    # the settings table lives in docs/configuration.md (rendered from the model)
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for name, field in Settings.model_fields.items():
        row = next((ln for ln in doc.splitlines() if f"`RESPONDER_{name.upper()}`" in ln), None)
        assert row is not None, f"RESPONDER_{name.upper()} missing from docs/configuration.md"
        default = field.default_factory() if field.default_factory else field.default
        if name == "rules":
            assert "`rules/`" in row, row  # a path on this machine: the README names the dir
        elif default is None or default == [] or default == {}:
            assert "unset" in row, row
        else:
            if isinstance(default, dict):
                shown = ",".join(f"{k}={v}" for k, v in default.items()).lower()
            elif isinstance(default, list):
                shown = ",".join(default).lower()
            else:
                shown = str(default).lower()
            assert f"`{shown}`" in row.lower(), (row, shown)


def test_readme_documents_every_route() -> None:
    app = create_app(Settings())
    documented = set(re.findall(r"`(?:GET|POST) (/[^` ?]*)", README))
    for route in app.router.routes():
        if route.method != "HEAD" and route.resource is not None:
            assert route.resource.canonical in documented, route.resource.canonical


def test_readme_names_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    assert "make run" in README
    assert "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_architecture_names_every_module_and_redis_key() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for path in sorted((ROOT / "responder").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if path.name in ("__init__.py", "__main__.py"):
            continue
        assert rel in doc, f"{rel} is not in docs/architecture.md"
    keys = (ROOT / "responder" / "adapters" / "redis_keys.py").read_text()
    for method in re.findall(r"def (\w+)\(self", keys):
        if method != "__init__":
            assert f"`{method}`" in doc, f"redis key {method} is not in docs/architecture.md"

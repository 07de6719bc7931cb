"""What ``watch`` watches: the template, the parameters file, the config file and every
linked template's local copy (a URL ending in ``/`` maps a folder, whose files all count),
whether the link comes from the config or from ``--link``; other files do not count."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

from lbsim.api.session import Session
from lbsim.api.source import Source
from lbsim.api.watch import watched


def _session(tmp_path: Path, config_file: str | None) -> Session:
    source = Source.of(
        tmp_path / "t.json",
        parameters=tmp_path / "t.parameters.json",
        links={"https://example.test/nested.json": str(tmp_path / "links" / "nested.json")},
    )
    config = SimpleNamespace(links={"https://example.test/shared/": str(tmp_path / "shared")})
    fake = SimpleNamespace(source=source, config=config, config_file=config_file)
    return cast(Session, fake)


def test_watched_files_and_folders(tmp_path: Path) -> None:
    wanted = watched(_session(tmp_path, str(tmp_path / "lbsim.toml")))
    root = tmp_path.resolve()
    assert wanted.files == {
        root / "t.json",
        root / "t.parameters.json",
        root / "lbsim.toml",
        root / "links" / "nested.json",
    }
    assert wanted.folders == {root / "shared"}
    assert wanted.wants(str(tmp_path / "t.json"))
    assert wanted.wants(str(tmp_path / "shared" / "deep" / "x.json"))
    assert not wanted.wants(str(tmp_path / "t.json.swp"))
    assert not wanted.wants(str(tmp_path / "links" / "other.json"))


def test_without_a_config_file_or_parameters_only_the_template_counts(tmp_path: Path) -> None:
    fake = SimpleNamespace(
        source=Source.of(tmp_path / "t.json"),
        config=SimpleNamespace(links={}),
        config_file=None,
    )
    wanted = watched(cast(Session, fake))
    assert wanted.files == {(tmp_path / "t.json").resolve()}
    assert wanted.folders == frozenset()

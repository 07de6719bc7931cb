"""Linked templates stay inside: a ``templateLink`` is read only from a regular file inside the
root template's folder tree or a folder the user names (``--template-root``, ``--link``).
Every escape ends in one error that names the link and its pointer, says nothing about the
file outside, and no byte of that file reaches the output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from lbsim.api import confine
from lbsim.api.confine import MAX_TEMPLATE_BYTES
from lbsim.cli import main

SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
SECRET = "lbsim-test-secret-7f3a9c"
AT = "/resources/0/properties/templateLink"
OUTSIDE = "LinkedTemplateOutsideRoot"


def _template(*resources: Any, outputs: Any = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"$schema": SCHEMA, "contentVersion": "1.0.0.0", "resources": []}
    doc["resources"] = list(resources)
    if outputs is not None:
        doc["outputs"] = outputs
    return doc


def _linking(link: dict[str, str]) -> dict[str, Any]:
    """A template that deploys ``link`` and shows the linked template's outputs."""
    deployment = {
        "type": "Microsoft.Resources/deployments",
        "apiVersion": "2022-09-01",
        "name": "linked",
        "properties": {"mode": "Incremental", "templateLink": link},
    }
    shown = {"type": "object", "value": "[reference('linked').outputs]"}
    return _template(deployment, outputs={"shown": shown})


def _write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """``site/deploy/`` holds the root template; ``outside/secret.json`` lies beside ``site``."""
    secret = {"type": "string", "value": SECRET}
    _write(tmp_path / "outside" / "secret.json", _template(outputs={"secret": secret}))
    (tmp_path / "site" / "deploy").mkdir(parents=True)
    return tmp_path


def _run(
    capsys: pytest.CaptureFixture[str], main_file: Path, *options: str
) -> tuple[int, str, str]:
    code = main(["validate", str(main_file), *options])
    out, err = capsys.readouterr()
    return code, out, err


def _refused(
    capsys: pytest.CaptureFixture[str],
    main_file: Path,
    *options: str,
    code: str = OUTSIDE,
) -> str:
    """The error line of a refused link; asserts its file, pointer and code, and that the
    secret appears nowhere in the output."""
    status, out, err = _run(capsys, main_file, *options)
    assert status == 2
    assert SECRET not in out + err
    (line,) = [line for line in err.splitlines() if code in line]
    assert line.startswith(f"{main_file}#{AT}: {code}: ")
    return line


def _root(site: Path, link: dict[str, str]) -> Path:
    return _write(site / "site" / "deploy" / "main.json", _linking(link))


def test_relative_path_that_climbs_out_is_refused_and_nothing_leaks(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(capsys, _root(site, {"relativePath": "../../outside/secret.json"}))
    assert "'../../outside/secret.json'" in line


def test_template_root_lets_the_same_link_be_read(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main_file = _root(site, {"relativePath": "../../outside/secret.json"})
    status, out, _ = _run(capsys, main_file, "--template-root", str(site / "outside"))
    assert status == 0
    assert SECRET in out  # read, as the user allowed: the refusal above is the confinement


def test_a_nested_link_up_to_a_folder_inside_the_root_is_read(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``deploy/nested/a.json`` links ``../common.json``: up, but still inside ``deploy``."""
    value = {"type": "string", "value": "common-output"}
    _write(site / "site" / "deploy" / "common.json", _template(outputs={"v": value}))
    inner = _linking({"relativePath": "../common.json"})
    _write(site / "site" / "deploy" / "nested" / "a.json", inner)
    status, out, err = _run(capsys, _root(site, {"relativePath": "nested/a.json"}))
    assert (status, err) == (0, "")
    assert "common-output" in out


def test_an_absolute_path_outside_is_refused(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _refused(capsys, _root(site, {"relativePath": str(site / "outside" / "secret.json")}))


def test_a_file_uri_outside_is_refused(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = (site / "outside" / "secret.json").as_uri()
    assert f"'{uri}'" in _refused(capsys, _root(site, {"uri": uri}))


def test_a_file_uri_inside_is_read(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    value = {"type": "string", "value": "inside-output"}
    inside = _write(site / "site" / "deploy" / "in.json", _template(outputs={"v": value}))
    status, out, err = _run(capsys, _root(site, {"uri": inside.as_uri()}))
    assert (status, err) == (0, "")
    assert "inside-output" in out


def test_a_symlink_that_points_out_is_refused(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (site / "site" / "deploy" / "innocent.json").symlink_to(site / "outside" / "secret.json")
    _refused(capsys, _root(site, {"relativePath": "innocent.json"}))


def test_a_symlinked_folder_that_points_out_is_refused(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (site / "site" / "deploy" / "modules").symlink_to(site / "outside")
    _refused(capsys, _root(site, {"relativePath": "modules/secret.json"}))


def test_a_fifo_inside_the_root_is_refused_without_waiting_for_a_writer(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(site / "site" / "deploy" / "pipe.json")
    _refused(capsys, _root(site, {"relativePath": "pipe.json"}))


def test_a_directory_is_refused(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (site / "site" / "deploy" / "folder.json").mkdir()
    _refused(capsys, _root(site, {"relativePath": "folder.json"}))


def test_dev_zero_is_refused_even_inside_a_named_root(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main_file = _root(site, {"uri": "file:///dev/zero"})
    _refused(capsys, main_file)
    _refused(capsys, main_file, "--template-root", "/dev")  # inside, but a device: not read


def test_a_url_whose_local_copy_climbs_out_is_refused(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An https URL is read from a local copy only inside the roots: neither the path tail
    under the linking template nor a mapped folder lets ``..`` out."""
    uri = "https://example.invalid/base/../../../outside/secret.json"
    _refused(capsys, _root(site, {"uri": uri}))
    mirror = site / "site" / "mirror"
    mirror.mkdir()
    main_file = _root(site, {"uri": "https://example.invalid/base/../../outside/secret.json"})
    _refused(capsys, main_file, "--link", f"https://example.invalid/base/={mirror}")


def test_a_mapped_url_inside_a_linked_folder_is_read(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder named with --link is a root: its files are read even outside the template's
    folder tree."""
    main_file = _root(site, {"uri": "https://example.invalid/base/secret.json"})
    link = f"https://example.invalid/base/={site / 'outside'}"
    status, out, _ = _run(capsys, main_file, "--link", link)
    assert status == 0
    assert SECRET in out


def test_the_error_is_the_same_whether_the_outside_file_exists_or_not(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main_file = _root(site, {"uri": (site / "outside" / "secret.json").as_uri()})
    exists = _refused(capsys, main_file)
    (site / "outside" / "secret.json").unlink()
    missing = _refused(capsys, main_file)
    assert exists == missing
    shadow = _root(site, {"uri": "file:///etc/shadow"})
    present = _refused(capsys, shadow)
    absent = _root(site, {"uri": "file:///etc/no-such-file-lbsim"})
    assert present.replace("shadow", "X") == _refused(capsys, absent).replace(
        "no-such-file-lbsim", "X"
    )


@pytest.mark.parametrize(
    ("link", "why"),
    [
        ("x" * 256 + ".json", "segment of over 255 bytes"),
        ("/".join(["d" * 200] * 25) + "/t.json", "path of over 4096 bytes"),
        ("file:///tmp/a%00b.json", "NUL character"),
    ],
)
def test_a_path_the_system_would_refuse_is_a_clear_error(
    site: Path, capsys: pytest.CaptureFixture[str], link: str, why: str
) -> None:
    key = "uri" if link.startswith("file:") else "relativePath"
    line = _refused(capsys, _root(site, {key: link}), code="LinkedTemplatePathInvalid")
    assert why in line
    assert len(line) < 500  # the link is cut short in the message


def test_a_linked_file_over_the_size_cap_is_not_read(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = site / "site" / "deploy" / "big.json"
    big.write_bytes(b" " * (MAX_TEMPLATE_BYTES + 1))
    status, _, err = _run(capsys, _root(site, {"relativePath": "big.json"}))
    assert status == 2
    assert f"{big}#: TemplateFileTooLarge: " in err


def test_the_root_template_is_read_up_to_the_cap(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _run(capsys, Path("/dev/zero"))
    assert status == 2
    assert err.startswith("/dev/zero#: TemplateFileTooLarge: ")


def test_a_template_root_that_is_no_folder_is_a_clear_error(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main_file = _root(site, {"relativePath": "x.json"})
    status, _, err = _run(capsys, main_file, "--template-root", str(site / "nowhere"))
    assert status == 2
    assert err.startswith("lbsim: InvalidSetting: --template-root ")


def test_a_template_spec_id_is_not_taken_for_an_absolute_path(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
        "Microsoft.Resources/templateSpecs/web/versions/1.0"
    )
    status, _, err = _run(capsys, _root(site, {"id": spec}))
    assert status == 0
    assert f"{AT}: LinkedTemplateNotFound: " in err
    assert OUTSIDE not in err


def _swap_unseen(monkeypatch: pytest.MonkeyPatch, folder: str) -> None:
    """The check by name sees ``folder`` as a plain folder, as it was before an attacker swapped
    it for a symlink: ``realpath`` leaves that segment as it is, while the open that follows
    goes through the symlink, out of the roots."""
    resolve = os.path.realpath

    def unswapped(path: str, *, strict: bool = False) -> str:
        head, mark, tail = os.fspath(path).partition(os.sep + folder)
        if not mark:
            return resolve(path, strict=strict)
        return resolve(head) + mark + tail

    monkeypatch.setattr(os.path, "realpath", unswapped)


def _without_proc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A system without ``/proc``: the file is opened one segment at a time instead."""
    monkeypatch.setattr(confine, "_PROC_FD", str(tmp_path / "no-proc"))


@pytest.mark.parametrize("proc", [True, False], ids=["proc", "walk"])
def test_a_folder_swapped_for_a_symlink_after_the_check_is_refused(
    site: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    proc: bool,
) -> None:
    """O_NOFOLLOW guards only the last segment: the descriptor's own place is checked."""
    (site / "site" / "deploy" / "modules").symlink_to(site / "outside")
    if not proc:
        _without_proc(monkeypatch, site)
    _swap_unseen(monkeypatch, "modules")
    line = _refused(capsys, _root(site, {"relativePath": "modules/secret.json"}))
    assert "'modules/secret.json'" in line


def test_without_proc_a_nested_file_inside_is_still_read(
    site: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_proc(monkeypatch, site)
    value = {"type": "string", "value": "walked-output"}
    _write(site / "site" / "deploy" / "a" / "b" / "c.json", _template(outputs={"v": value}))
    status, out, err = _run(capsys, _root(site, {"relativePath": "a/b/c.json"}))
    assert (status, err) == (0, "")
    assert "walked-output" in out
    _refused(capsys, _root(site, {"relativePath": "a/b"}))  # a folder, reached by the walk


def test_a_mapped_file_is_read_but_not_the_files_beside_it(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--link URL=outside/named.json`` names that file, not its folder: ``named.json`` is
    read, and its links to ``secret.json`` beside it (by relative path, or by a URL under the
    one it came from) are refused, since the user never named ``secret.json``."""
    value = {"type": "string", "value": "named-output"}
    named = _write(site / "outside" / "named.json", _template(outputs={"v": value}))
    main_file = _root(site, {"uri": "https://example.invalid/base/named.json"})
    link = f"https://example.invalid/base/named.json={named}"
    status, out, err = _run(capsys, main_file, "--link", link)
    assert status == 0
    assert "named-output" in out
    for inner in (
        {"relativePath": "secret.json"},
        {"uri": "https://example.invalid/base/secret.json"},
    ):
        _write(named, _linking(inner))
        status, out, err = _run(capsys, main_file, "--link", link)
        assert status == 2
        assert SECRET not in out + err
        (line,) = [line for line in err.splitlines() if OUTSIDE in line]
        assert line.startswith(f"{named}#{AT}: {OUTSIDE}: ")

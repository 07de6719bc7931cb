"""The ``lbsim`` command's entry point."""

from __future__ import annotations

import importlib.abc
import sys

import pytest

from lbsim import entry


class _Interrupted(importlib.abc.MetaPathFinder):
    """Ctrl-C pressed while ``lbsim.cli`` loads."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "lbsim.cli":
            raise KeyboardInterrupt


def test_ctrl_c_while_loading_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delitem(sys.modules, "lbsim.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Interrupted(), *sys.meta_path])
    assert entry.main() == entry.EXIT_INTERRUPTED
    assert capsys.readouterr() == ("", "")


def test_the_command_runs_lbsim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["lbsim", "--version"])
    with pytest.raises(SystemExit) as ended:
        entry.main()
    assert ended.value.code == 0

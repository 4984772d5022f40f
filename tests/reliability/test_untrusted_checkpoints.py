"""Case 4: checkpoints from strangers are loaded without running their code.

A ``.pt``/``.bin`` file is a pickle, and unpickling can call any function. Every loader must use
``torch.load(weights_only=True)`` or safetensors, so a malicious file is refused with a clear
message. The payloads here write a marker file when unpickled; the tests first prove on a twin
file that the payload really fires, then that spurbench never lets it fire.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.errors import UnsafeCheckpointError
from spurbench.models import create_model

runner = CliRunner()


class ShellPayload:
    """Unpickling runs ``touch <marker>`` through ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch '{self.marker}'",))


class WriteTextPayload:
    """Unpickling calls ``pathlib.Path.write_text`` (no shell needed)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pwned"))


def evil_checkpoint(path: Path, payload: type, marker: Path, key: str = "state_dict") -> Path:
    """A checkpoint shaped like a real one (tensors under ``state_dict``) carrying a payload.

    A twin file with its own marker is loaded the unsafe way first: if that does not create
    its marker, the payload is broken and the test would prove nothing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    control = path.parent / f"control-{marker.name}"
    twin = path.parent / f"twin-{path.name}"
    torch.save({key: {"w": torch.zeros(2), "x": payload(control)}}, twin)
    torch.load(twin, weights_only=False)  # the unsafe load spurbench must never do
    assert control.exists(), "the payload did not fire on an unsafe load"
    twin.unlink()
    torch.save({key: {"w": torch.zeros(2), "x": payload(marker)}}, path)
    return path


@pytest.fixture()
def load_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record the keyword arguments of every ``torch.load`` call (the real load still runs)."""
    calls: list[dict[str, Any]] = []
    real = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def test_open_clip_vit_checkpoint_with_code_is_refused(tmp_path, load_calls):
    marker = tmp_path / "PWNED"
    ckpt = evil_checkpoint(tmp_path / "evil.pt", WriteTextPayload, marker)
    load_calls.clear()  # forget the deliberate unsafe load of the twin
    with pytest.raises(UnsafeCheckpointError, match=r"Refused to load .*evil\.pt") as info:
        create_model(f"ViT-B-32,{ckpt}")
    assert "weights_only=True" in str(info.value) and "getattr" in str(info.value)
    assert not marker.exists()
    assert load_calls and all(c.get("weights_only") is True for c in load_calls)


def test_cli_refuses_rn50_checkpoint_with_shell_payload(tmp_path, counteranimal_dir):
    marker = tmp_path / "PWNED"
    ckpt = evil_checkpoint(tmp_path / "evil.pt", ShellPayload, marker)
    out = runner.invoke(
        app,
        ["eval", "-m", f"RN50,{ckpt}", "-d", str(counteranimal_dir),
         "--store", str(tmp_path / "s.db"), "--cache-dir", str(tmp_path / "c")],
    )  # fmt: skip
    assert out.exit_code == 2, out.output
    assert "Refused to load" in out.output and "posix.system" in out.output
    assert isinstance(out.exception, SystemExit)
    assert not marker.exists()


def _timm_dir(folder: Path, state: dict[str, Any]) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"architecture": "resnet18", "num_classes": 3, "label_names": ["a", "b", "c"]})
    )
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_timm_folder_with_code_is_refused_and_a_plain_one_loads(tmp_path):
    """The same loader accepts a plain state_dict: refusal is about the payload only."""
    import timm

    plain = timm.create_model("resnet18", num_classes=3).state_dict()
    good = create_model(str(_timm_dir(tmp_path / "good", plain)))
    assert good.label_names == ("a", "b", "c")

    marker = tmp_path / "PWNED"
    evil = evil_checkpoint(tmp_path / "src" / "pytorch_model.bin", ShellPayload, marker)
    folder = _timm_dir(tmp_path / "evil", {})
    shutil.copy(evil, folder / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="Refused to load"):
        create_model(f"timm:local-dir:{folder}")
    assert not marker.exists()


def test_transformers_folder_with_only_pickle_weights_is_refused(tmp_path, tiny_hf_clip_dir):
    """Hugging Face CLIP folders are read as safetensors only; a pickle is never opened."""
    marker = tmp_path / "PWNED"
    folder = tmp_path / "hf"
    shutil.copytree(tiny_hf_clip_dir, folder)
    (folder / "model.safetensors").unlink()
    evil_checkpoint(folder / "pytorch_model.bin", WriteTextPayload, marker, key="model")
    with pytest.raises(UnsafeCheckpointError, match="no safetensors weights"):
        create_model(f"hf:{folder}")
    assert not marker.exists()

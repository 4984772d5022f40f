"""Case 3: unknown model names suggest the closest known ones; no network gives a way out.

Offline machines are the norm on clusters. Whatever exception the download client raises when
the network is missing (huggingface_hub's offline errors, httpx transport errors, urllib's,
plain timeouts), the user must read how to pass a local file or fill the cache — never a hub
client's retry traceback. The real exception classes are injected where each loader downloads.
"""

from __future__ import annotations

import socket
import urllib.error
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.errors import UnknownModelError, WeightsUnavailableError
from spurbench.models import create_model

runner = CliRunner()


def _offline_errors() -> dict[str, Callable[[], BaseException]]:
    """Constructors of the exceptions real clients raise without network, by name."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    errors: dict[str, Callable[[], BaseException]] = {
        "LocalEntryNotFoundError": lambda: LocalEntryNotFoundError(
            "An error happened while trying to locate the file on the Hub and we cannot find "
            "the requested files in the local cache."
        ),
        "OfflineModeIsEnabled": lambda: OfflineModeIsEnabled(
            "Cannot reach https://huggingface.co: offline mode is enabled."
        ),
        "URLError": lambda: urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
        "TimeoutError": lambda: TimeoutError("timed out"),
    }
    for module_name in ("httpx2", "httpx"):  # whichever transport huggingface_hub uses
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        errors[f"{module_name}.ConnectError"] = lambda m=module: m.ConnectError(
            "[Errno -3] Temporary failure in name resolution"
        )
        errors[f"{module_name}.ReadTimeout"] = lambda m=module: m.ReadTimeout("timed out")
        break
    return errors


OFFLINE = _offline_errors()
#: (model name, where its loader downloads from)
DOWNLOADERS = {
    "ViT-B-32,laion400m_e31": "open_clip.pretrained.hf_hub_download",
    "timm:resnet18.a1_in1k": "timm.models._hub.hf_hub_download",
    "torchvision:resnet18:IMAGENET1K_V1": "torch.hub.download_url_to_file",
}


def _go_offline(monkeypatch: pytest.MonkeyPatch, make_error: Callable[[], BaseException]):
    def unreachable(*args: object, **kwargs: object) -> None:
        raise make_error()

    for target in DOWNLOADERS.values():
        module, _, attr = target.rpartition(".")
        monkeypatch.setattr(f"{module}.{attr}", unreachable)


@pytest.mark.parametrize("error", list(OFFLINE))
@pytest.mark.parametrize("model", ["ViT-B-32,laion400m_e31", "timm:resnet18.a1_in1k"])
def test_no_network_says_how_to_use_a_local_file(monkeypatch, tmp_path, model, error):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _go_offline(monkeypatch, OFFLINE[error])
    with pytest.raises(WeightsUnavailableError) as info:
        create_model(model)
    text = str(info.value)
    assert "no network and no cached copy" in text
    assert "local file" in text and "HF_HOME" in text


def test_torchvision_download_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _go_offline(monkeypatch, OFFLINE["URLError"])
    with pytest.raises(WeightsUnavailableError, match="TORCH_HOME"):
        create_model("torchvision:resnet18:IMAGENET1K_V1")


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("ViT-B-32,laion400m_e3", "laion400m_e32, laion400m_e31"),
        ("ViT-B-33,openai", "ViT-B-32"),
        ("timm:resnet5O.a1_in1k", "resnet50"),
        ("torchvision:resnet5:random", "resnet50"),
    ],
)
def test_cli_unknown_name_lists_closest_exit_2(tmp_path, counteranimal_dir, name, closest):
    out = runner.invoke(
        app,
        ["eval", "-m", name, "-d", str(counteranimal_dir), "--store", str(tmp_path / "s.db")],
    )
    assert out.exit_code == 2, out.output
    assert "Closest:" in out.output and closest in out.output
    assert isinstance(out.exception, SystemExit)  # handled, not an escaped exception
    assert "Traceback" not in out.output


def test_cli_offline_exit_2_without_traceback(monkeypatch, tmp_path, counteranimal_dir):
    from spurbench.store import ResultsStore

    _go_offline(monkeypatch, OFFLINE["LocalEntryNotFoundError"])
    out = runner.invoke(
        app,
        ["eval", "-m", "ViT-B-32,laion400m_e31", "-d", str(counteranimal_dir),
         "--store", str(tmp_path / "s.db"), "--cache-dir", str(tmp_path / "c")],
    )  # fmt: skip
    assert out.exit_code == 2, out.output
    assert isinstance(out.exception, SystemExit) and "Traceback" not in out.output
    assert "no network" in out.output and "ViT-B-32,/path/to/" in out.output
    assert len(ResultsStore(tmp_path / "s.db").runs()) == 0


def test_unknown_tag_is_not_mistaken_for_offline(monkeypatch):
    """A typo must be reported as a typo, before any download is attempted."""
    _go_offline(monkeypatch, OFFLINE["LocalEntryNotFoundError"])
    with pytest.raises(UnknownModelError, match="Unknown pretrained tag"):
        create_model("ViT-B-32,laion400m_e3")


def test_unreachable_hub_fails_at_once_instead_of_retrying(monkeypatch, tmp_path):
    """The hub client retries a missing file with back-off (about a minute per model offline);
    when the hub cannot be reached, the load runs in huggingface_hub's offline mode, which reads
    the local cache only and makes no request at all."""
    import huggingface_hub
    from huggingface_hub import constants

    from spurbench.models import checkpoints

    monkeypatch.setattr(checkpoints, "_hub_reachable", lambda endpoint: False)

    def no_socket(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the hub client opened a connection: {args[:2]}")

    monkeypatch.setattr(socket, "getaddrinfo", no_socket)
    monkeypatch.setattr(socket, "create_connection", no_socket)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    before = constants.HF_HUB_OFFLINE
    with (
        pytest.raises(WeightsUnavailableError, match="no network and no cached copy"),
        checkpoints.guarded_load("ViT-B-32,laion400m_e31", "laion400m_e31"),
    ):
        assert constants.is_offline_mode()
        huggingface_hub.hf_hub_download(
            "timm/not-cached-here", "open_clip_model.safetensors", cache_dir=tmp_path / "c"
        )
    assert before == constants.HF_HUB_OFFLINE  # restored after the load


def test_reachable_hub_is_left_online(monkeypatch):
    from huggingface_hub import constants

    from spurbench.models import checkpoints

    monkeypatch.setattr(checkpoints, "_hub_reachable", lambda endpoint: True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with checkpoints.guarded_load("m", "m"):
        assert not constants.is_offline_mode()


def test_open_clip_logs_no_second_error_line(monkeypatch, tmp_path, caplog):
    """open_clip logs its download failure on the root logger before raising; the user gets the
    same failure as the one `error:` line, so the log record is not shown too."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _go_offline(monkeypatch, OFFLINE["LocalEntryNotFoundError"])
    with caplog.at_level("WARNING"), pytest.raises(WeightsUnavailableError):
        create_model("ViT-B-32,laion400m_e31")
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []

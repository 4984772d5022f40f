"""Loading weights safely, and turning loader failures into messages a user can act on.

Checkpoints come from strangers: a pickle can run arbitrary code when unpickled, so every loader
is called with ``weights_only=True`` (or reads safetensors), and a checkpoint that needs more is
refused, not loaded. Weight downloads fail on machines without network; the user is told where
to put a local file instead of being shown the hub client's retry traceback.
"""

from __future__ import annotations

import json
import pickle
import re
import socket
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager

from spurbench.errors import UnsafeCheckpointError, WeightsUnavailableError

_OFFLINE_MARKERS = (
    "Failed to download",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Connection",
    "offline",
    "LocalEntryNotFoundError",
    "cannot find the requested files",
    "urlopen error",
    "We couldn't connect",
)
#: HTTP client packages whose transport errors (connect, timeout, proxy) mean "no network";
#: timm and transformers let them through unwrapped, and they are not OSErrors.
_HTTP_PACKAGES = ("httpx", "httpx2", "requests", "urllib3", "aiohttp")
_TRANSPORT_WORDS = ("Transport", "Connect", "Network", "Timeout", "Proxy")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: torch names the callable the pickle wanted in one of two phrasings, depending on the case.
_UNSUPPORTED_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL ([\w.]+)", re.IGNORECASE)
#: transformers' words when ``use_safetensors=True`` finds only pickle weights.
_NO_SAFETENSORS = ("model.safetensors", "safetensors")


def _is_network_error(exc: BaseException) -> bool:
    """True for failures that mean "could not reach the weights' host", whatever the client."""
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror | urllib.error.URLError):
        return True
    for cls in type(exc).__mro__:
        package = cls.__module__.split(".")[0]
        if package in _HTTP_PACKAGES and any(w in cls.__name__ for w in _TRANSPORT_WORDS):
            return True
    text = f"{type(exc).__name__}: {exc}"
    return any(m.lower() in text.lower() for m in _OFFLINE_MARKERS)


def _is_damaged(exc: BaseException, text: str) -> bool:
    """A truncated or corrupt safetensors file, a config that is not JSON, or weights whose
    shapes or names do not fit the configured architecture."""
    return (
        type(exc).__name__ == "SafetensorError"
        or isinstance(exc, json.JSONDecodeError)
        or (isinstance(exc, ValueError) and "Could not load valid config" in text)
        or (isinstance(exc, RuntimeError) and "Error(s) in loading state_dict" in text)
    )


def _first_line(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _refused(source: str, exc: BaseException) -> UnsafeCheckpointError:
    """The refusal message, naming what the pickle asked to run when torch says so."""
    found = _UNSUPPORTED_GLOBAL.search(_ANSI.sub("", str(exc)))
    what = f" (it asks to call {found.group(1)})" if found else ""
    return UnsafeCheckpointError(
        f"Refused to load {source}: it is a pickle that needs code execution to load{what}, "
        "and spurbench only loads with torch.load(weights_only=True) or safetensors. If you "
        "trust it, re-save it as a plain state_dict or as safetensors in a trusted environment."
    )


@contextmanager
def guarded_load(model_name: str, source: str) -> Iterator[None]:
    """Re-raise loader failures as WeightsUnavailableError or UnsafeCheckpointError.

    Anything not recognised as unsafe, offline or safetensors-missing is re-raised unchanged:
    it is a bug, and keeps its traceback.
    """
    try:
        yield
    except pickle.UnpicklingError as e:
        raise _refused(source, e) from None
    except Exception as e:
        text = _ANSI.sub("", f"{type(e).__name__}: {e}")
        if "weights_only" in text or "Unsupported global" in text:
            raise _refused(source, e) from None
        if (
            isinstance(e, OSError)
            and all(m in text for m in _NO_SAFETENSORS)
            and ("no file named" in text or "does not appear to have" in text)
        ):
            raise UnsafeCheckpointError(
                f"Refused to load {source}: it has no safetensors weights, only pickle files "
                "(e.g. pytorch_model.bin) that could run code when loaded. Convert them with "
                "`model.save_pretrained(folder, safe_serialization=True)` in a trusted "
                f"environment. ({_first_line(e)})"
            ) from None
        if _is_damaged(e, text):
            raise WeightsUnavailableError(
                f"Could not load {source}: its weights or config are damaged or do not match "
                f"the architecture ({_first_line(e)}). Re-download or re-save the folder."
            ) from None
        if _is_network_error(e):
            raise WeightsUnavailableError(
                f"Could not fetch the weights of {model_name}: no network and no cached copy "
                f"({type(e).__name__}: {_first_line(e)}). Either run once with network so the "
                "weights land in the Hugging Face / torch cache (HF_HOME, TORCH_HOME), or pass "
                "a local file: e.g. 'ViT-B-32,/path/to/open_clip_model.safetensors', "
                "'local-dir:/path/to/folder', 'timm:local-dir:/path', or place torchvision "
                "weights in $TORCH_HOME/hub/checkpoints/."
            ) from None
        raise

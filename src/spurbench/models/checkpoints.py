"""Loading weights safely, and turning loader failures into messages a user can act on.

Checkpoints come from strangers: a pickle can run arbitrary code when unpickled, so every loader
is called with ``weights_only=True`` (or reads safetensors), and a checkpoint that needs more is
refused, not loaded. Weight downloads fail on machines without network; the user is told where
to put a local file instead of being shown the hub client's retry traceback.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import socket
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from urllib.parse import urlparse

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


#: Seconds to wait for the hub's TCP handshake before calling it unreachable.
_HUB_PROBE_TIMEOUT_S = 3.0


@lru_cache(maxsize=4)
def _hub_reachable(endpoint: str) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint opens (asked once per process)."""
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=_HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


@contextmanager
def _hub_offline_when_unreachable() -> Iterator[None]:
    """Run a load in huggingface_hub's offline mode when its endpoint cannot be reached.

    Without network the hub client retries every candidate file with back-off, about a minute
    per model, before it reports that the weights are not cached. Offline mode reads the local
    cache only, so a cached model still loads and a missing one fails at once, with the same
    "not in the local cache" error the retries would have ended in.
    """
    try:
        from huggingface_hub import constants
    except ImportError:  # no hub client, nothing to retry
        yield
        return
    if constants.HF_HUB_OFFLINE or _hub_reachable(constants.ENDPOINT):
        yield
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


class _LoaderErrorFilter(logging.Filter):
    """Drops the ERROR records a loader logs on the root logger just before it raises.

    open_clip logs "Failed to download weights ..." and then raises the same failure; the user
    reads it once, as the `error:` line the raised exception becomes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and "open_clip" in record.pathname)


@contextmanager
def _loader_errors_not_logged() -> Iterator[None]:
    root = logging.getLogger()
    quiet = _LoaderErrorFilter()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


@contextmanager
def guarded_load(model_name: str, source: str) -> Iterator[None]:
    """Re-raise loader failures as WeightsUnavailableError or UnsafeCheckpointError.

    Anything not recognised as unsafe, offline or safetensors-missing is re-raised unchanged:
    it is a bug, and keeps its traceback.
    """
    try:
        with _hub_offline_when_unreachable(), _loader_errors_not_logged():
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

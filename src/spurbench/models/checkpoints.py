"""Loading weights safely, and turning loader failures into messages a user can act on.

Checkpoints come from strangers: a pickle can run arbitrary code when unpickled, so every loader
is called with ``weights_only=True`` (or reads safetensors), and a checkpoint that needs more is
refused, not loaded. Weight downloads fail on machines without network; the user is told where
to put a local file instead of being shown the hub client's retry traceback.
"""

from __future__ import annotations

import pickle
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


@contextmanager
def guarded_load(model_name: str, source: str) -> Iterator[None]:
    """Re-raise loader failures as WeightsUnavailableError or UnsafeCheckpointError."""
    try:
        yield
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"Refused to load {source}: it is a pickle that needs code execution to load "
            f"(torch.load weights_only=True rejected it: {str(e).splitlines()[0]}). "
            "Convert it to safetensors, or re-save a plain state_dict, from a trusted environment."
        ) from None
    except (OSError, RuntimeError, ValueError) as e:
        text = f"{type(e).__name__}: {e}"
        if "weights_only" in text or "Unsupported global" in text:
            raise UnsafeCheckpointError(
                f"Refused to load {source}: the checkpoint holds objects that only a full pickle "
                "load could build, and spurbench loads with weights_only=True. Re-save it as a "
                "state_dict or safetensors from a trusted environment."
            ) from None
        if any(m.lower() in text.lower() for m in _OFFLINE_MARKERS):
            raise WeightsUnavailableError(
                f"Could not fetch the weights of {model_name}: no network and no cached copy "
                f"({text.splitlines()[0][:200]}). Either run once with network so the weights "
                "land in the Hugging Face / torch cache (HF_HOME, TORCH_HOME), or pass a local "
                "file: e.g. 'ViT-B-32,/path/to/open_clip_model.safetensors', "
                "'local-dir:/path/to/folder', 'timm:local-dir:/path', or place torchvision "
                "weights in $TORCH_HOME/hub/checkpoints/."
            ) from None
        raise

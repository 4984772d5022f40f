"""open_clip models: every ``list_pretrained()`` pair, ``hf-hub:``, ``local-dir:`` and local files.

Source: open_clip (Ilharco et al., https://github.com/mlfoundations/open_clip, MIT licence); the
zero-shot head follows its ``build_zero_shot_classifier``: per class, the normalised text
embeddings of every template are averaged and re-normalised, logits = exp(logit_scale) · cos.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from spurbench.data.classes import ClassList
from spurbench.errors import UnknownModelError, closest
from spurbench.models.base import Features, LinearHead, ModelAdapter, PreprocessConfig
from spurbench.models.checkpoints import guarded_load
from spurbench.models.spec import RANDOM, ModelSpec

TEXT_BATCH = 256


class OpenClipAdapter(ModelAdapter):
    zero_shot = True
    _prefix_ok: bool | None = None  # prompts may be encoded up to their EOT token

    def __init__(self, spec: ModelSpec, device: str = "cpu") -> None:
        import open_clip

        self.spec = spec
        self.device = torch.device(device)
        model_name, pretrained = _resolve(spec)
        with guarded_load(spec.name, pretrained if pretrained else model_name):
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name,
                pretrained=pretrained,
                device=self.device,
                weights_only=True,
                force_quick_gelu=_needs_quick_gelu(spec),
            )
        self.module = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.preprocess_cfg = _preprocess_config(
            getattr(model.visual, "preprocess_cfg", {}) or {}, model.visual.image_size
        )

    # -- images -----------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor) -> Features:
        visual = self.module.visual
        images = images.to(self.device, non_blocking=True)  # pinned batches: async copy
        proj = getattr(visual, "proj", None)
        if isinstance(proj, torch.Tensor):
            # ViT: run the tower without its projection to read the pre-head representation,
            # then apply the projection exactly as open_clip's forward does.
            visual.proj = None
            try:
                pre = visual(images)
            finally:
                visual.proj = proj
            emb = pre @ proj
        else:
            pre = emb = visual(images)
        return Features(pre.float().cpu(), emb.float().cpu())

    def projection(self) -> np.ndarray | None:
        proj = getattr(self.module.visual, "proj", None)
        return proj.detach().float().cpu().numpy() if isinstance(proj, torch.Tensor) else None

    # -- text head --------------------------------------------------------------------------
    def head(self, classes: ClassList, templates: Sequence[str]) -> LinearHead:
        weight = self.text_classifier(classes.names, templates)
        scale = float(self.module.logit_scale.detach().exp())
        bias = getattr(self.module, "logit_bias", None)
        bias_arr = None
        if isinstance(bias, torch.Tensor):
            bias_arr = np.full(len(classes), float(bias.reshape(-1)[0]), dtype=np.float32)
        return LinearHead(weight, bias_arr, scale, normalize_input=True)

    @torch.inference_mode()
    def text_classifier(self, names: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        """(n_classes, d_E) mean of normalised prompt embeddings per class, re-normalised."""
        prompts = [t.format(c=n) for n in names for t in templates]
        emb = self.encode_prompts(self.tokenizer(prompts))
        emb = emb.reshape(len(names), len(templates), -1).mean(dim=1)
        emb = emb / emb.norm(dim=1, keepdim=True)
        return emb.numpy().astype(np.float32)

    @torch.inference_mode()
    def encode_prompts(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text embeddings (float32, CPU) of tokenised prompts, in their order.

        When the text tower is a causal transformer pooled at the end-of-text token (CLIP's
        design, see :func:`_prefix_encodable`), the output at that token does not depend on the
        padding after it: prompts are then sorted by length and each batch runs only up to its
        longest prompt, ~6x fewer tokens than the 77-token context for ImageNet class names.
        Other towers get the plain ``encode_text`` on full contexts.
        """
        if self._prefix_ok is None:
            self._prefix_ok = _prefix_encodable(self.module, tokens) and _prefix_agrees(
                self.module, tokens[:4].to(self.device)
            )
        if not self._prefix_ok or not _prefix_encodable(self.module, tokens):
            chunks = [
                self.module.encode_text(tokens[s : s + TEXT_BATCH].to(self.device), normalize=True)
                .float()
                .cpu()
                for s in range(0, len(tokens), TEXT_BATCH)
            ]
            return torch.cat(chunks)
        ends = tokens.argmax(dim=-1)  # the EOT position, exactly as open_clip pools
        order = torch.argsort(ends, stable=True)
        out: torch.Tensor | None = None
        for s in range(0, len(tokens), TEXT_BATCH):
            idx = order[s : s + TEXT_BATCH]
            length = int(ends[idx].max()) + 1
            emb = _encode_text_prefix(self.module, tokens[idx, :length].to(self.device))
            if out is None:
                out = torch.empty(len(tokens), emb.shape[1])
            out[idx] = emb.float().cpu()
        assert out is not None
        return out


def _needs_quick_gelu(spec: ModelSpec) -> bool:
    """Tags trained with QuickGELU (all ``openai``, ``laion400m_e31``...) need it forced.

    open_clip builds the plain architecture with GELU and only warns; on the CounterAnimal
    reference model ``ViT-B-32,laion400m_e31`` that costs ~3 points of ImageNet accuracy
    (open_clip's own results table: 60.2 % vs 62.9 %).
    """
    import open_clip

    if spec.pretrained in (None, RANDOM) or spec.arch.startswith(("hf-hub:", "local-dir:")):
        return False
    return bool(open_clip.get_pretrained_cfg(spec.arch, spec.pretrained).get("quick_gelu", False))


def _preprocess_config(cfg: dict, image_size: int | Sequence[int]) -> PreprocessConfig:
    """The fields open_clip's ``image_transform_v2`` builds the eval transform from."""
    size = cfg.get("size", image_size)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    mode = str(cfg.get("resize_mode") or "shortest")
    interpolation = str(cfg.get("interpolation") or "bicubic")
    return PreprocessConfig(
        size=hw,
        mean=tuple(cfg.get("mean", ())),
        std=tuple(cfg.get("std", ())),
        # open_clip reads anything but "bilinear" as bicubic at eval time
        interpolation="bilinear" if interpolation == "bilinear" else "bicubic",
        resize=hw[:1] if mode == "shortest" and hw[0] == hw[1] else hw,
        resize_mode=mode,
        crop={"shortest": "center", "longest": "center_or_pad", "squash": "none"}[mode],
        fill=int(cfg.get("fill_color", 0)),
    )


def _resolve(spec: ModelSpec) -> tuple[str, str | None]:
    """(open_clip model name, pretrained) — or a clear error naming the closest known pairs."""
    import open_clip

    arch = spec.arch
    if arch.startswith(("hf-hub:", "local-dir:")):
        if arch.startswith("local-dir:"):
            folder = Path(arch[len("local-dir:") :])
            if not (folder / "open_clip_config.json").is_file():
                raise UnknownModelError(
                    f"{folder} is not an open_clip model folder: it needs open_clip_config.json "
                    "and open_clip_model.safetensors (open_clip's local-dir layout)."
                )
        return arch, None
    known_archs = open_clip.list_models()
    if arch not in known_archs:
        hint = closest(arch, known_archs)
        raise UnknownModelError(
            f"Unknown open_clip architecture {arch!r}."
            + (f" Closest: {', '.join(hint)}." if hint else "")
            + " Run `spurbench models --family open_clip` for the list."
        )
    tag = spec.pretrained
    if tag is None:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise UnknownModelError(
            f"{arch!r} needs weights: write '{arch},<tag>' with a tag among {tags[:8]}, "
            f"'{arch},/path/to/checkpoint', or '{arch},{RANDOM}' for random init."
        )
    if tag == RANDOM:
        return arch, None
    if Path(tag).expanduser().exists() or "/" in tag or tag.endswith((".pt", ".bin", ".pth")):
        path = Path(tag).expanduser()
        if not path.is_file():
            raise UnknownModelError(f"Checkpoint file {path} does not exist.")
        return arch, str(path)
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        hint = closest(tag, tags)
        raise UnknownModelError(
            f"Unknown pretrained tag {tag!r} for {arch}."
            + (f" Closest: {', '.join(hint)}." if hint else f" Known tags: {', '.join(tags)}.")
        )
    return arch, tag


def _prefix_encodable(module: torch.nn.Module, tokens: torch.Tensor) -> bool:
    """True for open_clip's ``CLIP`` text tower: causal mask, positional table, argmax-EOT pool.

    Then the pooled output of a prompt depends only on its tokens up to the EOT token (position
    ``argmax``): attention is causal, and everything else acts per position. ``CustomTextCLIP``
    (Hugging Face text towers, SigLIP's bidirectional ones, CoCa's appended CLS token) and any
    other pooling are excluded.
    """
    import open_clip

    if not isinstance(module, open_clip.model.CLIP):
        return False
    if getattr(module, "text_pool_type", None) != "argmax":
        return False
    mask = getattr(module, "attn_mask", None)
    pos = getattr(module, "positional_embedding", None)
    if not isinstance(mask, torch.Tensor) or not isinstance(pos, torch.Tensor) or pos.ndim != 2:
        return False
    n = tokens.shape[-1]
    if tuple(mask.shape) != (n, n) or pos.shape[0] != n:
        return False
    causal = torch.full((n, n), float("-inf")).triu(1)
    return bool(torch.equal(mask.detach().float().cpu(), causal))


def _encode_text_prefix(module: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``module.encode_text(tokens, normalize=True)`` for tokens cut after their last EOT.

    The steps of open_clip's ``CLIP.encode_text`` (open_clip 3.x), on the first ``L`` positions:
    the positional table and the causal mask are sliced to ``L``.
    """
    length = tokens.shape[1]
    cast_dtype = module.transformer.get_cast_dtype()
    x = module.token_embedding(tokens).to(cast_dtype)
    x = x + module.positional_embedding[:length].to(cast_dtype)
    x = module.transformer(x, attn_mask=module.attn_mask[:length, :length].contiguous())
    x = module.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    projection = module.text_projection
    if projection is not None:
        x = projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
    return torch.nn.functional.normalize(x, dim=-1)


def _prefix_agrees(module: torch.nn.Module, tokens: torch.Tensor) -> bool:
    """Check :func:`_encode_text_prefix` against the real ``encode_text`` on a few prompts.

    A guard against a future open_clip whose ``encode_text`` does something more: then the
    full-context path is used, and only a little speed is lost.
    """
    full = module.encode_text(tokens, normalize=True).float()
    length = int(tokens.argmax(dim=-1).max()) + 1
    cut = _encode_text_prefix(module, tokens[:, :length]).float()
    if torch.allclose(cut, full, atol=1e-4, rtol=0):
        return True
    warnings.warn(
        "open_clip's encode_text differs from spurbench's EOT-truncated text encoding on this "
        "model; using full 77-token contexts for its zero-shot heads (slower, same results).",
        RuntimeWarning,
        stacklevel=3,
    )
    return False

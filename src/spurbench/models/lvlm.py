"""Vision-language chat models (LLaVA-1.5 / LLaVA-NeXT style) scored by answer likelihood.

Why: the CounterAnimal paper (Wang, Lin et al., *A Sober Look at the Robustness of CLIPs to
Spurious Features*, NeurIPS 2024, arXiv:2403.11497, section on large vision-language models)
evaluates MiniGPT-4 (Vicuna-7B) and LLaVA-1.5-7B on the 1-vs-20 protocol by asking each image
"What is the main object in the image?" and scoring every candidate answer "A <object name>." by
its language-modelling loss; the prediction is the lowest-loss candidate. Free-form descriptions
did worse and yes/no prompts hallucinate, so likelihood ranking is the paper's protocol.

How: the image and the chat-templated question are the same for every candidate, and in a
causal LM the keys/values of a prefix do not depend on what follows. So the image + prompt
prefix runs **once** per image with ``use_cache=True`` (the vision tower, the projector and
~600 prefix tokens: nearly all the compute), and all of that image's candidate answers then run
in **one** batched forward of a few tokens each that reuses the prefix's ``DynamicCache``
(repeated along the batch with the cache's own ``batch_repeat_interleave``). Candidates of
different lengths are right-padded; padding is masked out of the attention and of the loss.
The result equals one full forward per candidate (tested to 1e-4 against the model's own
``forward(labels=...)``) at a fraction of the cost (``benchmarks/bench_lvlm_prefix.py``).

Model, processor and chat template all come from the checkpoint (hub id or local folder),
loaded with ``use_safetensors=True``: pickled ``.bin`` weights are refused. Before any weight
is read, the parameter count (from the config, on the meta device) times the bytes per
parameter, plus the KV cache of a prefix and a batch of candidates, is compared with the free
memory of the target device; a model that cannot fit is refused with a :class:`SpurbenchError`
unless forced. bf16 on GPU, fp32 on CPU (most CPUs have no fast bf16 matmul). Peak-memory
arithmetic for a 7B model: ``docs/lvlm_memory.md``.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from spurbench.errors import SpurbenchError, UnsafeCheckpointError
from spurbench.models.base import AnswerScorer, Features, PreprocessConfig
from spurbench.models.checkpoints import guarded_load
from spurbench.models.spec import ModelSpec

#: The paper's question and answer format (Wang et al. 2024, LVLM evaluation, 1-vs-20).
DEFAULT_QUESTION = "What is the main object in the image?"
DEFAULT_ANSWER = "A {c}."
#: "mean": the language-modelling loss of the answer tokens (cross-entropy averaged over them,
#: what ``forward(labels=...)`` returns: the paper's score). "sum": the answer's total negative
#: log-likelihood, which favours short names.
REDUCTIONS = ("mean", "sum")
#: What a candidate's score reads. ``paper``: the reduction (default mean) over every answer
#: token of "A {name}.", the paper's score; the shared "A" and "." tokens are easy to predict and
#: dilute a long name's mean, which favours long names. ``name-mean`` / ``name-sum``: the name's
#: tokens only. ``pmi``: the name's log-likelihood with the image minus with a blank image (same
#: prompt and answer), so names the language model finds likely whatever the image lose their
#: prior advantage. Every score is a loss: lower wins.
SCORES = ("paper", "name-mean", "name-sum", "pmi")
#: Prompt tokens besides the image assumed by the memory estimate (question + template).
PROMPT_TOKENS_ESTIMATE = 64
#: Candidate batch assumed by the memory estimate when none is given (the 1-vs-20 protocol).
DEFAULT_CANDIDATES = 20
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}
_ANSWER_MARK = "SPURBENCHANSWERMARK"


@dataclass(frozen=True)
class MemoryEstimate:
    """What loading and scoring will need on the target device, from the config alone."""

    n_params: int
    bytes_per_param: int
    weight_bytes: int
    kv_bytes: int  # prefix KV cache + its copies for one batch of candidates
    available_bytes: int | None  # free RAM (CPU) or free GPU memory; None when unknown
    where: str

    @property
    def needed_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes

    @property
    def fits(self) -> bool:
        return self.available_bytes is None or self.needed_bytes <= self.available_bytes

    def message(self, name: str, dtype: torch.dtype) -> str:
        avail = "unknown" if self.available_bytes is None else _gb(self.available_bytes)
        return (
            f"{name}: {_count(self.n_params)} parameters × {self.bytes_per_param} bytes "
            f"({str(dtype).removeprefix('torch.')}) = {_gb(self.weight_bytes)} of weights, "
            f"+ {_gb(self.kv_bytes)} of KV cache for one image prefix and a batch of candidates "
            f"= {_gb(self.needed_bytes)} needed; {avail} available on {self.where}."
        )


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def available_memory(device: torch.device) -> tuple[int | None, str]:
    """Free memory of ``device`` in bytes: GPU free memory, or the OS's available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"GPU {torch.cuda.get_device_name(device)}"
    try:  # MemAvailable counts reclaimable page cache, unlike free pages
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "CPU RAM"
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "CPU RAM"
    except (ValueError, OSError, AttributeError):
        return None, "CPU RAM"


def estimate_memory(
    config: Any,
    dtype: torch.dtype,
    device: torch.device,
    n_candidates: int = DEFAULT_CANDIDATES,
) -> MemoryEstimate:
    """Parameters counted on the meta device (no allocation), KV cache from the text config.

    The KV cache holds the prefix (image tokens + prompt) once, then ``n_candidates`` copies of
    it during the candidate forward (plus a few answer tokens each).
    """
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        meta = AutoModelForImageTextToText.from_config(config)
    n_params = sum(p.numel() for p in meta.parameters())
    del meta
    bpp = torch.finfo(dtype).bits // 8
    text = config.get_text_config(decoder=True)
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    per_token = text.num_hidden_layers * 2 * kv_heads * head_dim * bpp
    prefix = _image_tokens(config) + PROMPT_TOKENS_ESTIMATE
    kv = per_token * prefix * (1 + n_candidates)
    available, where = available_memory(device)
    return MemoryEstimate(n_params, bpp, n_params * bpp, kv, available, where)


def _image_tokens(config: Any) -> int:
    """Image placeholder tokens per image (LLaVA-NeXT: base image + its largest tile grid)."""
    vision = getattr(config, "vision_config", None)
    base = getattr(config, "image_seq_length", None)
    if base is None and vision is not None:
        base = (vision.image_size // vision.patch_size) ** 2
    base = int(base or 576)
    grid = getattr(config, "image_grid_pinpoints", None)
    if grid and vision is not None:
        side = vision.image_size
        return base * (1 + max((h // side) * (w // side) for h, w in grid))
    return base


def _default_notify(message: str) -> None:
    print(message, file=sys.stderr)


class LVLMAdapter(AnswerScorer):
    """An image-text-to-text chat model; :meth:`score_candidates` ranks answers by likelihood.

    ``encode_images`` returns the image tokens the language model sees (projector output),
    mean-pooled, so feature caches can read the LVLM's vision side; it has no linear head: the
    paper classifies with an LVLM by answer likelihood (:mod:`spurbench.evaluate.lvlm`).

    Args:
        spec: ``ModelSpec("lvlm", <hub id or folder>)``.
        device: ``cpu`` or ``cuda[:i]``.
        dtype: ``float32`` / ``bfloat16`` / ``float16``; default bf16 on GPU, fp32 on CPU.
        force: load even when the memory estimate says the model will not fit.
        question, answer_template, reduction: defaults for :meth:`score_candidates`.
        candidate_batch_size: candidates per batched forward (None: all of an image's at once);
            lower it to bound the KV-cache copies on a small GPU.
        chat_template: a Jinja template overriding the checkpoint's own.
        notify: where the size message goes before loading (default: stderr).
    """

    zero_shot = False

    def __init__(
        self,
        spec: ModelSpec,
        device: str = "cpu",
        *,
        dtype: str | torch.dtype | None = None,
        force: bool = False,
        question: str = DEFAULT_QUESTION,
        answer_template: str = DEFAULT_ANSWER,
        reduction: str = "mean",
        candidate_batch_size: int | None = None,
        chat_template: str | None = None,
        notify: Callable[[str], None] | None = _default_notify,
    ) -> None:
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        self.spec = spec
        self.device = torch.device(device)
        self.dtype = _resolve_dtype(dtype, self.device)
        _check_reduction(reduction)
        self.question = question
        self.answer_template = answer_template
        self.reduction = reduction
        self.candidate_batch_size = candidate_batch_size
        source = spec.arch
        with guarded_load(self.name, source):
            config = AutoConfig.from_pretrained(source)
        self.memory = estimate_memory(
            config, self.dtype, self.device, candidate_batch_size or DEFAULT_CANDIDATES
        )
        message = self.memory.message(self.name, self.dtype)
        if not self.memory.fits and not force:
            raise SpurbenchError(
                f"Refusing to load: {message} Use a GPU, dtype='bfloat16' (halves the weights), "
                "a smaller candidate_batch_size (the KV cache), or force=True to try anyway."
            )
        if notify is not None:
            notify(f"Loading {message}")
        load_kw: dict[str, Any] = {"dtype": self.dtype, "use_safetensors": True}
        if importlib.util.find_spec("accelerate") is not None:
            load_kw["device_map"] = str(self.device)  # straight to the device, no RAM staging
        with _safetensors_only(self.name, source), guarded_load(self.name, source):
            self.processor = AutoProcessor.from_pretrained(source)
            self.module = AutoModelForImageTextToText.from_pretrained(
                source, config=config, **load_kw
            )
        self.module.to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        self.chat_template = chat_template or _own_chat_template(self.processor, self.name)
        params = inspect.signature(self.module.forward).parameters
        # transformers 5 renamed ``past_key_values`` to ``cache`` (the old name is deprecated).
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_last = "logits_to_keep" in params
        self._image_token_id = _image_token_id(self.processor, config)
        self._ids_memo: dict[str, list[int]] = {}
        self._prompt_memo: dict[str, tuple[str, str]] = {}
        self._blank_memo: dict[tuple[str, str, str], float] = {}
        self._span_memo: dict[tuple[str, str, str], tuple[int, int]] = {}
        self.preprocess = self._pixel_values
        self.preprocess_cfg = _preprocess_cfg(self.processor)

    @property
    def name(self) -> str:
        return f"lvlm:{self.spec.arch}"

    @property
    def chat_template_digest(self) -> str:
        return hashlib.sha256(self.chat_template.encode()).hexdigest()[:16]

    # -- the image pass ------------------------------------------------------------------------

    def _pixel_values(self, image: Image.Image) -> torch.Tensor:
        return self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def encode_images(self, images: torch.Tensor) -> Features:
        """The projected image tokens the LM reads, mean-pooled (fixed-size processors only)."""
        out = self.module.get_image_features(pixel_values=images.to(self.device, self.dtype))
        tokens = getattr(out, "pooler_output", out)
        emb = torch.stack([t.float().reshape(-1, t.shape[-1]).mean(0) for t in tokens]).cpu()
        return Features(emb, emb.clone())

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "chat_template_sha": self.chat_template_digest,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    # -- prompts -------------------------------------------------------------------------------

    def prompt(self, question: str | None = None) -> str:
        """The chat-templated user turn (image + question) ending in the generation prompt."""
        return self._prompt_parts(question or self.question)[0]

    def answer_separator(self, question: str | None = None) -> str:
        """What the chat template puts between the generation prompt and the answer (" ")."""
        return self._prompt_parts(question or self.question)[1]

    def _prompt_parts(self, question: str) -> tuple[str, str]:
        """(prompt, separator) rendered by the chat template, once per question."""
        if question not in self._prompt_memo:
            conv = _conversation(question)
            prompt = self.processor.apply_chat_template(
                conv, add_generation_prompt=True, tokenize=False, chat_template=self.chat_template
            )
            conv.append({"role": "assistant", "content": [{"type": "text", "text": _ANSWER_MARK}]})
            full = self.processor.apply_chat_template(
                conv, tokenize=False, chat_template=self.chat_template
            )
            sep = " "  # a template whose turns do not extend the generation prompt
            if full.startswith(prompt) and _ANSWER_MARK in full[len(prompt) :]:
                sep = full[len(prompt) : full.index(_ANSWER_MARK, len(prompt))]
            self._prompt_memo[question] = (prompt, sep)
        return self._prompt_memo[question]

    def full_text(
        self, candidate: str, question: str | None = None, template: str | None = None
    ) -> str:
        """Prompt + answer, the text whose answer tokens are scored (no end-of-turn token)."""
        answer = (template or self.answer_template).format(c=candidate)
        return self.prompt(question) + self.answer_separator(question) + answer

    # -- scoring -------------------------------------------------------------------------------

    @torch.inference_mode()
    def score_candidates(
        self,
        images: Sequence[Image.Image],
        question: str | None,
        candidates: Sequence[str] | Sequence[Sequence[str]],
        *,
        answer_template: str | None = None,
        reduction: str | None = None,
        batch_size: int | None = None,
        score: str = "paper",
    ) -> np.ndarray:
        """Loss of each candidate answer per image, shape (n_images, n_candidates): lower wins.

        Args:
            images: PIL images.
            question: the question (None: the adapter's, by default the paper's).
            candidates: class names, one list for all images or one list per image; each is
                formatted with ``answer_template`` (default "A {c}."). Ragged per-image lists
                are padded with ``inf`` on the right.
            reduction: ``mean`` (the answer's LM loss, the paper's) or ``sum`` (total NLL) of
                the ``paper`` score.
            batch_size: candidates per batched forward (default: all of an image's at once).
            score: one of :data:`SCORES` (``paper``: the answer's loss with ``reduction``).
        """
        reduction = reduction or self.reduction
        _check_reduction(reduction)
        if score not in SCORES:
            raise SpurbenchError(f"Unknown score {score!r}; choose one of {SCORES}.")
        per_image = _per_image(candidates, len(images))
        template = answer_template or self.answer_template
        plan = self._plan(question, sorted({c for cs in per_image for c in cs}), template)
        if score != "paper":
            reduction = "mean" if score == "name-mean" else "sum"
        width = max((len(cs) for cs in per_image), default=0)
        out = np.full((len(images), width), np.inf)
        chunk = batch_size or self.candidate_batch_size
        for i, (image, names) in enumerate(zip(images, per_image, strict=True)):
            if names:
                rows = [self._scored_row(plan, n, score) for n in names]
                out[i, : len(names)] = self._score_image(image, plan, rows, reduction, chunk)
                if score == "pmi":
                    out[i, : len(names)] -= self._blank_losses(plan, names, chunk)
        return out

    def _scored_row(self, plan: _Plan, name: str, score: str) -> tuple[list[int], int, int]:
        """(tokens from the cut, first scored, end of scored) of one candidate under ``score``."""
        tail, first = plan.row[name]
        if score == "paper":
            return tail, first, len(tail)
        key = (plan.question or self.question, plan.template, name)
        if key not in self._span_memo:
            self._span_memo[key] = self._name_span(
                name, plan.question, plan.template, plan.cut + first
            )
        start, stop = self._span_memo[key]
        return tail, start - plan.cut, stop - plan.cut

    def _blank_losses(self, plan: _Plan, names: list[str], chunk: int | None) -> np.ndarray:
        """Name-token NLL (sum) of each name after a blank image: the answer's prior (memoised).

        The blank image is the processor's mean colour, so its normalised pixels are all zero:
        the same prompt and tokens as with a real image, with no visual evidence.
        """
        missing = [
            n
            for n in dict.fromkeys(names)
            if (plan.prompt, plan.template, n) not in self._blank_memo
        ]
        if missing:
            ip = self.processor.image_processor
            mean = getattr(ip, "image_mean", None) or (0.5, 0.5, 0.5)
            h, w = self.preprocess_cfg.size
            blank = Image.new("RGB", (w or 1, h or 1), tuple(round(255 * float(m)) for m in mean))
            rows = [self._scored_row(plan, n, "pmi") for n in missing]
            for n, loss in zip(
                missing, self._score_image(blank, plan, rows, "sum", chunk), strict=True
            ):
                self._blank_memo[(plan.prompt, plan.template, n)] = float(loss)
        return np.array([self._blank_memo[(plan.prompt, plan.template, n)] for n in names])

    def _ids(self, text: str) -> list[int]:
        """Token ids of a text, as the processor's tokenizer makes them (memoised)."""
        if text not in self._ids_memo:
            self._ids_memo[text] = list(self.tokenizer(text)["input_ids"])
        return self._ids_memo[text]

    def _plan(self, question: str | None, names: list[str], template: str) -> _Plan:
        """Tokenise prompt and prompt+answer texts once; find the shared prefix to cache.

        Tokenisation is done on the whole prompt+answer text (so the answer's first token is
        what the tokenizer really makes after the prompt), with the image placeholder
        unexpanded. The scored tokens of a candidate are those after its longest common prefix
        with the prompt's tokens; the cached prefix stops one token before the earliest of
        them, so every scored token is predicted inside the candidate batch.
        """
        prompt = self.prompt(question)
        prompt_ids = self._ids(prompt)
        if self._image_token_id not in prompt_ids:
            raise SpurbenchError(
                f"The chat template of {self.name} put no image placeholder in the prompt "
                f"{prompt!r}; pass a chat_template that renders {{'type': 'image'}} content."
            )
        image_pos = len(prompt_ids) - 1 - prompt_ids[::-1].index(self._image_token_id)
        fulls, lcps = {}, {}
        for name in names:
            ids = self._ids(self.full_text(name, question, template))
            lcp = _common_prefix(prompt_ids, ids)
            if lcp >= len(ids):
                raise SpurbenchError(f"The answer for {name!r} adds no token to the prompt.")
            fulls[name], lcps[name] = ids, lcp
        cut = min(lcps.values()) - 1 if names else len(prompt_ids) - 1
        if cut <= image_pos:
            raise SpurbenchError(
                "The answers change how the prompt itself is tokenised up to the image; the "
                "prefix cannot be shared. Use another question or answer template."
            )
        rows = {n: (fulls[n][cut:], lcps[n] - cut) for n in names}
        return _Plan(prompt, prompt_ids, image_pos, cut, rows, question, template)

    def _name_span(
        self, name: str, question: str | None, template: str, answer_start: int
    ) -> tuple[int, int]:
        """[first, stop) positions, in the prompt + answer tokens, of the tokens of ``name``.

        A token counts when its characters overlap the name's (a token merging the name's last
        letter with "." belongs to the name). Needs a fast tokenizer's offset mapping.
        """
        text = self.full_text(name, question, template)
        before = template.partition("{c}")[0].format()
        begin = len(text) - len(template.format(c=name)) + len(before)
        end = begin + len(name)
        try:
            offsets = self.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        except (NotImplementedError, TypeError, KeyError):
            raise SpurbenchError(
                f"{self.name}: name-only scores need a fast tokenizer (character offsets)."
            ) from None
        inside = [i for i, (a, b) in enumerate(offsets) if a < end and b > begin]
        inside = [i for i in inside if i >= answer_start]
        if not inside:
            raise SpurbenchError(f"No token of the answer spells the name {name!r}.")
        return inside[0], inside[-1] + 1

    def _score_image(
        self,
        image: Image.Image,
        plan: _Plan,
        rows: list[tuple[list[int], int, int]],
        reduction: str,
        chunk: int | None,
    ) -> np.ndarray:
        """One prefix forward for the image, then its candidates in batched forwards."""
        inputs = self.processor(images=[image], text=[plan.prompt], return_tensors="pt")
        ids = inputs.pop("input_ids")[0].tolist()
        for key in ("attention_mask", "token_type_ids", "mm_token_type_ids"):
            inputs.pop(key, None)
        extra = len(ids) - len(plan.prompt_ids)  # image placeholder expanded to n tokens
        p = plan.image_pos
        if ids[:p] != plan.prompt_ids[:p] or ids[p + 1 + extra :] != plan.prompt_ids[p + 1 :]:
            raise SpurbenchError(
                f"The processor of {self.name} tokenises the prompt differently from its "
                "tokenizer (beyond expanding the image placeholder); prefix reuse is unsafe."
            )
        prefix_len = plan.cut + extra
        image_inputs = {
            k: v.to(self.device, self.dtype if v.is_floating_point() else None)
            for k, v in inputs.items()
            if isinstance(v, torch.Tensor)
        }
        prefix = torch.tensor([ids[:prefix_len]], device=self.device)
        kw = {"logits_to_keep": 1} if self._keep_last else {}
        out = self.module(
            input_ids=prefix,
            attention_mask=torch.ones_like(prefix),
            use_cache=True,
            **image_inputs,
            **kw,
        )
        cache = getattr(out, self._cache_arg, None)
        if cache is None:
            cache = out.past_key_values
        step = chunk or len(rows)
        losses = []
        for s in range(0, len(rows), step):
            last = s + step >= len(rows)
            # The candidate forward appends to the cache it is given: keep a pristine copy of
            # the prefix while more chunks will need it.
            chunk_cache = cache if last else copy.deepcopy(cache)
            losses.append(self._score_rows(chunk_cache, prefix_len, rows[s : s + step], reduction))
        return np.concatenate(losses)

    def _score_rows(
        self, cache: Any, prefix_len: int, rows: list[tuple[list[int], int, int]], reduction: str
    ) -> np.ndarray:
        """NLL of each row's scored tokens [first, stop), given a cache holding the prefix."""
        n, width = len(rows), max(len(t) for t, _, _ in rows)
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        tokens = torch.full((n, width), pad, dtype=torch.long)
        scored = torch.zeros((n, width), dtype=torch.bool)  # scored[i, t]: token t is an answer
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, (tail, first, stop) in enumerate(rows):
            tokens[i, : len(tail)] = torch.tensor(tail)
            mask[i, : len(tail)] = 1
            scored[i, first:stop] = True
        cache.batch_repeat_interleave(n)
        tokens, mask, scored = (t.to(self.device) for t in (tokens, mask, scored))
        attention = torch.cat(
            [torch.ones((n, prefix_len), dtype=torch.long, device=self.device), mask], dim=1
        )
        out = self.module(
            input_ids=tokens,
            attention_mask=attention,
            use_cache=True,
            **{self._cache_arg: cache},
        )
        # logits at position t predict token t + 1
        logp = out.logits[:, :-1].float().log_softmax(-1)
        target = tokens[:, 1:]
        token_nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        weight = scored[:, 1:].float()
        nll = (token_nll * weight).sum(1)
        if reduction == "mean":
            nll = nll / weight.sum(1)
        return nll.double().cpu().numpy()


@dataclass(frozen=True)
class _Plan:
    prompt: str
    prompt_ids: list[int]
    image_pos: int  # last image placeholder in prompt_ids (unexpanded)
    cut: int  # prompt tokens (unexpanded) in the cached prefix
    row: dict[str, tuple[list[int], int]]  # name -> (tokens from cut, first answer token)
    question: str | None
    template: str  # the answer template


def load_lvlm(name: str, device: str = "cpu", **kwargs: Any) -> LVLMAdapter:
    """Load ``lvlm:<hub id or folder>`` (or a bare hub id / folder) as an :class:`LVLMAdapter`."""
    arch = name.removeprefix("lvlm:")
    return LVLMAdapter(ModelSpec("lvlm", arch), device=device, **kwargs)


def _conversation(question: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _per_image(
    candidates: Sequence[str] | Sequence[Sequence[str]], n_images: int
) -> list[list[str]]:
    if all(isinstance(c, str) for c in candidates):
        return [list(candidates)] * n_images  # type: ignore[arg-type]
    per = [list(c) for c in candidates]
    if len(per) != n_images:
        raise SpurbenchError(f"{len(per)} candidate lists for {n_images} images.")
    return per


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise SpurbenchError(f"Unknown reduction {reduction!r}; choose one of {REDUCTIONS}.")


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise SpurbenchError(f"Unknown dtype {dtype!r}; choose one of {sorted(_DTYPES)}.")
    return _DTYPES[dtype]


def _own_chat_template(processor: Any, name: str) -> str:
    template = getattr(processor, "chat_template", None) or getattr(
        processor.tokenizer, "chat_template", None
    )
    if not template:
        raise SpurbenchError(
            f"{name} ships no chat template (processor or tokenizer). Pass chat_template=... "
            "with the model's conversation format."
        )
    return template


def _image_token_id(processor: Any, config: Any) -> int:
    got = getattr(processor, "image_token_id", None)
    if got is None:
        got = getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)
    if got is None:
        raise SpurbenchError("Cannot tell which token is the image placeholder of this model.")
    return int(got)


def _preprocess_cfg(processor: Any) -> PreprocessConfig:
    ip = processor.image_processor
    crop = getattr(ip, "crop_size", None)
    size = getattr(ip, "size", None)
    edge = _field(size, "shortest_edge")
    if edge is not None:
        resize: tuple[int, ...] = (int(edge),)
    else:
        edge = _field(size, "height") or 0
        resize = (int(edge), int(_field(size, "width") or edge))
    cropped = bool(getattr(ip, "do_center_crop", False) and crop)
    # uncropped, the model sees the resized image: (edge, edge) or (height, width)
    hw = (_field(crop, "height"), _field(crop, "width")) if cropped else (resize * 2)[:2]
    resample = getattr(ip, "resample", 3)
    return PreprocessConfig(
        size=hw,
        mean=tuple(getattr(ip, "image_mean", None) or ()),
        std=tuple(getattr(ip, "image_std", None) or ()),
        interpolation=_RESAMPLE.get(int(getattr(resample, "value", resample) or 3), "bicubic"),
        resize=resize,
        resize_mode="shortest" if len(resize) == 1 else "squash",
        crop="center" if cropped else "none",
    )


def _field(value: Any, key: str) -> Any:
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, dict):
        return value.get(key)
    return getattr(value, key, None)


@contextmanager
def _safetensors_only(name: str, source: str) -> Iterator[None]:
    """Turn 'no safetensors file' into a message saying why pickled weights are refused."""
    try:
        yield
    except OSError as e:
        if "safetensors" not in str(e).lower():
            raise
        raise UnsafeCheckpointError(
            f"{name}: no safetensors weights in {source}. spurbench loads only safetensors "
            "(pickled .bin files can run code when loaded); convert the checkpoint with "
            "transformers' save_pretrained(safe_serialization=True) in a trusted environment."
        ) from None

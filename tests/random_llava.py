"""A random-init LLaVA-1.5 checkpoint for tests and benchmarks (nothing is downloaded).

Kept out of the package: users load real checkpoints; this builds one of the same layout (tokenizer,
processor, chat template, safetensors weights) at a tiny or at the real 7B size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spurbench.errors import SpurbenchError
from spurbench.models.lvlm import DEFAULT_ANSWER, DEFAULT_QUESTION

#: LLaVA-1.5's conversation format (llava-hf/llava-1.5-7b-hf chat template), for random models.
LLAVA_15_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def llava_15_7b_config() -> Any:
    """The architecture of ``llava-hf/llava-1.5-7b-hf`` (Vicuna-7B + CLIP ViT-L/14-336 + MLP).

    For memory arithmetic and random-init benchmarks at the real size; 7,063,427,072 parameters.
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    return LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=336,
            patch_size=14,
            projection_dim=768,
        ),
        text_config=LlamaConfig(
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=32064,
            max_position_embeddings=4096,
        ),
        image_token_id=32000,
        image_seq_length=576,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )


def save_random_llava(
    folder: str | Path,
    *,
    config: Any = None,
    image_size: int = 32,
    patch_size: int = 8,
    vision_width: int = 32,
    vision_layers: int = 2,
    text_width: int = 64,
    text_layers: int = 2,
    vocab_size: int = 600,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> Path:
    """A random-init LLaVA-1.5-architecture checkpoint, saved as users receive real ones.

    CLIP vision tower + MLP projector + Llama LM, a Llama-style BPE tokenizer (``▁`` word
    prefix, ``<s>`` prepended) trained offline on the prompt and the ImageNet class names, a
    ``LlavaProcessor`` with a ``CLIPImageProcessor`` and LLaVA-1.5's chat template. The image
    becomes ``(image_size / patch_size)²`` placeholder tokens, as in LLaVA-1.5 (576 at 336 px).
    ``config`` (a ``LlavaConfig``, e.g. :func:`llava_15_7b_config`) replaces the size arguments;
    its special-token ids are set to the tokenizer's. ``device`` is where the weights are
    initialised (a GPU initialises billions of parameters in seconds). For tests, benchmarks
    and offline smoke runs: nothing is downloaded.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    from spurbench.data.classes import imagenet_classes

    folder = Path(folder)
    special = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    bpe.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    names = imagenet_classes("wordnet").names
    corpus = [
        f"USER: \n{DEFAULT_QUESTION} ASSISTANT:",
        *(DEFAULT_ANSWER.format(c=n) for n in names),
    ]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special)
    bpe.train_from_iterator(corpus, trainer)
    ids = {t: bpe.token_to_id(t) for t in special}
    bpe.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", ids["<s>"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    if config is None:
        config = LlavaConfig(
            vision_config=CLIPVisionConfig(
                hidden_size=vision_width,
                intermediate_size=2 * vision_width,
                num_hidden_layers=vision_layers,
                num_attention_heads=2,
                image_size=image_size,
                patch_size=patch_size,
            ),
            text_config=LlamaConfig(
                hidden_size=text_width,
                intermediate_size=2 * text_width,
                num_hidden_layers=text_layers,
                num_attention_heads=4,
                num_key_value_heads=2,
                vocab_size=bpe.get_vocab_size(),
                max_position_embeddings=max(512, 2 * (image_size // patch_size) ** 2),
            ),
            image_seq_length=(image_size // patch_size) ** 2,
            vision_feature_layer=-2,
            vision_feature_select_strategy="default",
        )
    if config.text_config.vocab_size < bpe.get_vocab_size():
        raise SpurbenchError("The config's vocabulary is smaller than the tokenizer's.")
    config.image_token_id = ids["<image>"]
    config.text_config.bos_token_id = ids["<s>"]
    config.text_config.eos_token_id = ids["</s>"]
    config.text_config.pad_token_id = ids["<pad>"]
    side, patch = config.vision_config.image_size, config.vision_config.patch_size
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}
        ),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's CLS, dropped by the "default" strategy
        chat_template=LLAVA_15_CHAT_TEMPLATE,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlavaForConditionalGeneration(config)
    model.to(dtype).save_pretrained(folder)
    del model
    processor.save_pretrained(folder)
    return folder

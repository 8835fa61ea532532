"""Make a tiny Llama model that real vLLM (CPU) can serve, entirely offline, in a few seconds.

Run it with the vLLM virtualenv's Python (it needs torch, transformers, tokenizers and peft):

    .venv-vllm/bin/python e2e/vllm/tiny_model.py OUT_DIR

OUT_DIR/model holds a Llama config (hidden size 128, 2 layers, 2 heads of 64, vocabulary 1,024), random bfloat16
weights as safetensors, a byte-level BPE tokenizer trained on a generated corpus, and a chat template;
OUT_DIR/lora holds a random rank-8 LoRA adapter for it made with peft. Everything is seeded, so two runs make the
same files. The directory appears complete or not at all (it is built aside, then renamed).
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

VOCAB_SIZE = 1024
MAX_MODEL_LEN = 2048
BOS, EOS = "<s>", "</s>"
# Renders OpenAI-style messages as `<|role|>\ncontent\n` turns and opens the assistant's turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "qu", "da", "fe", "gi", "ho", "ju")


def corpus(lines: int = 4000, seed: int = 0) -> list[str]:
    """Generated text for training the tokenizer: words of 1-4 syllables, digits and punctuation."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(600)]
    words += ["system", "user", "assistant", "hello", "the", "a", "of", "and", "to", "in", "is", "you", "what"]
    return [
        " ".join(rng.choice(words) for _ in range(rng.randint(5, 30))) + rng.choice((".", "?", "!", ", 42."))
        for _ in range(lines)
    ]


def train_tokenizer():
    """A byte-level BPE tokenizer (a `tokenizers.Tokenizer`) of VOCAB_SIZE ids, trained on `corpus()`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[BOS, EOS, "<|system|>", "<|user|>", "<|assistant|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer)
    return tokenizer


def make_tokenizer(directory: Path) -> None:
    """Save the trained tokenizer, with the chat template, as a transformers tokenizer."""
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(), bos_token=BOS, eos_token=EOS, pad_token=EOS)
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.model_max_length = MAX_MODEL_LEN
    wrapped.save_pretrained(directory)


def make_model(directory: Path, lora_directory: Path) -> None:
    """Save a randomly initialised tiny Llama and a random rank-8 LoRA adapter for it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,  # the CPU attention backend supports head sizes 32, 64, 80, ...
        max_position_embeddings=MAX_MODEL_LEN,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(lora_directory)


def make(out: Path) -> Path:
    """Build the tiny model and its adapter under `out` (model/, lora/) unless already there; return `out`."""
    if (out / "model" / "config.json").exists() and (out / "lora" / "adapter_config.json").exists():
        return out
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    make_tokenizer(staging / "model")
    make_model(staging / "model", staging / "lora")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tiny_model.py OUT_DIR")
    print(make(Path(sys.argv[1]).resolve()))

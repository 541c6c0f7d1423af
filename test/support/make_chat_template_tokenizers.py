"""Builds small tokenizer folders (no downloads) into OUT/<case>/ with and without a chat template, saved as
transformers saves them, and prints, as JSON, what AutoTokenizer.from_pretrained reads of each: whether
`tokenizer.chat_template is not None` and whether it is truthy (the trainer refuses a grpo/rloo policy tokenizer
whose chat_template is falsy), with the files each folder holds.

    python make_chat_template_tokenizers.py OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"


def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def build(out: Path) -> dict:
    cases: dict[str, Path] = {}

    def save(name: str, template, **kwargs) -> None:
        tok = tokenizer()
        tok.chat_template = template
        cases[name] = out / name
        tok.save_pretrained(str(cases[name]), **kwargs)

    save("none", None)
    save("jinja", TEMPLATE)  # transformers 5's default: chat_template.jinja beside tokenizer_config.json
    save("in-config", TEMPLATE, save_jinja_files=False)  # the legacy layout: tokenizer_config.json's chat_template
    save("list-in-config", {"default": TEMPLATE, "tool_use": TEMPLATE}, save_jinja_files=False)
    save("additional-only", {"tool_use": TEMPLATE})  # only additional_chat_templates/tool_use.jinja
    save("empty-in-config", "", save_jinja_files=False)
    # a processor's chat_template.json, which AutoTokenizer does not read
    save("json-only", None)
    (cases["json-only"] / "chat_template.json").write_text(json.dumps({"chat_template": TEMPLATE}))

    result = {}
    for name, folder in cases.items():
        loaded = AutoTokenizer.from_pretrained(str(folder))
        result[name] = {
            "is_not_none": loaded.chat_template is not None,
            "truthy": bool(loaded.chat_template),
            "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()),
        }
    return result


if __name__ == "__main__":
    print(json.dumps(build(Path(sys.argv[1]))))

"""Builds small tokenizers (no downloads) into OUT/<case>/ and prints, as JSON, what Hugging Face reads of each:
`get_vocab()` of AutoTokenizer.from_pretrained (what the trainer's check_reward_model compares) and of the
`tokenizers` library's Tokenizer.from_file(tokenizer.json), as size and fingerprint, and for each pair of cases
whether their vocabularies are equal and how many (token, id) pairs differ (the trainer's count).

    python make_tokenizers.py OUT
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training-images" / "trainer"))
from tuneyard_trainer import templates  # noqa: E402  (the trainer's chat templates: what a chatTemplate run adds)

TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "a reward model scores each completion of the policy",
    "tokenizers split text into pieces; ids index the embeddings",
    "héllo wörld, naïve café — 東京 and emoji 🙂 too",
] * 40
OTHER_TEXT = ["zebras quietly vex jumping fowl", "pack my box with five dozen liquor jugs", "sphinx of black quartz"] * 40


def save(tokenizer: Tokenizer, folder: Path, **special: str) -> None:
    """As a model folder: tokenizer.json and tokenizer_config.json (save_pretrained)."""
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special).save_pretrained(str(folder))


def bpe(text: list[str], size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(text, trainer)
    tok.add_special_tokens([AddedToken("<|pad|>", special=True, normalized=False)])
    tok.add_tokens(["<custom>"])
    return tok


def build(out: Path) -> dict:
    cases: dict[str, Path] = {}

    base = bpe(TEXT, 400)
    cases["bpe"] = out / "bpe"
    save(base, cases["bpe"], eos_token="<|endoftext|>", pad_token="<|pad|>")

    # the same vocabulary, another file: a normalizer and compact formatting
    reformatted = Tokenizer.from_file(str(cases["bpe"] / "tokenizer.json"))
    reformatted.normalizer = normalizers.NFKC()
    cases["bpe-reformatted"] = out / "bpe-reformatted"
    cases["bpe-reformatted"].mkdir(parents=True)
    reformatted.save(str(cases["bpe-reformatted"] / "tokenizer.json"), pretty=False)
    shutil.copy(cases["bpe"] / "tokenizer_config.json", cases["bpe-reformatted"])

    # what a run with chatTemplate chatml saves: the base's tokenizer with the template's special tokens added
    chatml = AutoTokenizer.from_pretrained(str(cases["bpe"]))
    assert templates.apply(chatml, "chatml")
    cases["bpe-chatml"] = out / "bpe-chatml"
    chatml.save_pretrained(str(cases["bpe-chatml"]))

    # another tokenizer family: a BPE of the same size trained on other text
    cases["bpe-other"] = out / "bpe-other"
    save(bpe(OTHER_TEXT, 400), cases["bpe-other"], eos_token="<|endoftext|>", pad_token="<|pad|>")

    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(
        TEXT, trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    )
    wordpiece.add_tokens(["[EXTRA]"])
    cases["wordpiece"] = out / "wordpiece"
    save(wordpiece, cases["wordpiece"], unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]")

    # one token of the model's vocabulary under another id (a free one): one id differs
    document = json.loads((cases["wordpiece"] / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = document["model"]["vocab"]
    moved = next(t for t in sorted(vocab, key=vocab.get) if t.startswith("##"))
    vocab[moved] = max(max(vocab.values()), *(a["id"] for a in document["added_tokens"])) + 1
    cases["wordpiece-one-id"] = out / "wordpiece-one-id"
    cases["wordpiece-one-id"].mkdir(parents=True)
    (cases["wordpiece-one-id"] / "tokenizer.json").write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    shutil.copy(cases["wordpiece"] / "tokenizer_config.json", cases["wordpiece-one-id"])

    unigram = Tokenizer(models.Unigram())
    unigram.normalizer = normalizers.NFKC()
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram.decoder = decoders.Metaspace()
    unigram.train_from_iterator(
        TEXT, trainers.UnigramTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"], unk_token="<unk>")
    )
    unigram.add_special_tokens([AddedToken("<sep>", special=True)])
    cases["unigram"] = out / "unigram"
    save(unigram, cases["unigram"], unk_token="<unk>", eos_token="</s>", bos_token="<s>")

    read = {}
    vocabularies = {}
    for name, folder in cases.items():
        ours = AutoTokenizer.from_pretrained(str(folder)).get_vocab()
        library = Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab(with_added_tokens=True)
        model_type = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["type"]
        vocabularies[name] = ours
        read[name] = {
            "model_type": model_type,
            "size": len(ours),
            "fingerprint": fingerprint(ours),
            "tokenizers_size": len(library),
            "tokenizers_fingerprint": fingerprint(library),
        }
    pairs = []
    names = list(cases)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            va, vb = vocabularies[a], vocabularies[b]
            pairs.append({"first": a, "second": b, "equal": va == vb, "differing": len(set(va.items()) ^ set(vb.items()))})
    return {"cases": read, "pairs": pairs}


def fingerprint(vocab: dict[str, int]) -> str:
    pairs = [[token, i] for i, token in sorted((i, token) for token, i in vocab.items())]
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


if __name__ == "__main__":
    print(json.dumps(build(Path(sys.argv[1]))))

"""Graders: score a model's answers to the eval rows. One definition, `graders.schema.json` (shared with the
TypeScript validator, lib/graders.ts), with OpenAI's grader types and field names so OpenAI grader JSON carries over
unchanged, plus Tuneyard's json_schema, regex and label_check.

    graders = load(config_list)                 # validates; GradersError names each problem's path and fix
    graders[0].grade({"output_text": "..."}, row)   # -> float; GradeError when this row cannot be graded
    grade_rows(graders, [(sample, row), ...])   # -> {name: {"mean", "scores", "passed", "errors"[, "labels"]}}

The metrics come from the libraries people compare against: sacrebleu (bleu), rouge-score (rouge_1..5, rouge_l),
rapidfuzz (fuzzy_match), NLTK (gleu; meteor, over the WordNet 3.0 files of Debian/Ubuntu's wordnet-base: wordnet()),
jsonschema, transformers (cosine, over a staged encoder). score_model and label_model (an LLM judge) are validated but
not run here yet: their results say so (`unavailable`).
"""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import jsonschema

SCHEMA_PATH = Path(__file__).with_name("graders.schema.json")
DEFAULT_PYTHON_TIMEOUT = 30.0
EXTENSION = "x-tuneyard"


class GradersError(ValueError):
    """The graders are invalid: the message lists each problem as `<path>: <what>; <fix>`."""

    def __init__(self, problems: list[tuple[str, str]], where: str = "graders"):
        self.problems = problems
        lines = "\n".join(f"  - {where}{path}: {message}" for path, message in problems)
        super().__init__(f"invalid graders ({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n{lines}")


class GradeError(RuntimeError):
    """One row could not be graded (a template names a missing field, the python grader failed or timed out)."""


class GraderUnavailable(GradeError):
    """The grader is valid but Tuneyard does not run it yet (the LLM judge graders)."""


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


# ---------------------------------------------------------------------------------------------------------------------
# Validation: the JSON Schema (jsonschema), then the rules it cannot say (templates, formulas, refused metrics, names)
# ---------------------------------------------------------------------------------------------------------------------


def render_path(path: Iterable[Any]) -> str:
    """`[0].graders.acc.input`: the same rendering as lib/graders.ts."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            out += f".{key}"
        else:
            out += f"[{json.dumps(key)}]"
    return out


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate within a small edit distance of `word` (the same rule as lib/config.ts `closest`)."""
    best: tuple[int, str] | None = None
    for name in candidates:
        distance = _levenshtein(word.lower(), name.lower())
        if distance <= max(3, len(name) // 3) and (best is None or distance < best[0]):
            best = (distance, name)
    return best[1] if best else None


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i]
        for j in range(1, len(b) + 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])))
        prev = cur
    return prev[len(b)]


def _echo(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 120 else f"{text[:120]}... ({len(text)} characters of JSON)"


def _schema_problems(config: Any) -> list[tuple[list[Any], str]]:
    validator = jsonschema.Draft202012Validator(schema())
    problems: list[tuple[list[Any], str]] = []
    for error in validator.iter_errors(config):
        path = list(error.absolute_path)
        sub = error.schema if isinstance(error.schema, dict) else {}
        kind = error.validator
        if kind == "required":
            for key in error.validator_value:
                if isinstance(error.instance, dict) and key not in error.instance:
                    described = _described(sub.get("properties", {}).get(key, {}))
                    problems.append((path + [key], f"missing; {described or 'add it'}"))
        elif kind == "additionalProperties":
            known = sorted(sub.get("properties", {}))
            for key in error.instance:
                if key not in known:
                    near = closest(key, known)
                    hint = f'did you mean "{near}"?' if near else f"the fields are {', '.join(known)}"
                    problems.append((path + [key], f"unknown field; {hint}"))
        elif "propertyNames" in error.schema_path:  # a key of the object failed (the error's instance is the key)
            problems.append((path + [error.instance], f"{_described(sub)} (got {_echo(error.instance)})"))
        elif kind == "enum":
            near = closest(error.instance, [str(v) for v in error.validator_value]) if isinstance(error.instance, str) else None
            hint = f'; did you mean "{near}"?' if near else ""
            problems.append((path, f"{_described(sub) or 'must be one of ' + ', '.join(map(str, error.validator_value))} (got {_echo(error.instance)}){hint}"))
        else:
            problems.append((path, f"{_described(sub) or error.message} (got {_echo(error.instance)})"))
    return problems


def _described(sub: dict[str, Any]) -> str:
    if "description" in sub:
        return sub["description"]
    ref = sub.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return schema()["$defs"][ref.removeprefix("#/$defs/")].get("description", "")
    return ""


def problems(config: Any) -> list[tuple[str, str]]:
    """Every problem with `config` (a list of graders) as (path, message), schema problems first; [] when valid."""
    found = _schema_problems(config)
    if not found:
        found = _rule_problems(config)
    seen: set[tuple[str, str]] = set()
    rendered = []
    for path, message in found:
        item = (render_path(path), message)
        if item not in seen:
            seen.add(item)
            rendered.append(item)
    return rendered


def _rule_problems(config: list[dict[str, Any]]) -> list[tuple[list[Any], str]]:
    found: list[tuple[list[Any], str]] = []
    names: dict[str, int] = {}
    for index, grader in enumerate(config):
        if grader["name"] in names:
            found.append(([index, "name"], f'"{grader["name"]}" is also the name of [{names[grader["name"]]}]; give each grader its own name (results and thresholds are keyed by it)'))
        names.setdefault(grader["name"], index)
        found.extend(_grader_problems(grader, [index]))
    return found


def _grader_problems(grader: dict[str, Any], at: list[Any]) -> list[tuple[list[Any], str]]:
    found: list[tuple[list[Any], str]] = []
    kind = grader["type"]
    for key in ("input", "reference"):
        if isinstance(grader.get(key), str):
            found.extend((at + [key], message) for message in template_problems(grader[key]))
    if kind in ("score_model", "label_model"):
        for i, message in enumerate(grader["input"]):
            found.extend((at + ["input", i, "content"], problem) for problem in template_problems(message["content"]))
    if kind == "text_similarity":
        metric = grader["evaluation_metric"]
        refused = schema()[EXTENSION]["refusedMetrics"]
        if metric in refused:
            found.append((at + ["evaluation_metric"], f'"{metric}" is not available: {refused[metric]}'))
        # cosine's encoder is the run's embeddingModel, the job's embedding_model channel (embedding_folder)
        if metric != "cosine" and "embedding_model" in grader:
            found.append((at + ["embedding_model"], f'is used by the cosine metric only; remove it (evaluation_metric is "{metric}")'))
    if kind == "label_model":
        for i, label in enumerate(grader["passing_labels"]):
            if label not in grader["labels"]:
                found.append((at + ["passing_labels", i], f'"{label}" is not one of labels ({", ".join(grader["labels"])}); passing_labels must be a subset of labels'))
    if kind == "score_model" and "range" in grader and not grader["range"][0] < grader["range"][1]:
        found.append((at + ["range"], f"must be [low, high] with low below high (got {_echo(grader['range'])})"))
    if kind == "regex":
        try:
            re.compile(grader["pattern"], _regex_flags(grader.get("flags", "")))
        except re.error as e:
            found.append((at + ["pattern"], f"is not a valid regular expression: {e}; fix the pattern (Python re syntax)"))
    if kind == "python":
        problem = python_source_problem(grader["source"])
        if problem:
            found.append((at + ["source"], problem))
    if kind == "json_schema":
        try:
            jsonschema.validators.validator_for(grader["schema"], default=jsonschema.Draft202012Validator).check_schema(grader["schema"])
        except jsonschema.SchemaError as e:
            found.append((at + ["schema"], f"is not a valid JSON Schema: {e.message}; fix it"))
    if kind == "multi":
        for name, sub in grader["graders"].items():
            found.extend(_grader_problems(sub, at + ["graders", name]))
        try:
            Formula(grader["calculate_output"], list(grader["graders"]))
        except ValueError as e:
            found.append((at + ["calculate_output"], str(e)))
    return found


def python_source_problem(source: str) -> str | None:
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return f"is not valid Python (line {e.lineno}: {e.msg}); fix the source"
    if not any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "grade" for node in tree.body):
        return "defines no top-level function grade(sample, item) -> float; add one"
    return None


def validate(config: Any, where: str = "graders") -> list[dict[str, Any]]:
    """The graders, validated; raises GradersError naming each problem."""
    found = problems(config)
    if found:
        raise GradersError(found, where)
    return config


# ---------------------------------------------------------------------------------------------------------------------
# Templates: {{ sample.output_text }}, {{ sample.output_json.<field> }}, {{ item.<field> }} (strict: nothing else)
# ---------------------------------------------------------------------------------------------------------------------

_TAG = re.compile(r"\{\{(.*?)\}\}", re.S)
_REFERENCE = re.compile(r"(sample|item)((?:\.[A-Za-z0-9_-]+|\[\d+\])+)")
_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")
_TEMPLATE_FORMS = "{{ sample.output_text }}, {{ sample.output_json.<field> }} or {{ item.<field> }}"


def _parse_reference(text: str) -> tuple[str, list[str | int]] | str:
    """(namespace, steps), or the problem with the reference."""
    match = _REFERENCE.fullmatch(text.strip())
    if not match:
        return f'"{{{{{text}}}}}" is not a template this resolver knows; use {_TEMPLATE_FORMS}'
    steps: list[str | int] = [int(i) if i else name for name, i in _STEP.findall(match.group(2))]
    namespace = match.group(1)
    if namespace == "sample":
        fields = schema()[EXTENSION]["sampleFields"]
        if not isinstance(steps[0], str) or steps[0] not in fields:
            near = closest(str(steps[0]), fields)
            hint = f'did you mean "sample.{near}"?' if near else f"the sample has {', '.join('sample.' + f for f in fields)} (Tuneyard's evaluation generates text, not tool calls or choices)"
            return f'"{text.strip()}" is not a field of the sample; {hint}'
        if steps[0] == "output_text" and len(steps) > 1:
            return f'"{text.strip()}": sample.output_text is a string and has no fields; use sample.output_json.<field> for a field of a JSON answer'
    return namespace, steps


def template_problems(template: str) -> list[str]:
    found = []
    rest = _TAG.sub("", template)
    if "{{" in rest:
        found.append('has a "{{" without its "}}"; close the template or remove the braces')
    for tag in _TAG.findall(template):
        parsed = _parse_reference(tag)
        if isinstance(parsed, str):
            found.append(parsed)
    return found


def render(template: str, sample: dict[str, Any], item: dict[str, Any]) -> str:
    """The template with each reference replaced: strings as they are, other values as JSON. GradeError when the row
    has no such field."""

    def value(match: re.Match[str]) -> str:
        parsed = _parse_reference(match.group(1))
        if isinstance(parsed, str):
            raise GradeError(parsed)
        namespace, steps = parsed
        if namespace == "sample" and steps[0] == "output_json":
            try:
                current: Any = json.loads(sample.get("output_text", ""))
            except json.JSONDecodeError as e:
                raise GradeError(f"{match.group(0)}: the answer is not JSON ({e.msg} at character {e.pos})") from None
            steps = steps[1:]
        else:
            current = sample if namespace == "sample" else item
        for step in steps:
            try:
                current = current[step]
            except (KeyError, IndexError, TypeError):
                raise GradeError(f"{match.group(0)}: the {namespace} has no {render_path([step]).lstrip('.')} there") from None
        return current if isinstance(current, str) else json.dumps(current)

    return _TAG.sub(value, template)


# ---------------------------------------------------------------------------------------------------------------------
# multi: a formula over the graders' names, evaluated from its AST (a whitelist; never eval)
# ---------------------------------------------------------------------------------------------------------------------

_FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}
_OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


class Formula:
    """`0.5 * a + 0.5 * b`: numbers, names, + - * / and ^ or ** (power), parentheses, and the functions of
    x-tuneyard.formulaFunctions. Raises ValueError naming what is not allowed."""

    def __init__(self, text: str, names: list[str]):
        self.text = text
        # one line, ^ as power: white space (new lines included) only separates tokens, as lib/graders.ts reads it
        self.source = " ".join(text.split()).replace("^", "**")
        try:
            self.tree = ast.parse(self.source, mode="eval").body
        except SyntaxError as e:
            raise ValueError(f"is not a formula ({e.msg} at character {e.offset}): use numbers, grader names, + - * / ^, parentheses and {', '.join(_FUNCTIONS)}") from None
        self._check(self.tree, names)

    def _check(self, node: ast.AST, names: list[str]) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            written = ast.get_source_segment(self.source, node) or ""
            if not re.fullmatch(schema()[EXTENSION]["formulaNumber"], written):
                raise ValueError(f'has "{written}", which is not a number formulas take: write decimal numbers such as 2, 0.5 or 1e-3')
            return
        if isinstance(node, ast.Name):
            if node.id not in names:
                near = closest(node.id, names)
                hint = f'did you mean "{near}"? ' if near else ""
                raise ValueError(f'uses "{node.id}", which is not one of its graders; {hint}the graders are {", ".join(names)}')
            return
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            self._check(node.left, names)
            self._check(node.right, names)
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self._check(node.operand, names)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            if node.func.id not in _FUNCTIONS:
                near = closest(node.func.id, list(_FUNCTIONS))
                hint = f'did you mean "{near}"? ' if near else ""
                raise ValueError(f'calls "{node.func.id}", which is not a formula function; {hint}the functions are {", ".join(_FUNCTIONS)}')
            if not node.args:
                raise ValueError(f'calls {node.func.id}() with no arguments; pass at least one')
            for arg in node.args:
                self._check(arg, names)
            return
        raise ValueError(f'has "{ast.unparse(node)}", which a formula may not hold; use numbers, grader names, + - * / ^, parentheses and {", ".join(_FUNCTIONS)}')

    def __call__(self, values: dict[str, float]) -> float:
        return float(self._evaluate(self.tree, values))

    def _evaluate(self, node: ast.AST, values: dict[str, float]) -> float:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.BinOp):
            return _OPERATORS[type(node.op)](self._evaluate(node.left, values), self._evaluate(node.right, values))
        if isinstance(node, ast.UnaryOp):
            operand = self._evaluate(node.operand, values)
            return -operand if isinstance(node.op, ast.USub) else operand
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id](*(self._evaluate(arg, values) for arg in node.args))


# ---------------------------------------------------------------------------------------------------------------------
# Graders
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Grader:
    """One grader. `grade(sample, item)` returns its score for one answer (`sample["output_text"]`) to one eval row
    (`item`, with its `reference` and other fields); GradeError when the row cannot be graded."""

    config: dict[str, Any]
    name: str = field(init=False)
    type: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.config["name"]
        self.type = self.config["type"]

    @property
    def pass_threshold(self) -> float | None:
        """The score a row needs to pass: the configured pass_threshold, 1.0 for the pass/fail graders, None (no
        pass/fail) for python and multi, whose scores have no stated scale."""
        if "pass_threshold" in self.config:
            return float(self.config["pass_threshold"])
        return 1.0 if self.type in ("string_check", "json_schema", "regex", "label_check", "label_model") else None

    def grade(self, sample: dict[str, Any], item: dict[str, Any]) -> float:
        raise NotImplementedError


class StringCheck(Grader):
    def grade(self, sample, item):
        text, reference = render(self.config["input"], sample, item), render(self.config["reference"], sample, item)
        operation = self.config["operation"]
        if operation == "eq":
            return float(text == reference)
        if operation == "ne":
            return float(text != reference)
        if operation == "like":
            return float(reference in text)
        return float(reference.lower() in text.lower())


class TextSimilarity(Grader):
    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.metric = config["evaluation_metric"]

    def grade(self, sample, item):
        text, reference = render(self.config["input"], sample, item), render(self.config["reference"], sample, item)
        return similarity(self.metric, text, reference, self.config.get("embedding_model"))


def similarity(metric: str, text: str, reference: str, embedding_model: str | None = None) -> float:
    """The score from 0 to 1 of `text` against `reference` by `metric` (each library's own figure, scaled to 0-1)."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return fuzz.ratio(text, reference) / 100.0
    if metric == "bleu":
        import sacrebleu

        return sacrebleu.sentence_bleu(text, [reference]).score / 100.0
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

        tokenize = Tokenizer13a()
        return float(sentence_gleu([tokenize(reference).split()], tokenize(text).split()))
    if metric.startswith("rouge_"):
        key = "rougeL" if metric == "rouge_l" else f"rouge{metric.removeprefix('rouge_')}"
        return _rouge(key).score(reference, text)[key].fmeasure
    if metric == "meteor":
        from nltk.translate.meteor_score import meteor_score
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

        tokenize = Tokenizer13a()
        return float(meteor_score([tokenize(reference).split()], tokenize(text).split(), wordnet=wordnet()))
    if metric == "cosine":
        return _Encoder.at(str(embedding_folder(embedding_model))).cosine(text, reference)
    raise GradeError(f'evaluation_metric "{metric}" is not available: {schema()[EXTENSION]["refusedMetrics"].get(metric, "unknown metric")}')


WORDNET_ENV = "TUNEYARD_WORDNET"
WORDNET_DEFAULT = "/usr/share/wordnet"
LEXNAMES = Path(__file__).with_name("wordnet") / "lexnames"


@lru_cache(maxsize=1)
def wordnet():
    """NLTK's WordNet 3.0 reader over the Princeton `dict/` files in $TUNEYARD_WORDNET (default /usr/share/wordnet,
    Debian/Ubuntu's `wordnet-base`, which the trainer image and scripts/python-env.sh install): nothing is downloaded.
    The package leaves out `lexnames`, which the reader opens first; it then comes from tuneyard_trainer/wordnet/
    (WordNet 3.0's lexnames(5WN); the README there says how it was made). The folder joins nltk.data.path, the roots
    NLTK's path checks let its readers open."""
    import os
    import warnings

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    folder = Path(os.environ.get(WORDNET_ENV) or WORDNET_DEFAULT)
    missing = [name for name in ("data.noun", "index.noun", "noun.exc", "verb.exc") if not (folder / name).is_file()]
    if missing:
        raise GradeError(
            f"meteor needs WordNet 3.0's dict files in {folder} ({', '.join(missing)} missing): install Debian/Ubuntu's "
            f"wordnet-base package (the trainer image and scripts/python-env.sh do), or set {WORDNET_ENV} to a folder "
            "holding WordNet 3.0's dict files")
    lexnames = folder / "lexnames" if (folder / "lexnames").is_file() else LEXNAMES

    class Reader(WordNetCorpusReader):
        def open(self, file):
            if file == "lexnames":
                return open(lexnames, encoding=self._ENCODING)
            return super().open(file)

        def map_wn(self, version="wordnet"):
            # NLTK maps the Open Multilingual Wordnet's WordNet 3.0 synsets onto the loaded WordNet by reading NLTK's
            # own `wordnet` corpus (a download); this one is WordNet 3.0, so the map is the identity (None).
            return None if self.get_version() == "3.0" else super().map_wn(version)

    if str(folder) not in nltk.data.path:
        nltk.data.path.append(str(folder))
    with warnings.catch_warnings():
        # "The multilingual functions are not available with this Wordnet version": no Open Multilingual Wordnet,
        # which METEOR (English) does not use.
        warnings.simplefilter("ignore")
        return Reader(str(folder), None)


@lru_cache(maxsize=8)
def _rouge(key: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([key])


EMBEDDING_CHANNEL = "embedding_model"


def embedding_folder(embedding_model: str | None = None) -> Path:
    """The encoder folder of a cosine grader: the evaluation job's `embedding_model` channel (the RunRequest's
    embeddingModel, an S3 folder under base-models/ that PlanRun plans as that channel), or `embedding_model` inside
    it; an absolute `embedding_model` is a folder of the job as it is. Raises GradeError naming what is missing."""
    import os

    channel = Path(os.environ.get("TUNEYARD_ML_ROOT", "/opt/ml")) / "input" / "data" / EMBEDDING_CHANNEL
    if embedding_model and Path(embedding_model).is_absolute():
        return Path(embedding_model)
    if not channel.is_dir() or not any(channel.iterdir()):
        raise GradeError(
            f"cosine needs an encoder model, and the evaluation job has no {EMBEDDING_CHANNEL} channel ({channel}): set the "
            "RunRequest's embeddingModel to the s3:// folder of a Hugging Face encoder staged under base-models/")
    return channel / embedding_model if embedding_model else channel


class _Encoder:
    """A staged Hugging Face encoder: the mean of its last hidden states over the tokens, as sentence-transformers'
    mean pooling does; cosine similarity of two texts' embeddings."""

    _loaded: dict[str, "_Encoder"] = {}

    def __init__(self, folder: str):
        from transformers import AutoModel, AutoTokenizer

        if not Path(folder).is_dir():
            raise GradeError(
                f"embedding_model {folder!r} is not a folder in the evaluation job; name a folder inside the run's "
                f"embeddingModel (the {EMBEDDING_CHANNEL} channel), or leave embedding_model out to use that folder itself")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()

    @classmethod
    def at(cls, folder: str) -> "_Encoder":
        if folder not in cls._loaded:
            cls._loaded[folder] = cls(folder)
        return cls._loaded[folder]

    def cosine(self, a: str, b: str) -> float:
        import torch

        batch = self.tokenizer([a, b], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return float(torch.nn.functional.cosine_similarity(pooled[0:1], pooled[1:2]).item())


class JsonSchemaGrader(Grader):
    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        cls = jsonschema.validators.validator_for(config["schema"], default=jsonschema.Draft202012Validator)
        self.validator = cls(config["schema"])

    def grade(self, sample, item):
        try:
            value = json.loads(render(self.config["input"], sample, item))
        except json.JSONDecodeError:
            return 0.0
        return float(self.validator.is_valid(value))


def _regex_flags(letters: str) -> int:
    flags = 0
    for letter in letters:
        flags |= {"i": re.I, "m": re.M, "s": re.S, "x": re.X}[letter]
    return flags


class Regex(Grader):
    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.pattern = re.compile(config["pattern"], _regex_flags(config.get("flags", "")))

    def grade(self, sample, item):
        return float(self.pattern.search(render(self.config["input"], sample, item)) is not None)


class LabelCheck(Grader):
    """The answer is a label: 1.0 when it equals the reference label (both stripped of surrounding space)."""

    def predicted(self, sample, item) -> tuple[str, str]:
        return render(self.config["input"], sample, item).strip(), render(self.config["reference"], sample, item).strip()

    def grade(self, sample, item):
        predicted, reference = self.predicted(sample, item)
        return float(predicted == reference)


_RUNNER = """
import json, math, sys
job = json.load(sys.stdin)
scope = {"__name__": "tuneyard_grader"}
exec(compile(job["source"], "<grader source>", "exec"), scope)
score = scope["grade"](job["sample"], job["item"])
if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
    raise TypeError(f"grade() must return a finite number, got {score!r}")
sys.stdout.write("\\n" + json.dumps(float(score)))
"""


class PythonGrader(Grader):
    """Runs the user's `grade(sample, item)` in a fresh Python process per row (isolated mode, no site imports from
    the working folder), with a time limit; its crash or timeout is this row's GradeError, never the job's."""

    def grade(self, sample, item):
        timeout = float(self.config.get("timeout_seconds", DEFAULT_PYTHON_TIMEOUT))
        job = json.dumps({"source": self.config["source"], "sample": sample, "item": item})
        try:
            done = subprocess.run([sys.executable, "-I", "-c", _RUNNER], input=job, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GradeError(f"grade() took longer than {timeout:g} s (timeout_seconds); make it faster or raise the limit") from None
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
            raise GradeError(f"grade() failed: {last}")
        return float(done.stdout.rsplit("\n", 1)[-1])


class Multi(Grader):
    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.graders = {key: build(sub) for key, sub in config["graders"].items()}
        self.formula = Formula(config["calculate_output"], list(self.graders))

    def grade(self, sample, item):
        values = {key: grader.grade(sample, item) for key, grader in self.graders.items()}
        try:
            return self.formula(values)
        except (ArithmeticError, ValueError) as e:
            raise GradeError(f"calculate_output {self.config['calculate_output']!r} failed on {values}: {e}") from None


class ModelGrader(Grader):
    def grade(self, sample, item):
        raise GraderUnavailable(
            f"{self.type} (an LLM judge) is validated but not run yet: running a judge inside the account is later work (issue 15, item 3)"
        )


_TYPES: dict[str, type[Grader]] = {
    "string_check": StringCheck,
    "text_similarity": TextSimilarity,
    "json_schema": JsonSchemaGrader,
    "regex": Regex,
    "label_check": LabelCheck,
    "python": PythonGrader,
    "multi": Multi,
    "score_model": ModelGrader,
    "label_model": ModelGrader,
}


def build(config: dict[str, Any]) -> Grader:
    return _TYPES[config["type"]](config)


def load(config_list: Any, where: str = "graders") -> list[Grader]:
    """The graders of a validated config list (GradersError, naming each problem, when it is invalid)."""
    return [build(config) for config in validate(config_list, where)]


def from_hyperparameters(hyperparameters: dict[str, Any]) -> list[Grader]:
    """The evaluation job's graders from its `graders` hyperparameter (compact JSON), validated again here; [] when the
    job has none. PlanRun now delivers them as the `graders` channel (evaluate.run_graders); this reads jobs planned
    before."""
    raw = hyperparameters.get("graders")
    if raw is None:
        return []
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(value, str):  # a JSON string of the JSON, as some launchers quote every hyperparameter value
            value = json.loads(value)
    except json.JSONDecodeError as e:
        raise GradersError([("", f"is not JSON ({e.msg} at character {e.pos}); pass the graders list as JSON")], "hyperparameter graders") from None
    return load(value, where="hyperparameter graders")


# ---------------------------------------------------------------------------------------------------------------------
# Grading many rows, and label metrics
# ---------------------------------------------------------------------------------------------------------------------


def label_metrics(predicted: list[str], references: list[str], labels: list[str]) -> dict[str, Any]:
    """Precision, recall and F1 per label and their macro mean (over `labels`). A prediction outside `labels` counts
    against precision of no label and against recall of its reference; a label never predicted has precision 0."""
    per_label: dict[str, dict[str, float]] = {}
    for label in labels:
        tp = sum(p == label and r == label for p, r in zip(predicted, references))
        fp = sum(p == label and r != label for p, r in zip(predicted, references))
        fn = sum(p != label and r == label for p, r in zip(predicted, references))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    macro = {key: sum(m[key] for m in per_label.values()) / len(labels) for key in ("precision", "recall", "f1")}
    return {"per_label": per_label, "macro": macro, "outside_labels": sum(p not in labels for p in predicted)}


def grade_rows(graders: list[Grader], rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each grader over (sample, item) rows: {name: {"mean", "scores", "passed", "errors"}}, plus "labels" (label
    metrics) for label_check graders and "unavailable" (the reason) for graders not run yet.

    A row that cannot be graded has score None and an entry in "errors" ({"row", "error"}); it counts as 0 in the mean
    and as not passed, so a grader that fails cannot raise a gate's figure. "passed" is the fraction of rows scoring at
    least the grader's pass threshold (None for graders without one: python, multi, score_model without
    pass_threshold)."""
    results: dict[str, dict[str, Any]] = {}
    for grader in graders:
        scores: list[float | None] = []
        errors: list[dict[str, Any]] = []
        unavailable = None
        for index, (sample, item) in enumerate(rows):
            try:
                scores.append(float(grader.grade(sample, item)))
            except GraderUnavailable as e:
                unavailable = str(e)
                break
            except GradeError as e:
                scores.append(None)
                errors.append({"row": index, "error": str(e)})
        if unavailable:
            results[grader.name] = {"mean": None, "scores": [], "passed": None, "errors": [], "unavailable": unavailable}
            continue
        counted = [s if s is not None else 0.0 for s in scores]
        threshold = grader.pass_threshold
        result: dict[str, Any] = {
            "mean": sum(counted) / len(counted) if counted else None,
            "scores": scores,
            "passed": (sum(s is not None and s >= threshold for s in scores) / len(scores)) if threshold is not None and scores else None,
            "errors": errors,
        }
        if isinstance(grader, LabelCheck):
            pairs = []  # rows whose templates cannot be resolved are left out (they are in "errors")
            for sample, item in rows:
                try:
                    pairs.append(grader.predicted(sample, item))
                except GradeError:
                    continue
            result["labels"] = label_metrics([p for p, _ in pairs], [r for _, r in pairs], grader.config["labels"])
        results[grader.name] = result
    return results

"""Loading the LLM's tokenizer and deriving the token ids SeViLA reads.

The authors hard-code Flan-T5 ids (yes 4273, no 150, A-E 71/272/205/309/262).  We derive
them from the tokenizer instead -- the id the target text puts at the decoder step that
is read -- so other tokenizers and backbones work, and Flan-T5 gives the same numbers.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from lavis_sevila.data.prompts import LETTERS, NO, YES, answer_target
from lavis_sevila.models.pretrained import cache_dir  # noqa: F401  (one cache root; re-exported)

BUILTIN_TINY = "builtin:tiny"
_VOCAB_FILE = Path(__file__).with_name("tiny_vocab.txt")


def load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    """A T5 tokenizer from a hub name, a local directory, or ``builtin:tiny``."""
    from transformers import T5TokenizerFast

    if source == BUILTIN_TINY:
        source = str(build_tiny_tokenizer())
    return T5TokenizerFast.from_pretrained(source)


def tiny_vocabulary() -> list[str]:
    words: list[str] = []
    for line in _VOCAB_FILE.read_text().splitlines():
        if not line.startswith("#"):
            words.extend(line.split())
    return list(dict.fromkeys(words))  # keep order, drop repeats


def _cached_build(kind: str, directory, write) -> Path:
    """Build a tokenizer directory once per vocabulary (atomic: a temporary dir, then a rename)."""
    words = tiny_vocabulary()
    digest = hashlib.sha256("\n".join(words).encode()).hexdigest()[:16]
    target = Path(directory) if directory is not None else cache_dir() / "tokenizers" / f"{kind}-{digest}"
    if (target / "tokenizer_config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        write(Path(tmp), words)
        staged = Path(tmp + ".done")
        os.replace(tmp, staged)
        try:
            os.replace(staged, target)
        except OSError:  # another process built it first
            if not (target / "tokenizer_config.json").exists():
                raise
    return target


def _sentencepiece_model(words: list[str], specials: list[tuple[str, int]], ids: dict[str, int]) -> bytes:
    """A word-level unigram sentencepiece model: chosen pieces and scores, no training."""
    from sentencepiece import sentencepiece_model_pb2 as sp_model

    proto = sp_model.ModelProto()

    def add(piece: str, score: float, kind: int) -> None:
        entry = proto.pieces.add()
        entry.piece, entry.score, entry.type = piece, score, kind

    normal = 1
    for piece, kind in specials:
        add(piece, 0.0, kind)
    for word in words:
        add("\u2581" + word, -1.0, normal)
    add("\u2581", -4.0, normal)
    for char in (chr(c) for c in range(33, 127)):
        add(char, -8.0, normal)
    proto.trainer_spec.model_type = sp_model.TrainerSpec.UNIGRAM
    proto.trainer_spec.vocab_size = len(proto.pieces)
    for name in ("pad", "eos", "unk", "bos"):
        setattr(proto.trainer_spec, f"{name}_id", ids.get(name, -1))
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = True
    proto.normalizer_spec.escape_whitespaces = True
    return proto.SerializeToString()


_UNKNOWN, _CONTROL = 2, 3


def build_tiny_tokenizer(directory: str | os.PathLike | None = None) -> Path:
    """Write a word-level sentencepiece T5 tokenizer built from ``tiny_vocab.txt``.

    Built, not trained: pieces and scores are chosen, so the result is identical on every
    machine and needs no network.  Known words are one piece each; other text falls back
    to characters.  Cached under ``$LAVIS_SEVILA_CACHE`` keyed by the vocabulary's hash.
    """
    from transformers import T5Tokenizer

    def write(tmp: Path, words: list[str]) -> None:
        model_file = tmp / "spiece.model"
        specials = [("<pad>", _CONTROL), ("</s>", _CONTROL), ("<unk>", _UNKNOWN)]
        model_file.write_bytes(_sentencepiece_model(words, specials, {"pad": 0, "eos": 1, "unk": 2}))
        T5Tokenizer(vocab_file=str(model_file), extra_ids=0, legacy=True).save_pretrained(tmp)

    return _cached_build("tiny", directory, write)


def build_tiny_llama_tokenizer(directory: str | os.PathLike | None = None) -> Path:
    """The same vocabulary as a LLaMA sentencepiece tokenizer (<unk> 0, <s> 1, </s> 2; no pad)."""
    from transformers import LlamaTokenizer

    def write(tmp: Path, words: list[str]) -> None:
        model_file = tmp / "tokenizer.model"
        specials = [("<unk>", _UNKNOWN), ("<s>", _CONTROL), ("</s>", _CONTROL)]
        model_file.write_bytes(_sentencepiece_model(words, specials, {"unk": 0, "bos": 1, "eos": 2}))
        LlamaTokenizer(vocab_file=str(model_file), legacy=False, add_bos_token=True, add_eos_token=False).save_pretrained(tmp)

    return _cached_build("tiny-llama", directory, write)


def build_tiny_opt_tokenizer(directory: str | os.PathLike | None = None) -> Path:
    """The same vocabulary as an OPT-style byte-level tokenizer (GPT-2's "Ġword" pieces).

    OPT's ids: <s> 0, <pad> 1, </s> 2 (also its BOS), <unk> 3.  A unigram model over
    byte-level pre-tokens: known words (with or without their leading space) are one
    piece, anything else falls back to byte characters.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    def write(tmp: Path, words: list[str]) -> None:
        specials = ["<s>", "<pad>", "</s>", "<unk>"]
        vocab = [(piece, 0.0) for piece in specials]
        seen = set(specials)
        for word in words:
            for piece in ("\u0120" + word, word):
                if piece not in seen:
                    seen.add(piece)
                    vocab.append((piece, -1.0))
        for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
            if char not in seen:
                seen.add(char)
                vocab.append((char, -8.0))
        tok = Tokenizer(models.Unigram(vocab, unk_id=3))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.TemplateProcessing(
            single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", 2)]
        )
        PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
        ).save_pretrained(tmp)

    return _cached_build("tiny-opt", directory, write)


@dataclass(frozen=True)
class TokenIds:
    """Vocabulary ids of the tokens whose logits SeViLA reads."""

    yes: int
    no: int
    letters: tuple[int, ...]  # option letters A.. in order, at the answerer's read step
    option_prefix: int  # the token before the letter in "Option X" (decoder step 1)
    #: where the letter sits in the tokenised target "Option X": teacher-forced logits are
    #: target-aligned in every family, so the reverse chain reads this position
    letter_index: int = 1


class TokenizerMismatch(ValueError):
    pass


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def derive_token_ids(tokenizer: PreTrainedTokenizerBase, target_lead: str = "") -> TokenIds:
    """Ids read by the localizer (step 1: "yes"/"no") and answerer (step 2 of "Option X").

    ``target_lead`` is what the family puts before a target (a space for GPT-2-style BPE).
    """
    single = {}
    for word in (YES, NO):
        ids = _ids(tokenizer, target_lead + word)
        if len(ids) != 1:
            raise TokenizerMismatch(f"target {word!r} must be one token at decoder step 1, got ids {ids}")
        single[word] = ids[0]
    letters, prefixes = [], set()
    for index in range(len(LETTERS)):
        ids = _ids(tokenizer, target_lead + answer_target(index))
        if len(ids) != 2:
            raise TokenizerMismatch(
                f"target {answer_target(index)!r} must be two tokens (prefix, letter) so the letter is read at "
                f"decoder step 2, got ids {ids}"
            )
        prefixes.add(ids[0])
        letters.append(ids[1])
    if len(prefixes) != 1 or len(set(letters)) != len(letters):
        raise TokenizerMismatch("'Option A'..'Option E' must share one prefix token and differ in the letter")
    return TokenIds(yes=single[YES], no=single[NO], letters=tuple(letters), option_prefix=prefixes.pop())

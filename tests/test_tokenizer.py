"""Token ids come from the tokenizer; the builtin tiny tokenizer is reproducible and offline."""
import filecmp

import pytest

from lavis_sevila.models.tokenizer import (
    TokenizerMismatch,
    build_tiny_tokenizer,
    derive_token_ids,
    load_tokenizer,
)


def test_tiny_tokenizer_is_identical_on_every_build(tmp_path):
    a = build_tiny_tokenizer(tmp_path / "a")
    b = build_tiny_tokenizer(tmp_path / "b")
    assert filecmp.cmp(a / "spiece.model", b / "spiece.model", shallow=False)


def test_derived_ids_are_the_tokens_the_targets_put_at_the_read_steps(tmp_path):
    tok = load_tokenizer(str(build_tiny_tokenizer(tmp_path / "t")))
    ids = derive_token_ids(tok)
    assert tok("yes").input_ids == [ids.yes, tok.eos_token_id]
    assert tok("no").input_ids == [ids.no, tok.eos_token_id]
    for letter, letter_id in zip("ABCDE", ids.letters):
        assert tok(f"Option {letter}").input_ids == [ids.option_prefix, letter_id, tok.eos_token_id]
    assert len(set(ids.letters)) == 5 and ids.yes != ids.no


def test_a_tokenizer_that_splits_the_targets_is_refused(tmp_path):
    import sentencepiece as spm
    from transformers import T5Tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Options and yessir nothing Opt ion\n" * 50)
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=40, hard_vocab_limit=False,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
    )
    T5Tokenizer(vocab_file=str(tmp_path / "sp.model"), extra_ids=0, legacy=True).save_pretrained(tmp_path / "tok")
    with pytest.raises(TokenizerMismatch):
        derive_token_ids(load_tokenizer(str(tmp_path / "tok")))


@pytest.mark.network
def test_flan_t5_ids_equal_the_authors_hard_coded_ones():
    """Needs the hub (or a cached google/flan-t5-xl tokenizer); skipped offline."""
    try:
        tok = load_tokenizer("google/flan-t5-xl")
    except Exception as error:  # offline: no hub, no cache
        pytest.skip(f"google/flan-t5-xl tokenizer not available: {type(error).__name__}")
    ids = derive_token_ids(tok)
    assert (ids.yes, ids.no) == (4273, 150)
    assert ids.letters == (71, 272, 205, 309, 262)

"""The byte tables and val_bpb, checked against bytes counted from the decoded text."""

from __future__ import annotations

import contextlib
import math

import pytest
import sentencepiece as spm
import torch

from golfq.workers.golf.bpb import build_byte_tables, evaluate, load_validation_tokens, target_bytes
from golfq.workers.golf.prepare import TOKENIZER_SETTINGS
from golfq.workers.golf.shards import write_shard

BOS = 1
CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.",
    "Numbers like 12345 and 2024 are split into single digits by the tokenizer.",
    "A function returns a value. A class defines methods and attributes for its objects.",
    "Python reads the file, parses each line and prints the result to standard output.",
    "Small models train quickly on small corpora, but they do not learn very much.",
] * 40


@pytest.fixture(scope="module")
def processor(tmp_path_factory) -> spm.SentencePieceProcessor:
    prefix = tmp_path_factory.mktemp("tok") / "tiny"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_prefix=str(prefix), vocab_size=320,
                                   minloglevel=2, **TOKENIZER_SETTINGS)
    return spm.SentencePieceProcessor(model_file=f"{prefix}.model")


def decoded_bytes(processor, ids: list[int]) -> int:
    """Independent count: split at control/unknown ids, decode each run, add up UTF-8 lengths."""
    total, run = 0, []
    for token in ids + [BOS]:
        if processor.is_control(token) or processor.is_unknown(token):
            total += len(processor.decode(run).encode("utf-8"))
            run = []
        else:
            run.append(token)
    return total


def table_bytes(processor, ids: list[int]) -> int:
    tables = build_byte_tables(processor, processor.vocab_size())
    sequence = torch.tensor(ids)
    return int(target_bytes(sequence[:-1], sequence[1:], tables).sum())


TEXTS = [
    "The fox jumps over the dog.",
    "  leading spaces and  double  spaces ",
    "digits 0123456789 and punctuation!?",
    "naïve café, Größe, 日本語, emoji 🙂 and Ω",  # multi-byte UTF-8, mostly byte-fallback tokens
    "zqxj vvv kkk",  # rare letters
]


@pytest.mark.parametrize("text", TEXTS)
def test_byte_tables_match_decoded_text(processor, text):
    ids = [BOS] + processor.encode(text)
    assert table_bytes(processor, ids) == decoded_bytes(processor, ids) > 0


def test_multi_byte_text_uses_byte_fallback(processor):
    text = "日本語 🙂"
    ids = processor.encode(text)
    assert any(processor.is_byte(i) for i in ids)
    assert table_bytes(processor, [BOS] + ids) == len(processor.decode(ids).encode("utf-8")) == len(text.encode())


def test_several_documents_no_space_counted_after_bos(processor):
    ids: list[int] = []
    for text in TEXTS:
        ids += [BOS] + processor.encode(text)
    assert table_bytes(processor, ids) == decoded_bytes(processor, ids)
    word = processor.piece_to_id("\u2581the")
    assert processor.id_to_piece(word) == "\u2581the"
    # "▁the" right after BOS counts 3 bytes; after a normal token 4 (its space).
    assert table_bytes(processor, [BOS, word]) == 3
    other = processor.encode("fox")[-1]
    assert table_bytes(processor, [BOS, other, word]) - table_bytes(processor, [BOS, other]) == 4


def test_control_and_unknown_tokens_count_zero_and_are_boundaries(processor):
    tables = build_byte_tables(processor, processor.vocab_size() + 8)
    for special in (0, 1, 2, 3):
        assert tables.base_bytes[special] == 0 and tables.is_boundary[special]
    assert tables.is_boundary[processor.vocab_size() :].all()  # padding ids past the tokenizer
    word = processor.piece_to_id("\u2581the")
    ids = [BOS] + processor.encode("dog") + [2, word] + processor.encode("end") + [3] + processor.encode(" the")
    assert table_bytes(processor, ids) == decoded_bytes(processor, ids)


def test_byte_pieces_count_one_byte(processor):
    tables = build_byte_tables(processor, processor.vocab_size())
    byte_ids = [i for i in range(processor.vocab_size()) if processor.is_byte(i)]
    assert len(byte_ids) == 256
    assert all(tables.base_bytes[i] == 1 and not tables.has_leading_space[i] for i in byte_ids)


class UniformModel(torch.nn.Module):
    """Predicts every token with probability 1/vocab: loss is exactly ln(vocab)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, inputs, targets):
        logits = torch.zeros(*targets.shape, self.vocab)
        return torch.nn.functional.cross_entropy(logits.view(-1, self.vocab), targets.reshape(-1))


def test_evaluate_bits_per_byte_equals_formula(processor, tmp_path):
    ids: list[int] = []
    for text in CORPUS[:30]:
        ids += [BOS] + processor.encode(text)
    write_shard(tmp_path / "fineweb_val_000000.bin", ids[:300])
    write_shard(tmp_path / "fineweb_val_000001.bin", ids[300:])
    seq_len = 32
    tokens = load_validation_tokens(str(tmp_path), seq_len)
    assert (tokens.numel() - 1) % seq_len == 0 and tokens.numel() == ((len(ids) - 1) // seq_len) * seq_len + 1
    assert tokens.tolist() == ids[: tokens.numel()]
    tables = build_byte_tables(processor, processor.vocab_size())
    vocab = processor.vocab_size()
    loss, bpb = evaluate(UniformModel(vocab), tokens, tables, seq_len, 3, torch.device("cpu"), contextlib.nullcontext)
    count_bytes = table_bytes(processor, tokens.tolist())
    assert loss == pytest.approx(math.log(vocab), rel=1e-6)
    assert bpb == pytest.approx(math.log2(vocab) * (tokens.numel() - 1) / count_bytes, rel=1e-6)
    capped = load_validation_tokens(str(tmp_path), seq_len, max_tokens=100)
    assert capped.numel() == 3 * seq_len + 1

"""The CLIP BPE tokenizer: byte alphabet, pre-tokenization, BPE rank order, SD's padding,
round trips, training, save/load and bad input. No download: vocabularies are built here."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.sd.tokenizer import MAX_MERGES, CLIPTokenizer, build_vocab, bytes_to_unicode

CORPUS = [
    "a photo of an astronaut riding a horse on mars",
    "a painting of a squirrel eating a burger",
    "a photograph of a cat, a photograph of a dog",
    "an oil painting of the mountains at sunset, trending on artstation",
]


@pytest.fixture(scope="module")
def tok():
    return CLIPTokenizer.train(CORPUS, num_merges=120)


def tiny(merges, **kwargs):
    """A tokenizer with CLIP's vocabulary layout for hand-written merges."""
    return CLIPTokenizer(build_vocab(merges), merges, **kwargs)


# ----------------------------------------------------------------------------- byte alphabet, vocab


def test_bytes_to_unicode_is_a_printable_bijection():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert not any(c.isspace() for c in table.values())
    assert all(table[b] == chr(b) for b in range(ord("!"), ord("~") + 1))
    assert table[ord(" ")] == "\u0120"  # "Ġ", GPT-2's visible space


def test_vocab_layout_matches_clip():
    merges = [("a", "b"), ("ab", "c</w>")]
    vocab = build_vocab(merges)
    assert len(vocab) == 256 + 256 + 2 + 2
    assert vocab["!"] == 0 and vocab["!</w>"] == 256
    assert vocab["ab"] == 512 and vocab["abc</w>"] == 513
    t = tiny(merges)
    # CLIP: bos = 49406, eos = pad = 49407 = last ids, with 48894 merges.
    assert (t.bos_token_id, t.eos_token_id, t.pad_token_id) == (514, 515, 515)
    assert t.vocab_size == 516


# ----------------------------------------------------------------------------- pre-tokenization


@pytest.mark.parametrize("text, words", [
    ("A photo of an Astronaut", ["a", "photo", "of", "an", "astronaut"]),
    ("it's  I'LL we'd", ["it", "'s", "i", "'ll", "we", "'d"]),
    ("2023 was 3rd!!", ["2", "0", "2", "3", "was", "3", "rd", "!!"]),
    ("x_y, (hi)...", ["x", "_", "y", ",", "(", "hi", ")..."]),
    ("café NAÏVE", ["café", "naïve"]),
    ("e\u0301", ["é"]),                      # NFC composes e + combining acute
    ("x²y ½", ["x", "²", "y", "½"]),         # Nl/No numerals: single numbers, as \p{N}
    ("日本語", ["日", "本", "語"]),          # CJK ideographs are split apart
    ("a\x00b\u200bc\td", ["abc", "d"]),      # NUL and format characters dropped, tab is a space
    ("<|startoftext|>hi<|endoftext|>", ["<|startoftext|>", "hi", "<|endoftext|>"]),
    ("   ", []),
])
def test_pre_tokenize(text, words):
    assert tiny([]).pre_tokenize(text) == words


def test_word_end_marker_and_byte_symbols():
    t = tiny([])
    assert t.tokenize("cat") == ["c", "a", "t</w>"]
    assert t.tokenize("é") == ["Ã", "©</w>"]  # UTF-8 bytes c3 a9 through the byte alphabet
    assert t.tokenize("a b") == ["a</w>", "b</w>"]


# ----------------------------------------------------------------------------- BPE


def test_bpe_applies_merges_in_rank_order():
    # "abc": both (a, b) and (b, c</w>) are ranked; the lower rank wins and blocks the other.
    assert tiny([("a", "b"), ("b", "c</w>")]).tokenize("abc") == ["ab", "c</w>"]
    assert tiny([("b", "c</w>"), ("a", "b")]).tokenize("abc") == ["a", "bc</w>"]
    # Chained merges: (l, o) then (lo, w</w>), while (e, r</w>) never applies to "low".
    merges = [("l", "o"), ("e", "r</w>"), ("lo", "w</w>"), ("lo", "w")]
    t = tiny(merges)
    assert t.tokenize("low") == ["low</w>"]
    assert t.tokenize("lower") == ["low", "er</w>"]
    assert t.tokenize("lolo") == ["lo", "l", "o</w>"]  # (l, o</w>) is not (l, o)
    assert t.encode("low lower") == [t.encoder[s] for s in ["low</w>", "low", "er</w>"]]


def test_bpe_merges_every_occurrence_left_to_right():
    t = tiny([("a", "a")])
    assert t.tokenize("aaaaa") == ["aa", "aa", "a</w>"]


# ----------------------------------------------------------------------------- __call__ layout


def test_padding_layout(tok):
    ids = tok.encode("a photo of a cat")
    batch = tok(["a photo of a cat", ""])
    assert batch.shape == (2, 77) and batch.dtype == np.int64
    expected = [tok.bos_token_id] + ids + [tok.eos_token_id] + [tok.pad_token_id] * (75 - len(ids))
    assert batch[0].tolist() == expected
    assert batch[1].tolist() == [tok.bos_token_id] + [tok.eos_token_id] * 76
    assert tok("a photo of a cat").shape == (1, 77)


def test_truncation_keeps_bos_and_eos():
    t = CLIPTokenizer.train(CORPUS, num_merges=10, max_length=8)
    text = "a photo of an astronaut riding a horse on mars"
    ids = t.encode(text)
    assert len(ids) > 6
    row = t(text)[0].tolist()
    assert row == [t.bos_token_id] + ids[:6] + [t.eos_token_id]


def test_separate_pad_token():
    # SD 2.x pads with "!" instead of <|endoftext|>.
    t = tiny([], max_length=6, pad_token="!")
    assert t(["hi"])[0].tolist() == [t.bos_token_id, t.encoder["h"], t.encoder["i</w>"],
                                      t.eos_token_id, t.encoder["!"], t.encoder["!"]]


def test_case_and_whitespace_do_not_matter(tok):
    np.testing.assert_array_equal(tok("  A  PHOTO\tof\na Cat "), tok("a photo of a cat"))


def test_special_tokens_in_text(tok):
    assert tok.encode("<|startoftext|>a<|endoftext|>") == [
        tok.bos_token_id, tok.encoder["a</w>"], tok.eos_token_id]


# ----------------------------------------------------------------------------- round trips

ROUND_TRIP_CHARS = st.one_of(
    st.sampled_from([chr(c) for c in range(32, 127)] + list(" \t\néüßñøåжΩλ😀")),
    st.characters(codec="utf-8"),
)
SIMPLE_CHARS = st.sampled_from([chr(c) for c in range(32, 127)] + list(" \t\néüßñøåжΩλ😀"))


@given(text=st.text(ROUND_TRIP_CHARS, max_size=40))
def test_decode_inverts_encode(tok, text):
    """decode(encode(t)) is the normalized text: the pre-tokens joined by spaces."""
    assert tok.decode(tok.encode(text)) == " ".join(tok.pre_tokenize(text))
    row = tok(text)[0]
    if len(tok.encode(text)) <= 75:
        assert tok.decode(row) == " ".join(tok.pre_tokenize(text))


@given(text=st.text(SIMPLE_CHARS, max_size=60))
def test_no_character_is_lost(tok, text):
    """Independently of the tokenizer's own normalization: only whitespace and case change."""
    assert "".join(tok.decode(tok.encode(text)).split()) == "".join(text.lower().split())


def test_decode_drops_special_tokens_and_checks_ids(tok):
    assert tok.decode([tok.bos_token_id, tok.encoder["a</w>"], tok.eos_token_id, tok.pad_token_id]) == "a"
    with pytest.raises(ValueError, match="ids: 99999"):
        tok.decode([99999])


# ----------------------------------------------------------------------------- training


def test_train_is_deterministic_and_greedy():
    t = CLIPTokenizer.train(["ab ab ab", "abc"], num_merges=5)
    # (a, b</w>) occurs 3 times; then (a, b) and (b, c</w>) tie at 1 -> smaller pair first.
    assert t.merges == [("a", "b</w>"), ("a", "b"), ("ab", "c</w>")]  # stops when no pair is left
    assert t.tokenize("ab abc") == ["ab</w>", "abc</w>"]
    assert CLIPTokenizer.train(CORPUS, 50).merges == CLIPTokenizer.train(CORPUS, 50).merges


def test_trained_tokenizer_compresses_its_corpus(tok):
    for text in CORPUS:
        assert len(tok.encode(text)) < len(tok.pre_tokenize(text)) * 2


# ----------------------------------------------------------------------------- save / load


def test_save_load_identity(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "merges.txt").read_text(encoding="utf-8").startswith("#version:")
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    assert loaded.encoder == tok.encoder
    assert loaded.merges == tok.merges
    assert loaded.max_length == tok.max_length
    assert (loaded.bos_token, loaded.eos_token, loaded.pad_token) == (tok.bos_token, tok.eos_token, tok.pad_token)
    text = "an astronaut, riding a horse in 2023 — café 😀"
    np.testing.assert_array_equal(loaded([text, "x"]), tok([text, "x"]))


def test_from_pretrained_reads_hf_config_files(tmp_path):
    merges = [("h", "i</w>")]
    vocab = build_vocab(merges)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\nh i</w>\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 5, "pad_token": "<|endoftext|>"}), encoding="utf-8")
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": {"content": "<|startoftext|>", "lstrip": False},
        "pad_token": {"content": "!", "normalized": False},
    }), encoding="utf-8")
    t = CLIPTokenizer.from_pretrained(tmp_path)
    assert t.max_length == 5 and t.pad_token == "!"
    assert t("hi")[0].tolist() == [t.bos_token_id, vocab["hi</w>"], t.eos_token_id, vocab["!"], vocab["!"]]
    assert CLIPTokenizer.from_pretrained(tmp_path, max_length=7).max_length == 7


def test_from_pretrained_keeps_clips_merge_count(tmp_path):
    merges = [(f"a{i}", "b") for i in range(MAX_MERGES + 5)]
    (tmp_path / "vocab.json").write_text(json.dumps(build_vocab([])), encoding="utf-8")
    (tmp_path / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    t = CLIPTokenizer.from_pretrained(tmp_path)
    assert len(t.merges) == MAX_MERGES == 48894
    assert t.merges[0] == ("a0", "b") and t.merges[-1] == merges[MAX_MERGES - 1]


@pytest.mark.parametrize("merge_format", ["pairs", "strings"])
def test_from_pretrained_reads_tokenizer_json_alone(tok, tmp_path, merge_format):
    """transformers 5 saves tokenizer.json only: its BPE model's vocab and merges ([a, b] pairs
    in tokenizers >= 0.20, "a b" strings before) are the same tokenizer."""
    merges = [list(m) if merge_format == "pairs" else " ".join(m) for m in tok.merges]
    (tmp_path / "tokenizer.json").write_text(json.dumps(
        {"version": "1.0", "model": {"type": "BPE", "vocab": tok.encoder, "merges": merges, "end_of_word_suffix": "</w>"}}),
        encoding="utf-8")
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    assert loaded.encoder == tok.encoder and loaded.merges == tok.merges
    text = "an astronaut, riding a horse in 2023"
    np.testing.assert_array_equal(loaded([text]), tok([text]))


# ----------------------------------------------------------------------------- bad input


def test_tokenizer_json_that_is_not_bpe(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {"a": 0}}}))
    with pytest.raises(ValueError, match=r"tokenizer.json: expected a BPE tokenizer .* got 'WordPiece'"):
        CLIPTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}}))
    with pytest.raises(ValueError, match=r"tokenizer.json: merge 0 is not a pair of symbols"):
        CLIPTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="neither vocab.json and merges.txt nor tokenizer.json"):
        CLIPTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("missing", ["vocab.json", "merges.txt"])
def test_missing_files(tok, tmp_path, missing):
    tok.save_pretrained(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        CLIPTokenizer.from_pretrained(tmp_path)


def test_missing_special_token():
    vocab = build_vocab([], special_tokens=("<|startoftext|>",))
    with pytest.raises(ValueError, match=r"eos_token: '<\|endoftext\|>'"):
        CLIPTokenizer(vocab, [])
    with pytest.raises(ValueError, match="pad_token: '<pad>'"):
        tiny([], pad_token="<pad>")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="max_length"):
        tiny([], max_length=1)
    with pytest.raises(ValueError, match="merges: entry 0"):
        tiny([("a", "b", "c")])
    with pytest.raises(TypeError, match="text"):
        tiny([]).encode(3)
    (tmp_path / "vocab.json").write_text(json.dumps(build_vocab([])), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b c\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        CLIPTokenizer.from_pretrained(tmp_path)

"""CLIP's byte-level BPE tokenizer, as Stable Diffusion 1.x feeds its text encoder.

This is transformers' ``CLIPTokenizer`` on its no-ftfy path, in plain Python (no ``regex``, no
``tokenizers``), so the SD network needs no download beyond ``vocab.json`` and ``merges.txt``.

Text -> ids, in order:

1. Special tokens (``<|startoftext|>``, ``<|endoftext|>``, and the pad token) are split out first
   and map to their own ids, as transformers' added-token trie does.
2. Basic cleaning of every other piece (transformers' ``BasicTokenizer(strip_accents=False,
   do_split_on_punc=False)``, used when ftfy is not installed): drop NUL, U+FFFD and control
   characters, turn whitespace into spaces, put spaces around CJK ideographs, NFC-normalize,
   split on whitespace and lower-case each word.
3. Pre-tokenization with CLIP's pattern
   ``'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+``: contractions, runs of
   letters, single numerals, runs of other non-space characters. Python's ``re`` has no
   ``\\p{..}`` classes; we use letters = ``[^\\W\\d_]``, digits = ``\\d``, other =
   ``(?:[^\\s\\w]|_)+``. ``\\d`` is exactly Nd, but ``[^\\W\\d_]`` holds the letters (L*) *and*
   the other numerals (Nl, No: "²", "½", "Ⅻ"), which ``\\p{L}`` does not; so each letter run is
   split again, the Nl/No characters becoming single-character numbers as in CLIP. On cleaned
   text (step 2 leaves only " " as whitespace) this reproduces CLIP's classes; what remains
   approximate is case-insensitive matching of the contractions (``re`` and ``regex`` fold a
   few exotic characters such as "ſ" differently), which lower-casing makes almost moot.
4. Each word's UTF-8 bytes become printable characters (``bytes_to_unicode``: the 188 printable
   Latin-1 bytes map to themselves, the other 68 to U+0100..), and "</w>" is glued to the last
   one: "cat" -> ("c", "a", "t</w>").
5. BPE: repeatedly merge the adjacent pair with the lowest rank in ``merges`` (rank = line
   number), every occurrence at once, until no ranked pair is left.
6. Each resulting symbol is looked up in ``vocab`` (unknown symbols map to the unk token,
   ``<|endoftext|>``, as in transformers; with a CLIP-style vocabulary none are unknown).

A batch for the text encoder (``__call__``) is SD's ``padding="max_length", truncation=True``:
``[bos] + ids[:max_length - 2] + [eos] + [pad] * rest``, shape (B, max_length), int64.

``decode`` inverts steps 4-6: ids -> symbols -> bytes -> UTF-8, "</w>" -> " ", special tokens
dropped. So ``decode(encode(t)) == " ".join(pre_tokenize(t))``: the cleaned, lower-cased words.

CLIP's vocabulary layout (``build_vocab``): the 256 byte symbols, the same 256 with "</w>", one
entry per merge (the concatenated pair), then ``<|startoftext|>`` and ``<|endoftext|>``:
256 + 256 + 48894 + 2 = 49408 ids for SD 1.x.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["CLIPTokenizer", "bytes_to_unicode", "build_vocab"]

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
#: CLIP reads at most this many merges: lines[1 : 49152 - 256 - 2 + 1] of merges.txt.
MAX_MERGES = 49152 - 256 - 2
MERGES_HEADER = "#version: 0.2"

# Step 3. letters = [^\W\d_]: word characters that are neither digits nor "_";
# other = runs of non-space, non-word characters, "_" included.
_WORD_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d|(?P<letters>[^\W\d_]+)|\d|(?:[^\s\w]|_)+"
_NUMERALS = ("Nl", "No")  # in [^\W\d_] (they are \w, not \d) but in \p{N}, not \p{L}


@lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable characters.

    Printable Latin-1 bytes ("!".."~", "¡".."¬", "®".."ÿ") map to themselves; the remaining 68
    (space, controls, ...) map to chr(256 + n) in byte order, so no symbol is whitespace."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def build_vocab(merges, special_tokens=(BOS, EOS)) -> dict[str, int]:
    """CLIP's vocabulary for ``merges``: bytes, bytes + "</w>", one id per merge, then specials."""
    symbols = list(bytes_to_unicode().values())
    symbols += [s + END_OF_WORD for s in symbols]
    symbols += ["".join(pair) for pair in merges]
    symbols += list(special_tokens)
    vocab: dict[str, int] = {}
    for symbol in symbols:
        vocab.setdefault(symbol, len(vocab))
    return vocab


# ----------------------------------------------------------------------------- text cleaning


def _is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F
    )


def basic_clean(text: str) -> str:
    """Step 2: transformers' BasicTokenizer without accent stripping or punctuation splitting."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_whitespace(ch):
            out.append(" ")
        elif _is_cjk(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    words = unicodedata.normalize("NFC", "".join(out)).split()
    return " ".join(word.lower() for word in words)


def _split_numerals(run: str) -> list[str]:
    """Split a ``[^\\W\\d_]+`` run into \\p{L}+ runs and single Nl/No numerals."""
    if not any(unicodedata.category(ch) in _NUMERALS for ch in run):
        return [run]
    out, letters = [], ""
    for ch in run:
        if unicodedata.category(ch) in _NUMERALS:
            out += [letters, ch] if letters else [ch]
            letters = ""
        else:
            letters += ch
    return out + [letters] if letters else out


def _get_pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    return set(zip(word[:-1], word[1:]))


def _merge_pair(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Replace every non-overlapping occurrence of ``pair`` in ``word``, left to right."""
    first, second = pair
    out = []
    i = 0
    while i < len(word):
        if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
            out.append(first + second)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _word_symbols(word: str) -> tuple[str, ...]:
    """Step 4: a pre-token's bytes as symbols, "</w>" glued to the last one."""
    encoder = bytes_to_unicode()
    chars = "".join(encoder[b] for b in word.encode("utf-8"))
    return tuple(chars[:-1]) + (chars[-1] + END_OF_WORD,)


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_fast_tokenizer(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) of a ``tokenizers`` file: its "model" is a BPE whose merges are "a b"
    strings (tokenizers < 0.20) or [a, b] pairs; the special tokens are in the vocabulary."""
    model = _read_json(path).get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ValueError(f"{path}: expected a BPE tokenizer (a 'model' entry of type 'BPE' with a vocab), got "
                         f"{model.get('type') if isinstance(model, dict) else model!r}")
    merges = []
    for number, merge in enumerate(model.get("merges", [])[:MAX_MERGES]):
        pair = tuple(merge.split()) if isinstance(merge, str) else tuple(merge)
        if len(pair) != 2:
            raise ValueError(f"{path}: merge {number} is not a pair of symbols: {merge!r}")
        merges.append(pair)
    return model["vocab"], merges


def _token_content(value):
    """A special token in a config file: a string or {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value


class CLIPTokenizer:
    """CLIP's BPE tokenizer (see the module docstring for the algorithm).

    ``vocab`` maps symbols to ids; ``merges`` lists the BPE merges in rank order; ``max_length``
    is the text encoder's context (77 for SD 1.x)."""

    def __init__(
        self,
        vocab: dict[str, int],
        merges,
        max_length: int = 77,
        bos_token: str = BOS,
        eos_token: str = EOS,
        pad_token: str = EOS,
        unk_token: str = EOS,
    ):
        if not isinstance(vocab, dict) or not vocab:
            raise TypeError(f"vocab: expected a non-empty dict of symbol -> id, got {type(vocab).__name__}")
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 2:
            raise ValueError(f"max_length: expected an int >= 2 (room for bos and eos), got {max_length!r}")
        merges = [tuple(m) for m in merges]
        for i, m in enumerate(merges):
            if len(m) != 2 or not all(isinstance(s, str) and s for s in m):
                raise ValueError(f"merges: entry {i} is not a pair of non-empty strings: {m!r}")
        for name, token in (("bos_token", bos_token), ("eos_token", eos_token),
                            ("pad_token", pad_token), ("unk_token", unk_token)):
            if token not in vocab:
                raise ValueError(f"{name}: {token!r} is not in the vocabulary")

        self.encoder = dict(vocab)
        self.decoder = {i: s for s, i in self.encoder.items()}
        if len(self.decoder) != len(self.encoder):
            raise ValueError("vocab: two symbols share an id")
        self.merges = merges
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.max_length = int(max_length)
        self.bos_token, self.eos_token, self.pad_token, self.unk_token = bos_token, eos_token, pad_token, unk_token
        self.special_tokens = list(dict.fromkeys((bos_token, eos_token, pad_token, unk_token)))
        # Longest first, so that a special token that contains another one wins.
        specials = sorted(self.special_tokens, key=len, reverse=True)
        self._special_split = re.compile("(" + "|".join(re.escape(s) for s in specials) + ")")
        self._word_re = re.compile(_WORD_PATTERN, re.IGNORECASE)
        self._byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
        self._cache: dict[str, tuple[str, ...]] = {}

    # ------------------------------------------------------------------------- loading / saving

    @classmethod
    def from_pretrained(cls, folder, max_length: int | None = None) -> "CLIPTokenizer":
        """Load a Hugging Face tokenizer folder (SD's ``tokenizer/``) in either layout users have:
        ``vocab.json`` and ``merges.txt`` (the hub's SD 1.x folders, transformers 4), or only
        ``tokenizer.json`` (transformers 5's ``save_pretrained``: the same vocabulary and merges
        under its "model" entry, a BPE). Then ``tokenizer_config.json`` / ``special_tokens_map.json``
        when present (special tokens; ``model_max_length``, which ``max_length`` overrides)."""
        folder = Path(folder)
        vocab_path, merges_path, fast_path = folder / "vocab.json", folder / "merges.txt", folder / "tokenizer.json"
        if vocab_path.is_file() and merges_path.is_file():
            vocab = _read_json(vocab_path)
            lines = merges_path.read_text(encoding="utf-8").strip().split("\n")[1:MAX_MERGES + 1]
            merges = []
            for number, line in enumerate(lines, start=2):
                pair = tuple(line.split())
                if len(pair) != 2:
                    raise ValueError(f"{merges_path}, line {number}: expected two symbols, got {line!r}")
                merges.append(pair)
        elif fast_path.is_file():
            vocab, merges = _read_fast_tokenizer(fast_path)
        else:
            raise FileNotFoundError(f"CLIPTokenizer.from_pretrained: {folder} has neither vocab.json and merges.txt "
                                    "nor tokenizer.json")

        kwargs = {}
        config_path, special_path = folder / "tokenizer_config.json", folder / "special_tokens_map.json"
        for path in (config_path, special_path):  # the special-tokens map wins, as in transformers
            if path.is_file():
                data = _read_json(path)
                for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
                    token = _token_content(data.get(key))
                    if token is not None:
                        kwargs[key] = token
                if path == config_path and max_length is None and "model_max_length" in data:
                    max_length = int(data["model_max_length"])
        return cls(vocab, merges, max_length=77 if max_length is None else max_length, **kwargs)

    def save_pretrained(self, folder) -> None:
        """Write vocab.json, merges.txt, special_tokens_map.json and tokenizer_config.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "vocab.json", "w", encoding="utf-8") as f:
            json.dump(self.encoder, f, ensure_ascii=False)
        with open(folder / "merges.txt", "w", encoding="utf-8") as f:
            f.write(MERGES_HEADER + "\n")
            f.writelines(f"{a} {b}\n" for a, b in self.merges)
        specials = {
            "bos_token": self.bos_token, "eos_token": self.eos_token,
            "pad_token": self.pad_token, "unk_token": self.unk_token,
        }
        with open(folder / "special_tokens_map.json", "w", encoding="utf-8") as f:
            json.dump(specials, f, ensure_ascii=False, indent=2)
        config = dict(specials, tokenizer_class="CLIPTokenizer", model_max_length=self.max_length,
                      do_lower_case=True, errors="replace")
        with open(folder / "tokenizer_config.json", "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=2)

    @classmethod
    def train(cls, corpus, num_merges: int, max_length: int = 77) -> "CLIPTokenizer":
        """Learn ``num_merges`` BPE merges from ``corpus`` (a list of texts); deterministic.

        Words are pre-tokenized exactly as ``tokenize`` does. Each round merges the most frequent
        adjacent pair (counted over word occurrences); ties go to the smallest pair in string
        order. Training stops early when no pair is left. The vocabulary is CLIP's layout
        (``build_vocab``), so every byte sequence stays encodable."""
        if isinstance(corpus, str) or not all(isinstance(t, str) for t in corpus):
            raise TypeError("corpus: expected a list of strings")
        if isinstance(num_merges, bool) or not isinstance(num_merges, int) or num_merges < 0:
            raise ValueError(f"num_merges: expected an int >= 0, got {num_merges!r}")
        probe = cls(build_vocab([]), [], max_length=max_length)
        words = Counter(_word_symbols(w) for text in corpus for w in probe.pre_tokenize(text)
                        if w not in probe.special_tokens)
        merges = []
        while len(merges) < num_merges:
            pairs = Counter()
            for word, count in words.items():
                for pair in zip(word[:-1], word[1:]):
                    pairs[pair] += count
            if not pairs:
                break
            best = min(pairs, key=lambda p: (-pairs[p], p))
            merges.append(best)
            merged = Counter()
            for word, count in words.items():
                merged[_merge_pair(word, best)] += count
            words = merged
        return cls(build_vocab(merges), merges, max_length=max_length)

    # ------------------------------------------------------------------------- properties

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    @property
    def bos_token_id(self) -> int:
        return self.encoder[self.bos_token]

    @property
    def eos_token_id(self) -> int:
        return self.encoder[self.eos_token]

    @property
    def pad_token_id(self) -> int:
        return self.encoder[self.pad_token]

    @property
    def unk_token_id(self) -> int:
        return self.encoder[self.unk_token]

    # ------------------------------------------------------------------------- text -> ids

    def pre_tokenize(self, text: str) -> list[str]:
        """Steps 1-3: the words BPE works on (special tokens kept whole)."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        words = []
        for piece in self._special_split.split(text):
            if piece in self.special_tokens:
                words.append(piece)
            elif piece:
                for match in self._word_re.finditer(basic_clean(piece)):
                    if match.lastgroup == "letters":
                        words.extend(_split_numerals(match.group()))
                    else:
                        words.append(match.group())
        return words

    def bpe(self, word: str) -> tuple[str, ...]:
        """Step 4-5 for one pre-token: its BPE symbols (a special token stays one symbol)."""
        if word in self.special_tokens:
            return (word,)
        if word in self._cache:
            return self._cache[word]
        symbols = _word_symbols(word)
        while len(symbols) > 1:
            pair = min(_get_pairs(symbols), key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if pair not in self.bpe_ranks:
                break
            symbols = _merge_pair(symbols, pair)
        self._cache[word] = symbols
        return symbols

    def tokenize(self, text: str) -> list[str]:
        """The BPE symbols of ``text`` (no bos/eos added)."""
        return [symbol for word in self.pre_tokenize(text) for symbol in self.bpe(word)]

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``, without bos/eos."""
        unk = self.unk_token_id
        return [self.encoder.get(symbol, unk) for symbol in self.tokenize(text)]

    def __call__(self, texts) -> np.ndarray:
        """(B, max_length) int64 ids: [bos] + ids[:max_length - 2] + [eos] + [pad] * rest."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts: expected a str or a list of str")
        out = np.full((len(texts), self.max_length), self.pad_token_id, dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.bos_token_id] + self.encode(text)[: self.max_length - 2] + [self.eos_token_id]
            out[row, : len(ids)] = ids
        return out

    # ------------------------------------------------------------------------- ids -> text

    def decode(self, ids) -> str:
        """Text of ``ids``: special tokens dropped, bytes decoded as UTF-8, "</w>" -> " "."""
        ids = np.asarray(ids).reshape(-1).tolist()
        specials = {self.encoder[s] for s in self.special_tokens}
        symbols = []
        for i in ids:
            if i in specials:
                continue
            if i not in self.decoder:
                raise ValueError(f"ids: {i} is not an id of this vocabulary (size {self.vocab_size})")
            symbols.append(self.decoder[i])
        text = "".join(symbols)
        bad = sorted({c for c in text if c not in self._byte_decoder})
        if bad:
            raise ValueError(f"ids: symbols contain characters outside the byte alphabet: {bad}")
        data = bytes(self._byte_decoder[c] for c in text)
        return data.decode("utf-8", errors="replace").replace(END_OF_WORD, " ").strip()

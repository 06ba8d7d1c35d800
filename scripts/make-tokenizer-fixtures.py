#!/usr/bin/env python3
"""Writes Tests/FineTuneTests/Fixtures/wordpiece: two small WordPiece vocabularies trained here with the
`tokenizers` package (no downloads), saved as Hugging Face folders, and reference encodings made by
transformers' BertTokenizerFast, which FineTune's WordPieceTokenizer must reproduce exactly.

- `uncased/`, `cased/`: `save_pretrained` folders (tokenizer.json, tokenizer_config.json) plus vocab.txt.
- `reference.json`: the test texts and pairs, and for each tokenizer variant (lower-casing, accent
  stripping, Chinese characters) the ids and offsets of every text; pairs with type ids; truncation
  (longest_first, only_first, only_second, both sides, including the errors); batch padding (longest,
  max_length, multiples, both sides); decoding; added tokens with lstrip/rstrip/single_word/normalized;
  a short max_input_chars_per_word.
- `unicode.json`: how the `tokenizers` build classifies every code point (removed or made a space by
  clean_text, output of strip_accents and of lowercase when they change it, punctuation split by
  BertPreTokenizer, Chinese characters). The Rust crates behind these use their own (older) Unicode
  tables, so the Swift side is checked against them code point by code point.

Run from the repository root with the venv that has tokenizers and transformers:
    /work/venv/bin/python scripts/make-tokenizer-fixtures.py [--retrain]
The trainer breaks ties in Rust hash order, so training twice gives slightly different
vocabularies: the script keeps the committed vocab.txt files and only rewrites the references,
unless --retrain is given.
"""
import json, os, shutil, sys, unicodedata
import tokenizers
import transformers
from tokenizers import Tokenizer, AddedToken, normalizers, pre_tokenizers
from tokenizers.models import WordPiece
from tokenizers.trainers import WordPieceTrainer
from transformers import BertTokenizerFast

OUT = "Tests/FineTuneTests/Fixtures/wordpiece"
VOCAB_SIZE = 500
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# The training corpus: several scripts, accents (precomposed and combining), CJK, emoji, punctuation.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you today? I'm fine, thanks.",
    "Fine-tuning a pretrained model: freeze the encoder, train the head.",
    "We don't tokenize words that we can't see; that's the rule.",
    "Tokenizers split text into words, then words into word pieces.",
    "The tokenizer lowercases text and strips accents when the configuration says so.",
    "Café au lait, crème brûlée, naïve façade, résumé, coöperate, déjà vu.",
    "Zürich, München, Köln and Düsseldorf are in Germany; Straße, Mädchen, Übung.",
    "São Paulo, Ångström, Dvořák, Łódź, Kraków, Smørrebrød, Þingvellir.",
    "Tiếng Việt có nhiều dấu: người, được, những, thương.",
    "Ελληνικά: Καλημέρα κόσμε, ΣΟΦΙΑ σοφία, ὁ λόγος.",
    "Русский язык: привет, мир! Ёлка и ёж.",
    "中文分词很有意思。我们喜欢学习自然语言处理。",
    "日本語の文章：東京は大きい都市です。カタカナとひらがな。",
    "한국어 문장도 있습니다. 안녕하세요!",
    "Emoji time 😀😂👍🏽 🇫🇷 👨‍👩‍👧 ❤️ 🥰 🫠 and more 🚀!",
    "Numbers: 3.14159, 2,718, 1e-9, 42%, $100, €50, £20, ¥1000.",
    "Punctuation «quotes», „Anführung“, “smart”, ‘single’, em—dash, ellipsis… ¿Qué? ¡Sí!",
    "Math: ∑ x² ≤ ∞, α+β=γ, 5 × 3 ÷ 2 ± 1.",
    "URLs like https://example.com/path?q=1&r=2 and mail@example.org appear too.",
    "Supercalifragilisticexpialidocious and pneumonoultramicroscopicsilicovolcanoconiosis are long words.",
    "Donaudampfschifffahrtsgesellschaftskapitän is a German compound.",
    "Combining accents: cafe\u0301, nai\u0308ve, A\u030angstro\u0308m.",
    "मैं हिंदी बोलता हूँ। العربية جميلة. עברית יפה. ภาษาไทยไม่มีช่องว่าง",
    "İstanbul, ıslak, DİKKAT; ǅemal, ﬁne ligatures.",
    "The model learns, the model predicts, the model improves.",
    "Attention masks mark padding; token type ids mark the second segment.",
    "Musical symbols \U0001d165\U0001d16d and Hangul tone marks \u302e\u302f stay.",
]

# Texts to encode: the corpus plus text the vocabulary never saw, controls, whitespace and edge cases.
EXTRA_TEXTS = [
    "",
    "   ",
    "a",
    "HELLO World",
    "hello\tworld\n\nnew   line\r\nend",
    "nbsp\u00a0here, ideographic\u3000space, em\u2003space, line\u2028separator, para\u2029end",
    "control\u0000chars\u0007bell\u001bescape\u007fdel\u0085nel and\u200bzero\u200dwidth\ufeffbom",
    "soft\u00adhyphen, replacement\ufffdchar, private\ue000use, tag\U000e0041char",
    "Xylophones quizzically juxtapose vexing jackdaws.",
    "Неизвестные слова: жизнь, щука, эхо.",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and 𝐛𝐨𝐥𝐝 letters",
    "a" * 100 + " " + "b" * 101,
    "é" * 60 + " " + "İ" * 51,
    "fine" * 25 + "!",
    "unknownwordzzzqqq and hello",
    "[CLS] already here [SEP] and [MASK] token [PAD][UNK]",
    "[cls] lower [Sep] variants",
    "ǅ Ǆ ǆ ß ẞ ΐ ﬃ Ꭰ Ა",
    "e\u0301\u0323 o\u0323\u0302 q\u0307\u0323 \u1e0b\u0323",
    "\u0e01\u0e33 \u0f71\u0f72 \U0001d165\U0001d16d",
    # Combining marks out of canonical order (classes 226 before 216, 224 before 216): NFD reorders them.
    "\U0001d16d\U0001d165 \u302f\U0001d165 a\u302e\U0001d16d\U0001d165",
    "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ１２３",
    "⹒ new punctuation ⹝ and old ⁂ ※",
    "漢字かな交じり文と中文字符𠀋𪚲",
    "...!!!???,,,;;;:::",
    "don't won't l'homme rock'n'roll",
    " leading and trailing spaces ",
    # Inputs of the truncation cases.
    "one two three four five six seven eight nine ten eleven twelve thirteen",
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi",
    "short",
    # A longest_first pair where the first has more tokens (60 vs 44) but, cut off after max_length tokens
    # (the early exit in tokenizers' Rust sources), would look shorter; the Python build counts them all.
    "a " * 60,
    "supercalifragilisticexpialidocious " * 4,
]

PAIRS = [
    (0, 1),
    (2, 6),
    (12, 13),
    (15, 16),
    ("Is this the first sentence?", "Yes, and this is the second one."),
    ("short", "The second sequence of this pair is much longer than the first one, with many words."),
    ("The first sequence of this pair is much longer than the second one, with many words.", "short"),
    ("", "only the second"),
]

# (name, folder, lowercase, strip_accents, tokenize_chinese_chars). Variants sharing a folder share its vocab.
VARIANTS = [
    ("uncased", "uncased", True, None, True),
    ("uncased-strip", "uncased", True, True, True),
    ("uncased-keep-accents", "uncased", True, False, True),
    ("cased", "cased", False, None, True),
    ("cased-strip", "cased", False, True, True),
    ("cased-keep-accents", "cased", False, False, True),
    ("cased-no-chinese", "cased", False, None, False),
]


def train(lowercase, vocab_size):
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=1, limit_alphabet=400)
    tok.train_from_iterator(CORPUS * 3, trainer)
    vocab = tok.get_vocab()
    assert len(vocab) <= vocab_size + 5, len(vocab)
    return vocab


def existing_vocab(name):
    path = f"{OUT}/{name}/vocab.txt"
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}


def bert(vocab, lowercase, strip_accents, chinese):
    return BertTokenizerFast(vocab=dict(vocab), do_lower_case=lowercase, strip_accents=strip_accents,
                             tokenize_chinese_chars=chinese)


def save_folder(name, vocab, lowercase):
    folder = f"{OUT}/{name}"
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    t = bert(vocab, lowercase, None, True)
    t.save_pretrained(folder)
    for extra in ["special_tokens_map.json", "vocab.txt"]:
        path = f"{folder}/{extra}"
        if os.path.exists(path):
            os.remove(path)
    t.backend_tokenizer.model.save(folder)  # vocab.txt, ordered by id
    # The folder loads back the same (tokenizer.json), and from vocab.txt + tokenizer_config.json alone.
    reloaded = BertTokenizerFast.from_pretrained(folder)
    only_vocab = f"/tmp/wordpiece-{name}-vocab-only"
    shutil.rmtree(only_vocab, ignore_errors=True)
    os.makedirs(only_vocab)
    shutil.copy(f"{folder}/vocab.txt", only_vocab)
    shutil.copy(f"{folder}/tokenizer_config.json", only_vocab)
    from_vocab = BertTokenizerFast.from_pretrained(only_vocab)
    for text in all_texts():
        ids = t(text)["input_ids"]
        assert reloaded(text)["input_ids"] == ids, text
        assert from_vocab(text)["input_ids"] == ids, text
    return folder


def all_texts():
    return CORPUS + EXTRA_TEXTS


def text_of(entry, texts):
    return texts[entry] if isinstance(entry, int) else entry


def encode_texts(t, texts):
    """Ids and offsets (flattened: start, end, start, end, ...) of each text."""
    out = []
    for text in texts:
        e = t(text, return_offsets_mapping=True)
        assert all(x == 0 for x in e["token_type_ids"]) and all(x == 1 for x in e["attention_mask"])
        out.append({"ids": e["input_ids"], "offsets": [x for o in e["offset_mapping"] for x in o]})
    return out


def encode_pairs(t, texts):
    out = []
    for a, b in PAIRS:
        e = t(text_of(a, texts), text_of(b, texts), return_offsets_mapping=True)
        assert all(x == 1 for x in e["attention_mask"])
        out.append({"ids": e["input_ids"], "typeIds": e["token_type_ids"],
                    "offsets": [x for o in e["offset_mapping"] for x in o]})
    return out


def truncation_cases(t, texts):
    """Single texts and pairs (indices into texts) cut with each strategy and side to several lengths.

    Each group lists [max_length, ids, length of the first segment] or [max_length, error message]."""
    groups = []
    long_a, long_b, short, early_a, early_b = (texts.index(x) for x in EXTRA_TEXTS[-5:])
    inputs = [(long_a, None), (long_a, long_b), (long_b, long_a), (short, long_b), (early_a, early_b), (texts.index(""), long_a)]
    for a, b in inputs:
        for strategy in ["longest_first", "only_first", "only_second"]:
            if b is None and strategy != "longest_first":
                continue
            for side in ["right", "left"]:
                t.truncation_side = side
                results = []
                for max_length in ([0, 1, 2, 3, 4, 5, 8, 11] if side == "right" else [5, 8]):
                    try:
                        e = t(texts[a], None if b is None else texts[b], truncation=strategy, max_length=max_length)
                        # Type ids are 0 up to the first [SEP], then 1: kept as the length of that first segment.
                        first = e["token_type_ids"].count(0)
                        assert e["token_type_ids"] == [0] * first + [1] * (len(e["input_ids"]) - first)
                        results.append([max_length, e["input_ids"], first])
                    except Exception as error:  # the Rust tokenizer refuses (the sequence is too short)
                        results.append([max_length, str(error)])
                groups.append({"text": a, "pair": b, "strategy": strategy, "side": side, "results": results})
    t.truncation_side = "right"
    return groups


def padding_cases(t, texts):
    """Batches (indices into texts; pairs as [a, b]) padded and truncated as transformers does."""
    cases = []
    empty, a = texts.index(""), texts.index("a")
    batches = [[0, 1, empty, a], [12, 13, 14], [[0, 1], [texts.index("short"), a], [6, empty]]]
    settings = [
        dict(padding="longest"),
        dict(padding="longest", pad_to_multiple_of=8),
        dict(padding="max_length", max_length=24),
        dict(padding="max_length", max_length=24, truncation="longest_first"),
        dict(padding="longest", max_length=12, truncation="longest_first", pad_to_multiple_of=4),
        dict(padding="do_not_pad", max_length=12, truncation="longest_first"),
    ]
    for side in ["right", "left"]:
        t.padding_side = side
        for batch in batches:
            for s in (settings if side == "right" else settings[1:4]):
                if isinstance(batch[0], list):
                    e = t([texts[a] for a, _ in batch], [texts[b] for _, b in batch], **s)
                else:
                    e = t([texts[a] for a in batch], **s)
                # Masks and type ids follow from the unpadded lengths and the first segments' lengths.
                lengths = [sum(m) for m in e["attention_mask"]]
                firsts = [types[:n].count(0) if side == "right" else types[len(types) - n:].count(0)
                          for types, n in zip(e["token_type_ids"], lengths)]
                for ids, mask, types, n, first in zip(e["input_ids"], e["attention_mask"], e["token_type_ids"], lengths, firsts):
                    pad = len(ids) - n
                    real_types = [0] * first + [1] * (n - first)
                    assert mask == ([1] * n + [0] * pad if side == "right" else [0] * pad + [1] * n)
                    assert types == (real_types + [0] * pad if side == "right" else [0] * pad + real_types)
                    assert all(i == 0 for i in (ids[n:] if side == "right" else ids[:pad]))
                cases.append({"inputs": batch, "side": side, "padding": s["padding"], "maxLength": s.get("max_length"),
                              "truncation": s.get("truncation"), "padToMultipleOf": s.get("pad_to_multiple_of"),
                              "ids": e["input_ids"], "lengths": lengths, "firstSegmentLengths": firsts})
    t.padding_side = "right"
    return cases


def decode_cases(t, texts, encodings):
    cases = []
    for index in [1, 6, 12, 15, 17, 24, 41, 50, 51]:
        ids = encodings[index]["ids"]
        for skip in [False, True]:
            for clean in [False, True]:
                cases.append({"ids": ids, "skipSpecialTokens": skip, "cleanUp": clean,
                              "text": t.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)})
    # The WordPiece decoder's clean-up (" do not" -> " don't") and transformers' (" ' " -> "'").
    for text in ["I do not think so , he said . Isn ' t it ? I ' m sure they ' ve gone ; we ' re here !"]:
        ids = t(text)["input_ids"]
        for skip in [False, True]:
            for clean in [False, True]:
                cases.append({"ids": ids, "skipSpecialTokens": skip, "cleanUp": clean,
                              "text": t.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)})
    for ids in [[2, 1, 3, 0, 0], [9999, 7, 8], [], [len(t.get_vocab()) + 50]]:
        cases.append({"ids": ids, "skipSpecialTokens": False, "cleanUp": False, "text": t.decode(ids)})
    return cases


def added_token_case(vocab, texts):
    """BERT's tokenizer with extra added tokens exercising lstrip/rstrip/single_word/normalized."""
    t = bert(vocab, True, None, True)
    before = json.loads(t.backend_tokenizer.to_str())
    t.add_tokens([
        AddedToken("<ent>", lstrip=True, rstrip=True, normalized=False),
        AddedToken("Covid", single_word=True, normalized=True),
        AddedToken("new york", normalized=True),
        AddedToken("world", single_word=True, normalized=False, special=True),
        AddedToken("[unused1]", normalized=False, special=True),
    ])
    after = json.loads(t.backend_tokenizer.to_str())
    added = after["added_tokens"][len(before["added_tokens"]):]
    assert {k: v for k, v in after.items() if k != "added_tokens"} == \
           {k: v for k, v in before.items() if k != "added_tokens"}
    samples = ["I live in New York   <ent>  and <ent>x", "COVID and covid-19 and CovidTime, covid.",
               "hello world, helloworld, world!", "[unused1][unused1] new yorker", "<ent><ent>",
               "new  york", texts[15]]
    encodings = []
    for text in samples:
        e = t(text, return_offsets_mapping=True)
        encodings.append({"text": text, "ids": e["input_ids"], "offsets": [x for o in e["offset_mapping"] for x in o],
                          "decoded": t.decode(e["input_ids"]),
                          "decodedSkippingSpecial": t.decode(e["input_ids"], skip_special_tokens=True)})
    return {"addedTokens": added, "encodings": encodings}


def short_words_case(vocab, texts):
    t = bert(vocab, True, None, True)
    t.backend_tokenizer.model.max_input_chars_per_word = 8
    samples = [texts[0], texts[6], "tokenization tokenize eightchr ninechars", "é" * 8 + " " + "İ" * 5]
    return {"maxInputCharsPerWord": 8,
            "encodings": [{"text": s, "ids": t(s)["input_ids"]} for s in samples]}


def config_override_case(texts):
    """transformers' BERT classes take do_lower_case from tokenizer_config.json over tokenizer.json's normaliser."""
    folder = "/tmp/wordpiece-config-override"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(f"{OUT}/uncased", folder)
    config = json.load(open(f"{folder}/tokenizer_config.json"))
    config.update(do_lower_case=False, model_max_length=16, padding_side="left", truncation_side="left")
    json.dump(config, open(f"{folder}/tokenizer_config.json", "w"))
    t = BertTokenizerFast.from_pretrained(folder)
    assert not t.backend_tokenizer.normalizer.lowercase
    samples = [3, 6, 7, 8, 30]
    return {"config": {"do_lower_case": False, "model_max_length": 16, "padding_side": "left", "truncation_side": "left"},
            "encodings": [{"text": i, "ids": t(texts[i])["input_ids"]} for i in samples],
            # truncation=True and padding="max_length" without max_length use model_max_length, on the left.
            "truncatedAndPadded": [{"text": i, "ids": t(texts[i], truncation=True, padding="max_length")["input_ids"]}
                                   for i in samples]}


def vocabulary_folder_case():
    """A folder with only vocab.txt and tokenizer_config.json naming extra added tokens and another pad token."""
    folder = "/tmp/wordpiece-vocabulary-folder"
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    shutil.copy(f"{OUT}/uncased/vocab.txt", folder)
    config = json.load(open(f"{OUT}/uncased/tokenizer_config.json"))
    changes = {"pad_token": "[MASK]", "added_tokens_decoder": {
        "0": {"content": "[PAD]", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True},
        str(VOCAB_SIZE): {"content": "<ent>", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False,
                          "special": True}}}
    config.update(changes)
    json.dump(config, open(f"{folder}/tokenizer_config.json", "w"))
    t = BertTokenizerFast.from_pretrained(folder)
    samples = []
    for text in ["a  <ent>b", "<ent> x <ent>"]:
        ids = t(text, padding="max_length", max_length=12)["input_ids"]
        samples.append({"text": text, "ids": ids, "decoded": t.decode(ids),
                        "decodedSkippingSpecial": t.decode(ids, skip_special_tokens=True)})
    return {"config": changes, "padTokenId": t.pad_token_id, "vocabularySize": len(t), "encodings": samples}


def code_point_ranges(flags):
    ranges, start = [], None
    for cp, flag in enumerate(flags):
        if flag and start is None:
            start = cp
        elif not flag and start is not None:
            ranges.append([start, cp - 1])
            start = None
    if start is not None:
        ranges.append([start, len(flags) - 1])
    return ranges


def lowercase_runs(lower_map):
    """Single-scalar lower-case mappings as runs [first, count, stride, delta]; longer ones as they are."""
    runs, multi = [], {}
    for cp, low in sorted(lower_map.items()):
        if len(low) != 1:
            multi[str(cp)] = low
            continue
        delta = ord(low) - cp
        if runs:
            first, count, stride, run_delta = runs[-1]
            last = first + (count - 1) * stride
            if run_delta == delta and (count == 1 and cp - last <= 2 or count > 1 and cp - last == stride):
                runs[-1] = [first, count + 1, cp - last, delta]
                continue
        runs.append([cp, 1, 1, delta])
    expanded = {first + i * stride: chr(first + i * stride + delta)
                for first, count, stride, delta in runs for i in range(count)}
    assert {**expanded, **{int(k): v for k, v in multi.items()}} == lower_map
    return {"runs": runs, "multiScalar": multi}


def unicode_tables():
    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    chinese = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    lower = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    size = 0x110000
    removed, spaced, chinese_flags, stripped_away, punctuation, whitespace = ([False] * size for _ in range(6))
    strip_map, lower_map = {}, {}
    for cp in range(size):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        cleaned = clean.normalize_str(c)
        removed[cp] = cleaned == ""
        spaced[cp] = cleaned == " " and c != " "
        chinese_flags[cp] = chinese.normalize_str(c) == f" {c} "
        s = strip.normalize_str(c)
        if s == "":
            stripped_away[cp] = True
        elif s != c:
            if 0xAC00 <= cp <= 0xD7A3:  # Hangul syllables decompose algorithmically; the test computes them
                assert s == unicodedata.normalize("NFD", c), hex(cp)
            else:
                strip_map[cp] = s
        low = lower.normalize_str(c)
        if low != c:
            lower_map[cp] = low
        words = [w for w, _ in pre.pre_tokenize_str(f"a{c}a")]
        whitespace[cp] = words == ["a", "a"]
        punctuation[cp] = words == ["a", c, "a"]
    return {
        "removedByCleanText": code_point_ranges(removed),
        "spaceByCleanText": code_point_ranges(spaced),
        "whitespace": code_point_ranges(whitespace),
        "chinese": code_point_ranges(chinese_flags),
        "removedByStripAccents": code_point_ranges(stripped_away),
        "stripAccents": {str(k): v for k, v in sorted(strip_map.items())},
        "lowercase": lowercase_runs(lower_map),
        "punctuation": code_point_ranges(punctuation),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    texts = all_texts()
    vocabs = {name: existing_vocab(name) if "--retrain" not in sys.argv and existing_vocab(name) else
              train(name == "uncased", VOCAB_SIZE) for name in ["uncased", "cased"]}
    for name, vocab in vocabs.items():
        save_folder(name, vocab, name == "uncased")
    reference = {
        "tokenizers": tokenizers.__version__, "transformers": transformers.__version__,
        "texts": texts, "pairs": [[text_of(a, texts), text_of(b, texts)] for a, b in PAIRS], "variants": [],
    }
    encoded = {}
    for name, folder, lowercase, strip_accents, chinese in VARIANTS:
        t = bert(vocabs[folder], lowercase, strip_accents, chinese)
        encodings = encode_texts(t, texts)
        encoded[name] = encodings
        variant = {"name": name, "folder": folder, "lowercase": lowercase, "stripAccents": strip_accents,
                   "chineseCharacters": chinese}
        if name == folder:
            variant["encodings"] = encodings
            variant["pairs"] = encode_pairs(t, texts)
        else:
            # Every text encodes as in the folder's own variant except these (text index -> encoding).
            variant["differences"] = {str(i): e for i, (e, base) in enumerate(zip(encodings, encoded[folder])) if e != base}
        if name == "uncased":
            variant["truncation"] = truncation_cases(t, texts)
            variant["padding"] = padding_cases(t, texts)
            variant["decode"] = decode_cases(t, texts, encodings)
        reference["variants"].append(variant)
    differing = {v["name"]: len(v["differences"]) for v in reference["variants"] if "differences" in v}
    assert differing["uncased-strip"] == 0 and differing["cased-keep-accents"] == 0, differing
    assert min(differing[n] for n in ["uncased-keep-accents", "cased-strip", "cased-no-chinese"]) >= 3, differing
    reference["addedTokens"] = added_token_case(vocabs["uncased"], texts)
    reference["shortWords"] = short_words_case(vocabs["uncased"], texts)
    reference["configOverride"] = config_override_case(texts)
    reference["vocabularyFolder"] = vocabulary_folder_case()
    with open(f"{OUT}/reference.json", "w", encoding="utf-8") as f:
        json.dump(reference, f, ensure_ascii=False, separators=(",", ":"))
    with open(f"{OUT}/unicode.json", "w", encoding="utf-8") as f:
        json.dump(unicode_tables(), f, ensure_ascii=False, separators=(",", ":"))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({total} bytes) with tokenizers {tokenizers.__version__}, transformers {transformers.__version__}")
    print("texts differing from the folder's variant:", differing)


if __name__ == "__main__":
    main()

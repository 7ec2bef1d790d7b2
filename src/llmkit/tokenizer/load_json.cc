// Builds a tokenizer from a Hugging Face tokenizer.json: model (BPE / WordPiece / Unigram),
// added tokens, normalizer, pre-tokenizer, post-processor and decoder. Every field is checked:
// ids must lie in [0, n_vocab), each id and token text appears once, token texts are bounded,
// byte tokens are spelled <0xHH>, merges name known tokens. Truncation and padding settings are
// ignored (they belong to batching, not to tokenization).
#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/tokenizer_impl.h"

namespace llmkit::tok {

using json = nlohmann::json;

void check_token_text(const std::string& text, int64_t id, const std::string& file) {
  LLMKIT_CHECK(text.size() <= kMaxTokenBytes, kInvalidFile, file, ": token ", id, " is ", text.size(),
               " bytes long (limit ", kMaxTokenBytes, ")", "; the vocabulary is corrupt");
  if (text.size() >= 4 && text.size() <= 8 && text.compare(0, 3, "<0x") == 0 && text.back() == '>') {
    auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
    LLMKIT_CHECK(text.size() == 6 && hex(text[3]) && hex(text[4]), kInvalidFile, file, ": token ", id, " \"", text,
                 "\" looks like a byte token but is not <0xHH> with two hex digits", "; the vocabulary is corrupt");
  }
}

namespace {
std::string jstr(const json& j, const char* key, const std::string& dflt = "") {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  LLMKIT_CHECK(it->is_string(), kInvalidFile, "tokenizer.json: \"", key, "\" must be a string");
  return it->get<std::string>();
}
bool jbool(const json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  LLMKIT_CHECK(it->is_boolean(), kInvalidFile, "tokenizer.json: \"", key, "\" must be true or false");
  return it->get<bool>();
}
int32_t jid(const json& v, const std::string& file, const std::string& what) {
  LLMKIT_CHECK(v.is_number_integer(), kInvalidFile, file, ": ", what, " has a non-integer id");
  int64_t id = v.get<int64_t>();
  LLMKIT_CHECK(id >= 0 && id < kMaxVocab, kInvalidFile, file, ": ", what, " has id ", id, " outside [0, ", kMaxVocab, ")");
  return static_cast<int32_t>(id);
}

// Ids run densely from 0, so none can reach the number of tokens the file lists (`n_listed`, vocab
// plus added tokens). Checked before any table is sized by an id: a two-line file with id 30000000
// would otherwise allocate a gigabyte before the density check refused it.
void check_listed(int32_t id, size_t n_listed, const std::string& text, const std::string& file) {
  LLMKIT_CHECK(static_cast<size_t>(id) < n_listed, kInvalidFile, file, ": token \"", text, "\" has id ", id,
               " but the file lists only ", n_listed, " tokens (vocab plus added_tokens)",
               "; ids must run from 0 to n_vocab - 1 without gaps");
}

// Sets pieces[id] = text, refusing a second, different text for one id.
void put_piece(TokenizerImpl& t, int32_t id, const std::string& text, const std::string& file, size_t n_listed) {
  check_token_text(text, id, file);
  check_listed(id, n_listed, text, file);
  if (static_cast<size_t>(id) >= t.pieces.size()) t.pieces.resize(static_cast<size_t>(id) + 1);
  LLMKIT_CHECK(t.pieces[id].empty() || t.pieces[id] == text, kInvalidFile, file, ": id ", id, " is both \"",
               t.pieces[id], "\" and \"", text, "\" (duplicate id)");
  t.pieces[id] = text;
}

void load_post_processor(TokenizerImpl& t, const json& pp, const std::string& file) {
  if (pp.is_null()) return;
  LLMKIT_CHECK(pp.is_object(), kInvalidFile, file, ": post_processor must be an object");
  std::string type = jstr(pp, "type");
  auto id_of = [&](const json& pair, const char* what) {
    LLMKIT_CHECK(pair.is_array() && pair.size() == 2, kInvalidFile, file, ": post_processor ", what, " must be [token, id]");
    return jid(pair[1], file, str_cat("post_processor ", what));
  };
  if (type == "Sequence") {
    for (const auto& sub : pp.at("processors")) load_post_processor(t, sub, file);
  } else if (type == "TemplateProcessing") {
    const json& single = pp.at("single");
    const json& specials = pp.contains("special_tokens") ? pp["special_tokens"] : json::object();
    LLMKIT_CHECK(single.is_array(), kInvalidFile, file, ": TemplateProcessing single must be a list");
    bool seen_seq = false;
    for (const auto& item : single) {
      if (item.contains("Sequence")) { seen_seq = true; continue; }
      LLMKIT_CHECK(item.contains("SpecialToken"), kInvalidFile, file, ": TemplateProcessing item ", item.dump(),
                   " is neither Sequence nor SpecialToken");
      std::string name = jstr(item["SpecialToken"], "id");
      LLMKIT_CHECK(specials.contains(name) && specials[name].contains("ids"), kInvalidFile, file,
                   ": TemplateProcessing uses special token \"", name, "\" that special_tokens does not define");
      for (const auto& v : specials[name]["ids"]) {
        int32_t id = jid(v, file, str_cat("special token ", name));
        (seen_seq ? t.suffix : t.prefix).push_back(id);
      }
    }
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    t.prefix.push_back(id_of(pp.at("cls"), "cls"));
    t.suffix.push_back(id_of(pp.at("sep"), "sep"));
  } else if (type != "ByteLevel") {
    throw Error(ErrorCode::kUnsupported, str_cat(file, ": post_processor \"", type, "\" is not supported"));
  }
}

void load_model(TokenizerImpl& t, const json& m, const std::string& file, size_t n_listed) {
  LLMKIT_CHECK(m.is_object(), kInvalidFile, file, ": \"model\" must be an object");
  std::string type = jstr(m, "type");
  const json& vocab = m.contains("vocab") ? m["vocab"] : json();
  if (type.empty()) type = vocab.is_array() ? "Unigram" : m.contains("merges") ? "BPE" : "WordPiece";
  if (type == "Unigram") {
    LLMKIT_CHECK(vocab.is_array(), kInvalidFile, file, ": Unigram vocab must be a list of [piece, score]");
    std::vector<std::pair<std::string, double>> pieces;
    pieces.reserve(vocab.size());
    for (size_t i = 0; i < vocab.size(); ++i) {
      const json& e = vocab[i];
      LLMKIT_CHECK(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_number(), kInvalidFile, file,
                   ": Unigram vocab entry ", i, " must be [piece, score]");
      std::string text = e[0].get<std::string>();
      LLMKIT_CHECK(t.vocab.emplace(text, static_cast<int32_t>(i)).second, kInvalidFile, file, ": token \"", text,
                   "\" appears twice (ids ", t.vocab[text], " and ", i, ")");
      put_piece(t, static_cast<int32_t>(i), text, file, n_listed);
      pieces.emplace_back(std::move(text), e[1].get<double>());
    }
    std::optional<int32_t> unk;
    if (m.contains("unk_id") && !m["unk_id"].is_null()) {
      unk = jid(m["unk_id"], file, "unk_id");
      LLMKIT_CHECK(static_cast<size_t>(*unk) < pieces.size(), kInvalidFile, file, ": unk_id ", *unk,
                   " >= n_vocab ", pieces.size());
    }
    t.unigram = std::make_unique<Unigram>(std::move(pieces), unk, jbool(m, "byte_fallback", false));
    t.kind = "Unigram";
    return;
  }
  LLMKIT_CHECK(vocab.is_object(), kInvalidFile, file, ": ", type, " vocab must be an object {token: id}");
  StrMap<int32_t> v;
  v.reserve(vocab.size());
  std::vector<uint8_t> seen;
  for (const auto& [text, idj] : vocab.items()) {
    int32_t id = jid(idj, file, str_cat("token \"", text, "\""));
    check_listed(id, n_listed, text, file);
    if (static_cast<size_t>(id) >= seen.size()) seen.resize(static_cast<size_t>(id) + 1);
    LLMKIT_CHECK(!seen[id], kInvalidFile, file, ": id ", id, " is used by two tokens (one is \"", text, "\")");
    seen[id] = 1;
    put_piece(t, id, text, file, n_listed);
    v.emplace(text, id);
  }
  auto unk_of = [&](const std::string& name) -> std::optional<int32_t> {
    if (name.empty()) return std::nullopt;
    auto it = v.find(name);
    LLMKIT_CHECK(it != v.end(), kInvalidFile, file, ": unk_token \"", name, "\" is not in the vocabulary");
    return it->second;
  };
  if (type == "WordPiece") {
    auto unk = unk_of(jstr(m, "unk_token", "[UNK]"));
    int64_t max_chars = m.value("max_input_chars_per_word", int64_t{100});
    t.wordpiece = std::make_unique<WordPiece>(v, *unk, jstr(m, "continuing_subword_prefix", "##"),
                                              static_cast<size_t>(std::max<int64_t>(max_chars, 0)));
    t.kind = "WordPiece";
  } else if (type == "BPE") {
    const json& mj = m.contains("merges") ? m["merges"] : json::array();
    LLMKIT_CHECK(mj.is_array(), kInvalidFile, file, ": BPE merges must be a list");
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(mj.size());
    for (size_t i = 0; i < mj.size(); ++i) {
      const json& e = mj[i];
      if (e.is_string()) {
        const std::string& s = e.get_ref<const std::string&>();
        size_t sp = s.find(' ', 1);
        LLMKIT_CHECK(sp != std::string::npos, kInvalidFile, file, ": merge #", i, " \"", s, "\" is not \"left right\"");
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else {
        LLMKIT_CHECK(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(), kInvalidFile, file,
                     ": merge #", i, " must be \"left right\" or [left, right]");
        merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      }
    }
    Bpe::Options o;
    o.byte_level = t.pre.byte_level();
    o.unk = unk_of(jstr(m, "unk_token"));
    o.fuse_unk = jbool(m, "fuse_unk", false);
    o.byte_fallback = jbool(m, "byte_fallback", false);
    o.ignore_merges = jbool(m, "ignore_merges", false);
    o.continuing_subword_prefix = jstr(m, "continuing_subword_prefix");
    o.end_of_word_suffix = jstr(m, "end_of_word_suffix");
    t.bpe = std::make_unique<Bpe>(v, merges, std::move(o));
    t.kind = t.pre.byte_level() ? "byte-level BPE" : jbool(m, "byte_fallback", false) ? "SentencePiece BPE" : "BPE";
  } else {
    throw Error(ErrorCode::kUnsupported, str_cat(file, ": model type \"", type, "\" is not supported"),
                "supported: BPE, WordPiece, Unigram");
  }
  t.vocab = std::move(v);
}

// tokenizer_config.json's bos_token / eos_token: a string or {"content": ...}.
std::optional<int32_t> config_token(const TokenizerImpl& t, const json& cfg, const char* key) {
  if (!cfg.is_object() || !cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  std::string name = v.is_string() ? v.get<std::string>() : v.is_object() ? jstr(v, "content") : "";
  auto it = t.vocab.find(name);
  return it == t.vocab.end() ? std::nullopt : std::optional<int32_t>(it->second);
}
}  // namespace

namespace {

std::shared_ptr<TokenizerImpl> load_tokenizer_json_unguarded(std::string_view text, const std::string& file,
                                                             std::string_view config_text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  LLMKIT_CHECK(!j.is_discarded() && j.is_object(), kInvalidFile, file, " is not a JSON object",
               "; pass a Hugging Face tokenizer.json (fast tokenizer) file");
  LLMKIT_CHECK(j.contains("model"), kInvalidFile, file, " has no \"model\"", "; this does not look like a tokenizer.json");
  auto t = std::make_shared<TokenizerImpl>();
  t->name = file;
  t->normalizer = Normalizer::from_json(j.value("normalizer", json()));
  t->pre = PreTokenizer::from_json(j.value("pre_tokenizer", json()));
  const json dec = j.value("decoder", json());
  t->join_with_space = dec.is_null();
  t->decoder = Decoder::from_json(dec);
  const json added = j.value("added_tokens", json::array());
  LLMKIT_CHECK(added.is_array(), kInvalidFile, file, ": added_tokens must be a list");
  const json& model = j["model"];
  const size_t n_listed =
      added.size() + (model.is_object() && model.contains("vocab") ? model["vocab"].size() : size_t{0});
  load_model(*t, model, file, n_listed);

  for (const auto& a : added) {
    LLMKIT_CHECK(a.is_object(), kInvalidFile, file, ": added_tokens entries must be objects");
    AddedToken at;
    at.id = jid(a.value("id", json()), file, "an added token");
    at.content = jstr(a, "content");
    LLMKIT_CHECK(!at.content.empty(), kInvalidFile, file, ": added token ", at.id, " has empty content");
    at.special = jbool(a, "special", false);
    at.lstrip = jbool(a, "lstrip", false);
    at.rstrip = jbool(a, "rstrip", false);
    at.single_word = jbool(a, "single_word", false);
    at.normalized = jbool(a, "normalized", !at.special);
    put_piece(*t, at.id, at.content, file, n_listed);
    t->vocab.emplace(at.content, at.id);
    t->added.push_back(std::move(at));
  }
  load_post_processor(*t, j.value("post_processor", json()), file);
  if (!t->prefix.empty()) t->bos = t->prefix.front();
  if (!t->suffix.empty()) t->eos = t->suffix.back();
  if (!config_text.empty()) {
    json cfg = json::parse(config_text.begin(), config_text.end(), nullptr, false);
    if (auto b = config_token(*t, cfg, "bos_token")) t->bos = b;
    if (auto e = config_token(*t, cfg, "eos_token")) t->eos = e;
  }
  t->finalize();
  return t;
}

}  // namespace

std::shared_ptr<TokenizerImpl> load_tokenizer_json(std::string_view text, const std::string& file,
                                                   std::string_view config_text) {
  // Every field access above checks its type, but a malformed file can still reach a json accessor
  // that throws (a missing key in a nested object, a number where a string belongs): such a file is
  // the user's error, reported as one, never an escaped library exception.
  try {
    return load_tokenizer_json_unguarded(text, file, config_text);
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kInvalidFile, str_cat(file, " is not a valid tokenizer.json: ", e.what()),
                "pass the tokenizer.json that came with the model (Hugging Face fast-tokenizer format)");
  }
}

}  // namespace llmkit::tok

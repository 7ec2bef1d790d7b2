// tokenizer.json <-> tokenizer.ggml.* (see hf_tokenizer_gguf.h). Token types follow llama.cpp's
// llama_token_type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
#include "llmkit/models/hf_tokenizer_gguf.h"

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"

namespace llmkit::models {
namespace {

using Json = nlohmann::json;
using io::GgufType;
using io::GgufValue;

constexpr int kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;

Json parse_or_throw(const std::string& text, const char* what) {
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {
    throw Error(ErrorCode::kInvalidFile, str_cat(what, " is not valid JSON: ", e.what()));
  }
}

// "bos_token": "<s>" or {"content": "<s>", ...}
std::string token_text(const Json& cfg, const char* key) {
  if (!cfg.contains(key)) return {};
  const Json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return {};
}

bool is_byte_token(const std::string& s) {
  return s.size() == 6 && s.rfind("<0x", 0) == 0 && s[5] == '>' && std::isxdigit(static_cast<unsigned char>(s[3])) &&
         std::isxdigit(static_cast<unsigned char>(s[4]));
}

}  // namespace

void hf_tokenizer_to_gguf(const std::string& tokenizer_json, const std::string& tokenizer_config_json,
                          const std::string& chat_template_file, const ModelConfig& c, io::GgufWriter& w,
                          std::vector<std::string>* notes) {
  Json tcfg = tokenizer_config_json.empty() ? Json::object() : parse_or_throw(tokenizer_config_json, "tokenizer_config.json");
  if (!tcfg.is_object()) tcfg = Json::object();
  std::map<std::string, int64_t> id_of;
  if (!tokenizer_json.empty()) {
    Json tj = parse_or_throw(tokenizer_json, "tokenizer.json");
    const Json& model = tj.value("model", Json::object());
    const std::string type = model.value("type", "");
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    auto put = [&](int64_t id, const std::string& text, float score, int ty) {
      if (id < 0 || id >= (int64_t{1} << 24))
        throw Error(ErrorCode::kInvalidFile, str_cat("tokenizer.json token id ", id, " is out of range"));
      if (static_cast<size_t>(id) >= tokens.size()) {
        tokens.resize(static_cast<size_t>(id) + 1);
        scores.resize(tokens.size(), 0.0f);
        types.resize(tokens.size(), kUnused);
      }
      tokens[static_cast<size_t>(id)] = text;
      scores[static_cast<size_t>(id)] = score;
      types[static_cast<size_t>(id)] = ty;
      id_of[text] = id;
    };
    std::string ggml_model;
    if (type == "BPE" || type == "WordPiece") {
      const Json& vocab = model.value("vocab", Json::object());
      if (!vocab.is_object()) throw Error(ErrorCode::kInvalidFile, "tokenizer.json model.vocab is not an object");
      const bool byte_fallback = model.value("byte_fallback", false);
      for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        if (!it.value().is_number_integer()) throw Error(ErrorCode::kInvalidFile, "tokenizer.json vocab id is not an integer");
        const int64_t id = it.value().get<int64_t>();
        put(id, it.key(), -static_cast<float>(id), byte_fallback && is_byte_token(it.key()) ? kByte : kNormal);
      }
      ggml_model = type == "WordPiece" ? "bert" : byte_fallback ? "llama" : "gpt2";
      if (type == "BPE" && model.contains("merges") && model["merges"].is_array()) {
        std::vector<std::string> merges;
        merges.reserve(model["merges"].size());
        for (const auto& m : model["merges"]) {
          if (m.is_string()) merges.push_back(m.get<std::string>());
          else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
            merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
          else throw Error(ErrorCode::kInvalidFile, "tokenizer.json merge is neither \"a b\" nor [\"a\", \"b\"]");
        }
        w.set("tokenizer.ggml.merges", GgufValue::from_strings(merges));
      }
    } else if (type == "Unigram") {
      const Json& vocab = model.value("vocab", Json::array());
      int64_t id = 0;
      for (const auto& e : vocab) {
        if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number())
          throw Error(ErrorCode::kInvalidFile, "tokenizer.json Unigram vocab entry is not [piece, score]");
        const double score = e[1].get<double>();  // clamped: a cast of an out-of-range double to float is UB
        put(id++, e[0].get<std::string>(), static_cast<float>(std::clamp(score, -1e30, 1e30)), kNormal);
      }
      if (model.contains("unk_id") && model["unk_id"].is_number_integer()) {
        int64_t u = model["unk_id"].get<int64_t>();
        if (u >= 0 && u < id) types[static_cast<size_t>(u)] = kUnknown;
      }
      ggml_model = "t5";
    } else {
      notes->push_back(str_cat("tokenizer.json model type '", type, "' has no tokenizer.ggml mapping; only tokenizer.huggingface.json is kept"));
    }
    if (!ggml_model.empty()) {
      if (tj.contains("added_tokens") && tj["added_tokens"].is_array())
        for (const auto& a : tj["added_tokens"]) {
          if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
              !a["content"].is_string())
            throw Error(ErrorCode::kInvalidFile, "tokenizer.json added_tokens entry lacks an integer id or a content string");
          put(a["id"].get<int64_t>(), a["content"].get<std::string>(), 0.0f, a.value("special", false) ? kControl : kUserDefined);
        }
      // The embedding may have more rows than the tokenizer has tokens: pad as llama.cpp does.
      while (static_cast<int64_t>(tokens.size()) < c.n_vocab) put(static_cast<int64_t>(tokens.size()), str_cat("[PAD", tokens.size(), "]"), 0.0f, kUnused);
      for (size_t k = 0; k < tokens.size(); ++k)
        if (types[k] == kUnused && tokens[k].empty()) tokens[k] = str_cat("[PAD", k, "]");
      w.set("tokenizer.ggml.model", GgufValue::from_string(ggml_model));
      std::string pre = "default";
      if (c.family == ArchFamily::kQwen2) pre = "qwen2";
      else if (c.family == ArchFamily::kGpt2) pre = "gpt-2";
      else if (ggml_model == "gpt2" && c.family == ArchFamily::kLlama && tokens.size() >= 128000) pre = "llama-bpe";
      else if (ggml_model == "gpt2" && tokens.size() == 49152) pre = "smollm";
      if (ggml_model == "gpt2") w.set("tokenizer.ggml.pre", GgufValue::from_string(pre));
      w.set("tokenizer.ggml.tokens", GgufValue::from_strings(tokens));
      std::vector<GgufValue> sv, tv;
      for (float s : scores) sv.push_back(GgufValue::from_f32(s));
      for (int32_t t : types) tv.push_back(GgufValue::from_i32(t));
      w.set("tokenizer.ggml.scores", GgufValue::from_array(GgufType::kF32, std::move(sv)));
      w.set("tokenizer.ggml.token_type", GgufValue::from_array(GgufType::kI32, std::move(tv)));
    }
    w.set("tokenizer.huggingface.json", GgufValue::from_string(tokenizer_json));
  } else {
    notes->push_back("no tokenizer.json: the GGUF has no tokenizer");
  }
  auto special = [&](const char* cfg_key, const char* gguf_key) {
    std::string t = token_text(tcfg, cfg_key);
    if (t.empty()) return;
    auto it = id_of.find(t);
    if (it != id_of.end()) w.set(gguf_key, GgufValue::from_u32(static_cast<uint32_t>(it->second)));
  };
  special("bos_token", "tokenizer.ggml.bos_token_id");
  special("eos_token", "tokenizer.ggml.eos_token_id");
  special("unk_token", "tokenizer.ggml.unknown_token_id");
  special("pad_token", "tokenizer.ggml.padding_token_id");
  if (tcfg.contains("add_bos_token") && tcfg["add_bos_token"].is_boolean())
    w.set("tokenizer.ggml.add_bos_token", GgufValue::from_bool(tcfg["add_bos_token"].get<bool>()));
  if (tcfg.contains("add_eos_token") && tcfg["add_eos_token"].is_boolean())
    w.set("tokenizer.ggml.add_eos_token", GgufValue::from_bool(tcfg["add_eos_token"].get<bool>()));
  std::string tmpl = chat_template_file;
  if (tmpl.empty() && tcfg.contains("chat_template")) {
    const Json& ct = tcfg["chat_template"];
    if (ct.is_string()) tmpl = ct.get<std::string>();
    else if (ct.is_array())
      for (const auto& e : ct)  // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
        if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
          tmpl = e["template"].get<std::string>();
  }
  if (!tmpl.empty()) w.set("tokenizer.chat_template", GgufValue::from_string(tmpl));
  if (!tokenizer_config_json.empty()) w.set("llmkit.hf.tokenizer_config_json", GgufValue::from_string(tokenizer_config_json));
}

HfTokenizerFiles gguf_tokenizer_to_hf(const io::GgufFile& f, std::vector<std::string>* notes) {
  HfTokenizerFiles out;
  auto tokens_v = f.find("tokenizer.ggml.tokens");
  auto token = [&](const char* key) -> std::string {
    auto id = f.get_int(key);
    if (!id || !tokens_v || tokens_v->type != GgufType::kArray || *id < 0 || static_cast<size_t>(*id) >= tokens_v->arr.size())
      return {};
    return std::string(tokens_v->arr.string_at(static_cast<size_t>(*id)));
  };
  if (auto carried = f.get_string("tokenizer.huggingface.json")) {
    out.tokenizer_json = *carried;
  } else if (f.get_string("tokenizer.ggml.model") == std::optional<std::string>("gpt2") && tokens_v &&
             tokens_v->type == GgufType::kArray) {
    nlohmann::ordered_json vocab = nlohmann::ordered_json::object(), added = nlohmann::ordered_json::array();
    const GgufValue* types = f.find("tokenizer.ggml.token_type");
    for (size_t k = 0; k < tokens_v->arr.size(); ++k) {
      const std::string t(tokens_v->arr.string_at(k));
      vocab[t] = k;
      int ty = types && types->type == GgufType::kArray && k < types->arr.size() ? static_cast<int>(types->arr[k].as_int().value_or(1)) : kNormal;
      if (ty == kControl || ty == kUserDefined)
        added.push_back({{"id", k}, {"content", t}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                         {"normalized", ty != kControl}, {"special", ty == kControl}});
    }
    nlohmann::ordered_json merges = nlohmann::ordered_json::array();
    if (const GgufValue* m = f.find("tokenizer.ggml.merges"); m && m->type == GgufType::kArray)
      for (const auto& e : m->arr) merges.push_back(e.s);
    nlohmann::ordered_json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    nlohmann::ordered_json tj = {
        {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
        {"normalizer", nullptr}, {"pre_tokenizer", byte_level}, {"post_processor", byte_level}, {"decoder", byte_level},
        {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                   {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
                   {"vocab", vocab}, {"merges", merges}}}};
    try {
      out.tokenizer_json = tj.dump(2) + "\n";
    } catch (const nlohmann::json::exception&) {
      throw Error(ErrorCode::kInvalidFile, str_cat("GGUF '", f.name(), "' has a token that is not UTF-8; cannot write tokenizer.json"));
    }
    notes->push_back("tokenizer.json rebuilt from tokenizer.ggml.* with the GPT-2 pre-tokenizer (check it for this model)");
  } else {
    notes->push_back("no tokenizer.json written: the GGUF carries no tokenizer.huggingface.json and its tokenizer "
                     "model is not byte-level BPE");
  }
  if (auto carried = f.get_string("llmkit.hf.tokenizer_config_json")) {
    out.tokenizer_config_json = *carried;
  } else {
    nlohmann::ordered_json tc = nlohmann::ordered_json::object();
    for (auto [key, hf] : {std::pair{"tokenizer.ggml.bos_token_id", "bos_token"}, {"tokenizer.ggml.eos_token_id", "eos_token"},
                           {"tokenizer.ggml.unknown_token_id", "unk_token"}, {"tokenizer.ggml.padding_token_id", "pad_token"}})
      if (auto t = token(key); !t.empty()) tc[hf] = t;
    if (auto v = f.find("tokenizer.ggml.add_bos_token"); v && v->type == GgufType::kBool) tc["add_bos_token"] = v->u != 0;
    if (auto v = f.find("tokenizer.ggml.add_eos_token"); v && v->type == GgufType::kBool) tc["add_eos_token"] = v->u != 0;
    if (auto t = f.get_string("tokenizer.chat_template")) tc["chat_template"] = *t;
    tc["tokenizer_class"] = "PreTrainedTokenizerFast";
    try {
      out.tokenizer_config_json = tc.dump(2) + "\n";
    } catch (const nlohmann::json::exception&) {
      throw Error(ErrorCode::kInvalidFile, str_cat("GGUF '", f.name(), "' has a special token or chat template that is not UTF-8"));
    }
  }
  return out;
}

}  // namespace llmkit::models

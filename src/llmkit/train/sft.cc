// SFT data: chat/instruction JSONL -> assistant-only labels -> packed rows (sft.h).
#include "llmkit/train/sft.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/chat_template.h"
#include "llmkit/models/weights.h"
#include "llmkit/ops/ops.h"
#include "llmkit/tokenizer.h"

namespace llmkit::train {
namespace {

using nlohmann::json;

std::vector<ChatMessage> messages_of(const json& j, int64_t line) {
  auto bad = [&](const std::string& what) {
    return Error(ErrorCode::kInvalidFile, str_cat("SFT data line ", line, ": ", what),
                 "write {\"messages\": [{\"role\": \"user\", \"content\": ...}, {\"role\": \"assistant\", \"content\": "
                 "...}]} or {\"instruction\": ..., \"input\": ..., \"output\": ...}");
  };
  if (!j.is_object()) throw bad("not a JSON object");
  std::vector<ChatMessage> m;
  if (j.contains("messages")) {
    if (!j["messages"].is_array() || j["messages"].empty()) throw bad("\"messages\" must be a non-empty array");
    for (const json& msg : j["messages"]) {
      if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string() || !msg.contains("content") ||
          !msg["content"].is_string())
        throw bad("every message needs string \"role\" and \"content\"");
      m.push_back({msg["role"].get<std::string>(), msg["content"].get<std::string>()});
    }
  } else if (j.contains("instruction") && j.contains("output")) {
    if (!j["instruction"].is_string() || !j["output"].is_string() || (j.contains("input") && !j["input"].is_string()))
      throw bad("\"instruction\", \"input\" and \"output\" must be strings");
    if (j.contains("system") && j["system"].is_string()) m.push_back({"system", j["system"].get<std::string>()});
    std::string user = j["instruction"].get<std::string>();
    const std::string input = j.value("input", std::string());
    if (!input.empty()) user += "\n\n" + input;
    m.push_back({"user", user});
    m.push_back({"assistant", j["output"].get<std::string>()});
  } else {
    throw bad("neither a \"messages\" chat nor an Alpaca record (\"instruction\" + \"output\")");
  }
  if (std::none_of(m.begin(), m.end(), [](const ChatMessage& x) { return x.role == "assistant"; }))
    throw bad("no assistant message: nothing to train on");
  return m;
}

}  // namespace

SftData load_sft(const std::string& jsonl, const std::string& model, int64_t seq_len, double val_fraction,
                 uint64_t seed) {
  LLMKIT_CHECK(seq_len >= 2, kInvalidArgument, "--seq-len ", seq_len, " must be >= 2");
  std::ifstream in(jsonl);
  LLMKIT_CHECK(static_cast<bool>(in), kNotFound, "cannot read the SFT data '", jsonl, "'",
               "; pass a JSONL file of chats ({\"messages\": [...]}) or Alpaca records");
  const Tokenizer tok = Tokenizer::load(model);
  const std::string tmpl = models::Weights::open(model).chat_template();
  LLMKIT_CHECK(!tmpl.empty(), kUnsupported, "model '", model, "' has no chat template to render the SFT data with",
               "; use a chat model (e.g. SmolLM2-135M-Instruct) or train on plain text with `llmkit train`");
  const std::string bos = tok.bos_id() ? tok.piece(*tok.bos_id()) : std::string();
  const std::string eos = tok.eos_id() ? tok.piece(*tok.eos_id()) : std::string();
  SftData d;
  std::string line;
  for (int64_t ln = 1; std::getline(in, line); ++ln) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded())
      throw Error(ErrorCode::kInvalidFile, str_cat("SFT data line ", ln, " is not valid JSON"),
                  "write one JSON object per line");
    const std::vector<ChatMessage> msgs = messages_of(j, ln);
    // Character spans of the assistant turns in the full rendering.
    const std::string full = render_chat_template(tmpl, msgs, false, bos, eos);
    std::vector<std::pair<size_t, size_t>> spans;
    for (size_t i = 0; i < msgs.size(); ++i) {
      if (msgs[i].role != "assistant") continue;
      const std::vector<ChatMessage> before(msgs.begin(), msgs.begin() + static_cast<std::ptrdiff_t>(i));
      const std::vector<ChatMessage> upto(msgs.begin(), msgs.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      const std::string prompt = render_chat_template(tmpl, before, true, bos, eos);
      const std::string with = render_chat_template(tmpl, upto, false, bos, eos);
      LLMKIT_CHECK(with.compare(0, prompt.size(), prompt) == 0 && full.compare(0, with.size(), with) == 0,
                   kUnsupported, "SFT data line ", ln, ": the chat template does not render this conversation "
                   "incrementally (a later turn changes the text of an earlier one), so the assistant tokens "
                   "cannot be told apart");
      spans.emplace_back(prompt.size(), with.size());
    }
    SftExample ex;
    size_t at = 0;
    auto add = [&](size_t b, size_t e, uint8_t trained) {
      if (e <= b) return;
      for (int32_t id : tok.encode(std::string_view(full).substr(b, e - b), false)) {
        ex.ids.push_back(id);
        ex.trained.push_back(trained);
      }
    };
    for (const auto& [b, e] : spans) {
      add(at, b, 0);
      add(b, e, 1);
      at = e;
    }
    add(at, full.size(), 0);
    if (static_cast<int64_t>(ex.ids.size()) > seq_len) {
      ex.ids.resize(static_cast<size_t>(seq_len));
      ex.trained.resize(static_cast<size_t>(seq_len));
      ++d.truncated;
    }
    d.tokens += static_cast<int64_t>(ex.ids.size());
    for (size_t i = 1; i < ex.trained.size(); ++i) d.trained_tokens += ex.trained[i];
    ++d.lines;
    (in_val_split(seed, static_cast<uint64_t>(d.lines - 1), val_fraction) ? d.val : d.train).push_back(std::move(ex));
  }
  LLMKIT_CHECK(d.lines > 0, kInvalidArgument, "the SFT data '", jsonl, "' has no examples");
  return d;
}

std::vector<TokenBatch> pack_sft(const std::vector<SftExample>& examples, int64_t seq_len, int32_t pad_id) {
  std::vector<TokenBatch> rows;
  TokenBatch row;
  auto start_row = [&] {
    row = TokenBatch();
    row.B = 1;
    row.T = seq_len;
  };
  auto finish_row = [&] {
    const int64_t used = static_cast<int64_t>(row.ids.size());
    for (int64_t t = used; t < seq_len; ++t) {  // padding: its own document, never trained
      row.ids.push_back(pad_id);
      row.targets.push_back(ops::kIgnoreIndex);
      row.pos.push_back(static_cast<int32_t>(t - used));
      row.doc_start.push_back(static_cast<int32_t>(used));
    }
    rows.push_back(std::move(row));
  };
  start_row();
  for (const SftExample& ex : examples) {
    const int64_t n = static_cast<int64_t>(ex.ids.size());
    if (n == 0) continue;
    LLMKIT_CHECK(n <= seq_len, kInvalidArgument, "an SFT example of ", n, " tokens does not fit a row of ", seq_len,
                 "; cut examples to the row length first (load_sft does)");
    if (static_cast<int64_t>(row.ids.size()) + n > seq_len) {
      finish_row();
      start_row();
    }
    const int32_t start = static_cast<int32_t>(row.ids.size());
    for (int64_t i = 0; i < n; ++i) {
      row.ids.push_back(ex.ids[static_cast<size_t>(i)]);
      const bool has_next = i + 1 < n && ex.trained[static_cast<size_t>(i + 1)];
      row.targets.push_back(has_next ? ex.ids[static_cast<size_t>(i + 1)] : ops::kIgnoreIndex);
      row.pos.push_back(static_cast<int32_t>(i));
      row.doc_start.push_back(start);
    }
  }
  if (!row.ids.empty()) finish_row();
  return rows;
}

SftSampler::SftSampler(std::vector<TokenBatch> rows, int64_t batch, uint64_t seed, bool shuffle)
    : rows_(std::move(rows)), batch_(batch), order_(static_cast<int64_t>(rows_.size()), seed, shuffle) {
  LLMKIT_CHECK(!rows_.empty(), kInvalidArgument, "no SFT examples to train on");
  LLMKIT_CHECK(batch_ >= 1, kInvalidArgument, "--batch ", batch_, " must be >= 1");
}

TokenBatch SftSampler::next() {
  TokenBatch b;
  b.B = batch_;
  b.T = rows_[0].T;
  for (int64_t i = 0; i < batch_; ++i) {
    const TokenBatch& row = rows_[static_cast<size_t>(order_.next())];
    b.ids.insert(b.ids.end(), row.ids.begin(), row.ids.end());
    b.targets.insert(b.targets.end(), row.targets.begin(), row.targets.end());
    b.pos.insert(b.pos.end(), row.pos.begin(), row.pos.end());
    b.doc_start.insert(b.doc_start.end(), row.doc_start.begin(), row.doc_start.end());
  }
  return b;
}

}  // namespace llmkit::train

// `llmkit tokenize`: text -> ids and pieces with a model's own tokenizer (GGUF file, tokenizer.json
// or Hugging Face folder), or `--ids "1 2 3"` -> text. Text "-" (or none) is read from stdin.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include "commands.h"
#include "llmkit/error.h"
#include "llmkit/tokenizer.h"

namespace llmkit::cli {

namespace {
// Printable form of a token: control characters and quotes escaped, the rest as UTF-8.
std::string escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out;
}
}  // namespace

int run_tokenize(const std::string& model_flag, const std::string& text_flag, bool decode_ids, bool no_special) {
  const std::string model = model_flag.empty() ? default_model_path() : model_flag;
  Tokenizer tok = Tokenizer::load(model);
  std::string text = text_flag;
  if (text.empty() || text == "-") text.assign(std::istreambuf_iterator<char>(std::cin), {});
  std::fprintf(stderr, "tokenizer: %s, %lld tokens (%s)\n", tok.kind().c_str(),
               static_cast<long long>(tok.n_vocab()), model.c_str());
  if (decode_ids) {
    std::vector<int32_t> ids;
    std::string cleaned = text;
    for (char& c : cleaned)
      if (c == ',' || c == '[' || c == ']') c = ' ';
    std::istringstream in(cleaned);
    std::string word;
    while (in >> word) {
      long long v = 0;
      size_t used = 0;
      try {
        v = std::stoll(word, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != word.size() || v < 0 || v >= tok.n_vocab())
        throw Error(ErrorCode::kInvalidArgument,
                    "--ids: \"" + word + "\" is not a token id in [0, " + std::to_string(tok.n_vocab()) + ")",
                    "pass ids separated by spaces or commas, e.g. --ids \"1 2 3\"");
      ids.push_back(static_cast<int32_t>(v));
    }
    std::printf("%s\n", tok.decode(ids, no_special).c_str());
    return kExitOk;
  }
  const std::vector<int32_t> ids = tok.encode(text, !no_special);
  for (int32_t id : ids) {
    std::vector<int32_t> one{id};
    std::printf("%8d  %-24s \"%s\"\n", id, escape(tok.piece(id)).c_str(), escape(tok.decode(one, false)).c_str());
  }
  std::printf("%zu tokens: [", ids.size());
  for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? ", " : "", ids[i]);
  std::printf("]\n");
  return kExitOk;
}

}  // namespace llmkit::cli

// libFuzzer target for the chat-template parser and interpreter: the input is a template, rendered
// on a fixed multi-turn conversation (system prompt, Chinese and emoji, a tool call) with tools.
// Any input must either render or throw llmkit::Error; crashes, sanitizer reports, hangs and
// out-of-memory are bugs. The caps are lowered so each input finishes in milliseconds.
//
//   clang++ -std=c++20 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
//     fuzz/fuzz_chat_template.cc src/llmkit/tokenizer/jinja_*.cc src/llmkit/tokenizer/chat_template.cc \
//     src/llmkit/base/check.cc -o fuzz_chat_template
//   ./fuzz_chat_template fuzz/corpus/chat_template -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "llmkit/error.h"
#include "llmkit/tokenizer/chat_template.h"

namespace {

const nlohmann::ordered_json& conversation() {
  static const nlohmann::ordered_json msgs = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "你好 🌍 {{ x }}"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call12345", "type": "function",
      "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "22C"},
    {"role": "user", "content": [{"type": "text", "text": "thanks"}, {"type": "image"}]}
  ])");
  return msgs;
}

const nlohmann::ordered_json& extra() {
  static const nlohmann::ordered_json e = nlohmann::ordered_json::parse(R"({
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    "enable_thinking": true
  })");
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  llmkit::tokenizer::ChatTemplateOptions opts;
  opts.limits.max_depth = 100;
  opts.limits.max_steps = 50'000;
  opts.limits.max_output_bytes = 1u << 20;
  opts.limits.max_list_items = 10'000;
  opts.now = 1785069000;
  try {
    llmkit::tokenizer::ChatTemplate t(std::string(reinterpret_cast<const char*>(data), size), "<s>", "</s>", opts);
    t.render(conversation(), true, extra());
    t.render(conversation(), false);
  } catch (const llmkit::Error&) {
    // expected for malformed templates and caps
  }
  return 0;
}

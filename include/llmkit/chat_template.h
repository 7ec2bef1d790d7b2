// Public API: render a model's chat template (the CLI's `chat` uses it). The sandboxed Jinja
// interpreter behind it lives in src/llmkit/tokenizer (chat_template.h has the full options).
#pragma once

#include <string>
#include <vector>

namespace llmkit {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", ...
  std::string content;
};

// Renders `template_source` (the model's Jinja chat template) for `messages` exactly as
// transformers' apply_chat_template does. Throws llmkit::Error on a template syntax error, a
// raise_exception() in the template (e.g. a system message the model does not support), or a
// sandbox cap (recursion depth, steps, output size).
std::string render_chat_template(const std::string& template_source, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt, const std::string& bos_token = "",
                                 const std::string& eos_token = "");

}  // namespace llmkit

// ChatTemplate: a model's Jinja chat template (tokenizer_config.json `chat_template` or GGUF
// `tokenizer.chat_template`), parsed once and rendered per conversation by the sandboxed
// interpreter in jinja_*.{h,cc}. Rendering matches transformers' apply_chat_template byte for
// byte: the template sees `messages`, `add_generation_prompt`, `bos_token`, `eos_token`,
// `tools` and `documents` (None unless given), plus any extra variables, exactly as
// transformers.utils.chat_template_utils.render_jinja_template passes them.
//
// Templates are code. A model's own template is trusted as much as the model file, and still runs
// under the sandbox caps; a template sent with a request is refused unless
// ChatTemplateOptions::allow_request_templates is set (see select_chat_template).
#pragma once

#include <ctime>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "llmkit/tokenizer/jinja_interp.h"

namespace llmkit::tokenizer {

struct ChatTemplateOptions {
  jinja::Limits limits;                 // recursion depth, steps, output size (see jinja_interp.h)
  size_t max_template_bytes = 1u << 20;  // real templates are < 64 KiB
  std::time_t now = 0;                  // strftime_now's clock (UTC); 0 = the real local time
  bool allow_request_templates = false;  // accept a template sent with a request (off: code from clients)
};

class ChatTemplate {
 public:
  // Parses `source`; throws llmkit::Error (kInvalidArgument, with the line) on a syntax error, and
  // when the template exceeds max_template_bytes.
  ChatTemplate(std::string source, std::string bos_token, std::string eos_token, ChatTemplateOptions opts = {});
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // messages: a JSON array of {"role", "content"} objects; content is a string or a list of
  // {"type": "text", "text": ...} parts (other keys such as tool_calls pass through to the
  // template). extra: a JSON object of more template variables (tools, documents, date_string,
  // enable_thinking, ...). Throws llmkit::Error on raise_exception() in the template (message
  // verbatim), a sandbox cap, or a runtime error (undefined attribute, bad operand, ...).
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::string bos_token_;
  std::string eos_token_;
  ChatTemplateOptions opts_;
  std::unique_ptr<jinja::Program> program_;
};

// The template to use for a request: the model's own, unless the request carries one and
// opts.allow_request_templates is set. A request template when it is off is a kInvalidArgument
// error (so a client learns why, instead of silently getting the model's template).
const std::string& select_chat_template(const std::string& model_template, const std::string& request_template,
                                        const ChatTemplateOptions& opts);

}  // namespace llmkit::tokenizer

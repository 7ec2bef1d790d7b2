// ChatTemplate: parse once, render per conversation (see chat_template.h), and the public
// llmkit::render_chat_template wrapper for the CLI.
#include "llmkit/tokenizer/chat_template.h"

#include "llmkit/base/check.h"
#include "llmkit/chat_template.h"

namespace llmkit::tokenizer {

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token, ChatTemplateOptions opts)
    : source_(std::move(source)), bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)), opts_(opts) {
  LLMKIT_CHECK(source_.size() <= opts_.max_template_bytes, kInvalidArgument, "chat template of ", source_.size(),
               " bytes exceeds the template size cap (max_template_bytes=", opts_.max_template_bytes, ")");
  program_ = jinja::parse_template(source_, opts_.limits.max_depth);
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra) const {
  LLMKIT_CHECK(messages.is_array(), kInvalidArgument, "chat messages must be a JSON array, got ", messages.type_name());
  for (const auto& m : messages)
    LLMKIT_CHECK(m.is_object(), kInvalidArgument, "each chat message must be a JSON object, got ", m.type_name());
  LLMKIT_CHECK(extra.is_object() || extra.is_null(), kInvalidArgument,
               "extra template variables must be a JSON object, got ", extra.type_name());
  // The variables transformers' render_jinja_template passes (tools/documents are None unless given).
  std::map<std::string, jinja::Value> context;
  context["messages"] = jinja::Value::from_json(messages);
  context["tools"] = jinja::Value::none();
  context["documents"] = jinja::Value::none();
  context["add_generation_prompt"] = jinja::Value::boolean(add_generation_prompt);
  context["bos_token"] = jinja::Value::string(bos_token_);
  context["eos_token"] = jinja::Value::string(eos_token_);
  if (extra.is_object())
    for (const auto& [k, v] : extra.items()) context[k] = jinja::Value::from_json(v);
  jinja::RenderOptions ro;
  ro.limits = opts_.limits;
  ro.now = opts_.now;
  jinja::Interpreter interp(ro);
  return interp.render(*program_, context);
}

const std::string& select_chat_template(const std::string& model_template, const std::string& request_template,
                                        const ChatTemplateOptions& opts) {
  if (request_template.empty()) return model_template;
  LLMKIT_CHECK(opts.allow_request_templates, kInvalidArgument,
               "this server does not accept chat templates sent with requests (they are code); "
               "drop the template from the request, or start the server with request templates allowed");
  return request_template;
}

}  // namespace llmkit::tokenizer

namespace llmkit {

std::string render_chat_template(const std::string& template_source, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt, const std::string& bos_token,
                                 const std::string& eos_token) {
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
  tokenizer::ChatTemplate t(template_source, bos_token, eos_token);
  return t.render(msgs, add_generation_prompt);
}

}  // namespace llmkit

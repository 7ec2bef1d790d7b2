// LLM: model + tokenizer + chat template + generator behind the public API of llmkit/llm.h.
#include "llmkit/llm.h"

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/base/thread_pool.h"
#include "llmkit/io/hf_folder.h"
#include "llmkit/models/transformer.h"
#include "llmkit/runtime/generate.h"
#include "llmkit/tokenizer.h"

namespace llmkit {

void set_threads(int n_threads) { ThreadPool::set_global_threads(n_threads); }

struct LLM::Impl {
  std::unique_ptr<models::Transformer> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<runtime::Generator> generator;
  std::string chat_template, bos, eos;
  std::vector<int32_t> stop_tokens;

  Completion run(const std::vector<int32_t>& prompt, const GenerationParams& p, const StreamCallbacks& cb) {
    runtime::GenerateOptions opts;
    opts.max_tokens = p.max_tokens;
    opts.sampling.temperature = p.temperature;
    opts.sampling.top_k = p.top_k;
    opts.sampling.top_p = p.top_p;
    opts.sampling.min_p = p.min_p;
    opts.sampling.repeat_penalty = p.repeat_penalty;
    opts.sampling.presence_penalty = p.presence_penalty;
    opts.sampling.frequency_penalty = p.frequency_penalty;
    opts.sampling.seed = p.seed;
    opts.stop = p.stop;
    opts.stop_tokens = stop_tokens;
    auto dec = std::make_shared<Tokenizer::StreamDecoder>(tokenizer->stream_decoder(true));
    runtime::Detokenizer detok{[dec](int32_t id) { return dec->push(id); }, [dec] { return dec->flush(); }};
    runtime::GenerateHooks hooks;
    hooks.on_text = cb.on_text;
    hooks.should_stop = cb.should_stop;
    runtime::GenerateResult r = generator->generate(prompt, opts, detok, hooks);
    Completion c;
    c.text = std::move(r.text);
    c.finish_reason = runtime::finish_reason_name(r.finish);
    c.prompt_tokens = r.n_prompt;
    c.prompt_tokens_reused = r.n_prompt_reused;
    c.completion_tokens = static_cast<int64_t>(r.tokens.size());
    c.prefill_seconds = r.prefill_seconds;
    c.decode_seconds = r.decode_seconds;
    return c;
  }
};

LLM::LLM(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LLM::~LLM() = default;

std::unique_ptr<LLM> LLM::load(const std::string& path, int64_t n_ctx) {
  auto impl = std::make_unique<Impl>();
  impl->model = models::Transformer::load(path);
  LLMKIT_CHECK(!impl->model->is_encoder(), kUnsupported, "model '", path, "' is an encoder (",
               models::family_name(impl->model->config().family), "): it embeds text but does not generate it",
               "; pass a decoder model (LLaMA, Qwen2, Gemma, ...)");
  impl->tokenizer = std::make_unique<Tokenizer>(Tokenizer::load(path));
  LLMKIT_CHECK(impl->tokenizer->n_vocab() <= impl->model->config().n_vocab, kInvalidFile, "the tokenizer of '", path,
               "' has ", impl->tokenizer->n_vocab(), " tokens but the model only ", impl->model->config().n_vocab);
  impl->chat_template = impl->model->weights().chat_template();
  if (auto b = impl->tokenizer->bos_id()) impl->bos = impl->tokenizer->piece(*b);
  if (auto e = impl->tokenizer->eos_id()) {
    impl->eos = impl->tokenizer->piece(*e);
    impl->stop_tokens.push_back(*e);
  }
  // End-of-turn tokens of the common chat formats (ChatML, Llama-3, Gemma, Phi-3, DeepSeek).
  for (const char* eot : {"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>",
                          "<｜end▁of▁sentence｜>"}) {
    if (auto id = impl->tokenizer->token_to_id(eot)) {
      if (std::find(impl->stop_tokens.begin(), impl->stop_tokens.end(), *id) == impl->stop_tokens.end())
        impl->stop_tokens.push_back(*id);
    }
  }
  if (n_ctx <= 0) n_ctx = std::min<int64_t>(impl->model->config().n_ctx, 4096);
  LLMKIT_CHECK(n_ctx <= impl->model->config().n_ctx, kInvalidArgument, "context size ", n_ctx, " exceeds the ",
               impl->model->config().n_ctx, " positions the model was trained for");
  impl->generator = std::make_unique<runtime::Generator>(*impl->model, n_ctx);
  return std::unique_ptr<LLM>(new LLM(std::move(impl)));
}

Completion LLM::complete(const std::string& prompt, const GenerationParams& params, const StreamCallbacks& cb) {
  std::vector<int32_t> ids = impl_->tokenizer->encode(prompt, true);
  LLMKIT_CHECK(!ids.empty(), kInvalidArgument, "the prompt is empty; give some text with -p");
  return impl_->run(ids, params, cb);
}

Completion LLM::chat(const std::vector<ChatMessage>& messages, const GenerationParams& params,
                     const StreamCallbacks& cb) {
  LLMKIT_CHECK(!impl_->chat_template.empty(), kUnsupported, "this model has no chat template; use `llmkit run`");
  std::string text = render_chat_template(impl_->chat_template, messages, true, impl_->bos, impl_->eos);
  // As transformers' apply_chat_template(tokenize=True): the template already holds the special tokens.
  std::vector<int32_t> ids = impl_->tokenizer->encode(text, false);
  return impl_->run(ids, params, cb);
}

void LLM::reset() { impl_->generator->reset(); }

int64_t LLM::n_ctx() const { return impl_->generator->n_ctx(); }

std::string LLM::describe() const {
  const auto& hp = impl_->model->config();
  const uint64_t params = impl_->model->weights().n_params();
  return str_cat(models::family_name(hp.family), " (", hp.hf_model_type, "), ", params / 1e6, "M params, ", hp.n_layers, " layers, ctx ", n_ctx(), ", ",
                 impl_->tokenizer->kind(), " tokenizer (", impl_->tokenizer->n_vocab(), " tokens)");
}

}  // namespace llmkit

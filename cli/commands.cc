// The subcommand table. Flags are declared for every planned subcommand so that `--help` already
// teaches the interface; a subcommand whose engine is not built yet says so and exits 3.
#include "commands.h"

#include "llmkit/train.h"

#include <cstdio>
#include <cstdlib>

namespace llmkit::cli {

// cli/cmd_tokenize.cc
int run_tokenize(const std::string& model, const std::string& text, bool decode_ids, bool no_special);

int run_convert(const std::string& in, const std::string& out, const std::string& type);  // cmd_convert.cc

namespace {
std::function<int()> not_built(const char* name, const char* lands_with) {
  return [name, lands_with] {
    std::fprintf(stderr,
                 "llmkit %s is not built yet: it lands with %s.\n"
                 "Nothing was done. `llmkit --help` lists the subcommands; `llmkit --version` shows the build.\n",
                 name, lands_with);
    return kExitNotBuilt;
  };
}


// `train` and `finetune` share the training flags; finetune adds -m/--method/--data for SFT and
// sets task = sft. Each flag given becomes a config override (name with '_' for '-').
std::function<int()> add_train_flags(CLI::App& app, bool finetune) {
  auto c = std::make_shared<TrainCli>();
  app.add_option("--config", c->config, "Training config: .json, .yaml or .toml with the long flag names below (- as _) as keys; flags override it");
  struct Flag {
    const char* name;
    const char* help;
  };
  static const Flag kFlags[] = {
      {"model", "Model to start from: GGUF file or Hugging Face folder (default: the installed SmolLM2)"},
      {"data", "lm: prepared data folder (llmkit data prepare); sft: JSONL of chats ({\"messages\": [...]}) or "
               "Alpaca records"},
      {"out", "Run folder: checkpoints/, metrics.jsonl, loss.svg, export/"},
      {"task", "lm (next-token on prepared data) | sft (chat/instruction JSONL, assistant tokens only, packed)"},
      {"val-fraction", "sft: share of examples held out for the validation loss (default 0)"},
      {"seq-len", "Tokens per sequence (default 256)"},
      {"batch", "Sequences per micro-batch (default 4)"},
      {"grad-accum", "Micro-batches per optimizer step (default 1)"},
      {"steps", "Optimizer steps in all (default 100)"},
      {"warmup", "Linear warmup steps (default 10)"},
      {"lr", "Peak learning rate (default 3e-4)"},
      {"min-lr-ratio", "Final LR as a fraction of the peak (default 0.1)"},
      {"schedule", "cosine | linear | constant after the warmup (default cosine)"},
      {"optimizer", "adamw | sgd (SGD with momentum, PyTorch's rule) (default adamw)"},
      {"momentum", "SGD momentum (default 0.9)"},
      {"precision", "f32 | bf16 | f16: matmul compute precision, F32 master weights (f16 with dynamic loss "
                    "scaling) (default f32)"},
      {"loss-scale", "f16: initial loss scale (default 65536)"},
      {"scale-window", "f16: good steps before the loss scale doubles (default 2000)"},
      {"recompute", "true: recompute each layer's activations in the backward (memory of one layer, ~1/3 more "
                    "compute) (default false)"},
      {"weight-decay", "AdamW decoupled weight decay on matrices; SGD: L2 added to the gradient (default 0.1)"},
      {"beta1", "AdamW beta1 (default 0.9)"},
      {"beta2", "AdamW beta2 (default 0.95)"},
      {"eps", "AdamW epsilon (default 1e-8)"},
      {"clip", "Clip gradients to this global norm; 0 = off (default 1.0)"},
      {"eval-every", "Validation loss every N steps; 0 = off (default 50)"},
      {"eval-batches", "Validation micro-batches (default 4)"},
      {"save-every", "Checkpoint every N steps (and at the end) (default 100)"},
      {"keep", "Checkpoints kept; 0 = all (default 3)"},
      {"seed", "Seed of the data order (default 1234)"},
      {"resume", "true: continue from the newest checkpoint in the run folder (default)"},
      {"export-model", "true: write export/hf and export/model.gguf at the end (default)"},
  };
  auto store = std::make_shared<std::vector<std::string>>(std::size(kFlags));
  auto method = std::make_shared<std::string>("full");
  for (size_t i = 0; i < std::size(kFlags); ++i) {
    const std::string name = kFlags[i].name;
    if (finetune && name == "task") continue;
    std::string flag = "--" + name;
    if (finetune && name == "model") flag = "-m,--model";
    app.add_option(flag, (*store)[i], kFlags[i].help);
  }
  if (finetune)
    app.add_option("--method", *method, "full (supervised fine-tuning of every weight) | lora | qlora | adalora | prefix | "
                                        "prompt | ptuning | adapter")->capture_default_str();
  return [c, store, method, finetune, &app] {
    if (finetune) {
      if (*method != "full") return not_built(("finetune --method " + *method).c_str(), "the PEFT work")();
      c->overrides.emplace_back("task", "sft");
    }
    for (size_t i = 0; i < std::size(kFlags); ++i) {
      if (finetune && std::string(kFlags[i].name) == "task") continue;
      if (app.count(std::string("--") + kFlags[i].name) == 0) continue;
      std::string key = kFlags[i].name;
      for (char& ch : key)
        if (ch == '-') ch = '_';
      c->overrides.emplace_back(key, (*store)[i]);
    }
    return run_train(*c);
  };
}

void add_model_flag(CLI::App& app, std::string& model) {
  app.add_option("-m,--model", model, "GGUF file or Hugging Face folder (default: the installed SmolLM2-135M-Instruct)");
}

void add_sampling(CLI::App& app, Sampling& s) {
  add_model_flag(app, s.model);
  app.add_option("-n,--n-predict", s.n_predict, "Maximum tokens to generate")->check(CLI::Range(1, 1 << 20));
  app.add_option("--temp", s.temperature, "Sampling temperature; 0 = greedy")->check(CLI::Range(0.0f, 100.0f));
  app.add_option("--top-k", s.top_k, "Keep the k most likely tokens; 0 = off")->check(CLI::Range(0, 1 << 20));
  app.add_option("--top-p", s.top_p, "Nucleus sampling mass")->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--min-p", s.min_p, "Drop tokens below min-p x the top probability")->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--repeat-penalty", s.repeat_penalty, "Repetition penalty; 1 = off")->check(CLI::Range(0.0f, 10.0f));
  app.add_option("--presence-penalty", s.presence_penalty, "Subtract this from the logit of every token already seen (OpenAI); 0 = off")
      ->check(CLI::Range(-2.0f, 2.0f));
  app.add_option("--frequency-penalty", s.frequency_penalty, "Subtract this times the token's count so far (OpenAI); 0 = off")
      ->check(CLI::Range(-2.0f, 2.0f));
  app.add_option("--seed", s.seed, "Random seed; -1 = random");
  app.add_flag("--verbose", s.verbose, "Print timing (tokens/s) to stderr after each answer");
  app.add_option("--stop", s.stop, "Stop string (repeatable)");
  app.add_option("-c,--ctx-size", s.ctx, "Context length in tokens; 0 = the model's, at most 4096")->check(CLI::Range(0, 1 << 22));
  app.add_option("-t,--threads", s.threads, "CPU threads; 0 = all cores")->check(CLI::Range(0, 1024));
}

const std::vector<Command> kCommands = {
    {"run", "Complete a prompt once and print the completion",
     [](CLI::App& app) {
       auto s = std::make_shared<Sampling>();
       add_sampling(app, *s);
       app.add_option("-p,--prompt", s->prompt, "The prompt (use - to read it from standard input)")->required();
       return std::function<int()>([s] { return run_generate(*s, false); });
     }},
    {"chat", "Interactive multi-turn chat with the model's chat template",
     [](CLI::App& app) {
       auto s = std::make_shared<Sampling>();
       add_sampling(app, *s);
       app.add_option("-s,--system", s->system, "System prompt");
       app.add_option("-p,--prompt", s->prompt, "Answer this one message and exit");
       return std::function<int()>([s] { return run_generate(*s, true); });
     }},
    {"serve", "OpenAI-compatible HTTP server with continuous batching",
     [](CLI::App& app) {
       auto f = std::make_shared<ServeFlags>();
       add_model_flag(app, f->model);
       app.add_option("--host", f->host, "Address to bind (default 127.0.0.1: loopback only)");
       app.add_option("--port", f->port, "TCP port; 0 = any free port")->check(CLI::Range(0, 65535));
       app.add_option("--alias", f->model_name, "Model id clients pass as \"model\" (default: the file name)");
       app.add_option("-P,--parallel", f->parallel, "Slots: sequences decoded together")->check(CLI::Range(1, 256));
       app.add_option("-c,--ctx-size", f->ctx, "Context per slot in tokens; 0 = the model's, at most 4096")->check(CLI::Range(0, 1 << 22));
       app.add_option("-b,--batch-size", f->batch_size, "Most tokens per forward pass (prompt chunks + decodes)")->check(CLI::Range(1, 1 << 20));
       app.add_option("--kv-type", f->kv_type, "KV cache values: f16 (half the memory) or f32")
           ->check(CLI::IsMember({"f16", "f32"}))->capture_default_str();
       app.add_option("--queue", f->queue, "Requests that may wait for a slot; beyond that: HTTP 429")->check(CLI::Range(0, 65536));
       app.add_option("--api-key", f->api_key, "Require 'Authorization: Bearer KEY' on /v1/* (or set LLMKIT_API_KEY)");
       app.add_option("-t,--threads", f->threads, "CPU threads; 0 = all cores")->check(CLI::Range(0, 1024));
       app.add_flag("--verbose", f->verbose, "One line per request on stderr");
       return std::function<int()>([f] { return run_serve(*f); });
     }},
    {"train", "Train a model on prepared data (AdamW, warmup + cosine, checkpoints, resume, export)",
     [](CLI::App& app) { return add_train_flags(app, false); }},
    {"data", "Prepare training data: tokenize a text or JSONL corpus into token shards",
     [](CLI::App& app) {
       auto o = std::make_shared<DataPrepareOptions>();
       CLI::App* prep = app.add_subcommand("prepare", "Stream a corpus through a tokenizer into token shards + index.json");
       prep->add_option("-i,--input", o->input, "Corpus: .jsonl (one JSON object per line) or plain text (documents "
                                                "separated by blank lines)")->required();
       prep->add_option("-o,--out", o->out_dir, "Output folder (index.json + train-*.bin, val-*.bin)")->required();
       prep->add_option("-m,--model", o->tokenizer, "Tokenizer: GGUF file, Hugging Face folder or tokenizer.json "
                                                    "(default: the installed SmolLM2-135M-Instruct)");
       prep->add_option("--field", o->field, "JSONL field holding each document's text")->capture_default_str();
       prep->add_option("--separator", o->separator, "Token after each document: a token (\"<|endoftext|>\") or an id; "
                                                     "default: the tokenizer's end-of-sequence token");
       prep->add_option("--val-fraction", o->val_fraction, "Share of documents for the validation split")
           ->check(CLI::Range(0.0, 0.999))->capture_default_str();
       prep->add_option("--seed", o->seed, "Seed of the train/validation split")->capture_default_str();
       prep->add_option("--shard-tokens", o->shard_tokens, "Most tokens per shard file")
           ->check(CLI::Range(int64_t{1024}, int64_t{1} << 32))->capture_default_str();
       app.require_subcommand(1);
       return std::function<int()>([o] { return run_data_prepare(*o); });
     }},
    {"finetune", "Fine-tune a model on chat/instruction JSONL: full (SFT); LoRA, QLoRA, AdaLoRA, prefix/prompt tuning, adapters",
     [](CLI::App& app) { return add_train_flags(app, true); }},
    {"quantize", "Quantize a model: GGUF types, LLM.int8, SmoothQuant, GPTQ, AWQ",
     [](CLI::App& app) {
       static std::string in, out, type = "q4_k";
       app.add_option("input", in, "Model to quantize");
       app.add_option("output", out, "Output file or folder");
       app.add_option("--type", type, "q4_0 | q4_1 | q5_0 | q5_1 | q8_0 | q2_k..q6_k | gptq | awq | int8 | smoothquant");
       return not_built("quantize", "the compression work");
     }},
    {"eval", "Evaluate: perplexity, benchmarks, BLEU/ROUGE, pairwise judging and Elo",
     [](CLI::App& app) {
       static std::string model, task;
       add_model_flag(app, model);
       app.add_option("--task", task, "perplexity | mmlu | ceval | cmmlu | bleu | rouge | judge");
       return not_built("eval", "the evaluation work");
     }},
    {"distill", "Distill a teacher into a student (forward/reverse KL, on-policy GKD)",
     [](CLI::App& app) {
       static std::string teacher, student;
       app.add_option("--teacher", teacher, "Teacher model");
       app.add_option("--student", student, "Student model");
       return not_built("distill", "the distillation work");
     }},
    {"rlhf", "Align a model: reward model + PPO, DPO, GRPO",
     [](CLI::App& app) {
       static std::string model, method = "dpo", data;
       add_model_flag(app, model);
       app.add_option("--method", method, "reward | ppo | dpo | grpo");
       app.add_option("--data", data, "Preference or prompt data (JSONL)");
       return not_built("rlhf", "the alignment work");
     }},
    {"rag", "Retrieval-augmented generation over a persistent vector index",
     [](CLI::App& app) {
       static std::string index, add;
       app.add_option("--index", index, "Index folder");
       app.add_option("--add", add, "Documents to add (files or folder)");
       return not_built("rag", "the applications work");
     }},
    {"convert", "Convert between Hugging Face folders and GGUF, optionally quantizing",
     [](CLI::App& app) {
       static std::string in, out, type;
       static bool random_init = false;
       static uint64_t seed = 0;
       app.add_option("input", in, "HF folder (-> GGUF) or GGUF file (-> HF folder); with --random-init, a config.json")->required();
       app.add_option("output", out, "GGUF file, or a new HF folder")->required();
       app.add_option("--type", type, "f32 | f16 | bf16 | q8_0 | q4_0 | q4_1 | q4_k | q5_k | q6_k (to a folder: f32 | f16 | bf16); "
                                      "default: keep each tensor's type");
       app.add_flag("--random-init", random_init,
                    "Write a model with random weights for the architecture of the config.json given as input (training "
                    "from scratch, benchmarks); its vocabulary is a stand-in");
       app.add_option("--seed", seed, "Random seed for --random-init");
       return std::function<int()>([] { return random_init ? run_random_init(in, out, type, seed) : run_convert(in, out, type); });
     }},
    {"inspect", "Show a model's architecture, tensors, tokenizer and chat template",
     [](CLI::App& app) {
       static std::string path;
       static bool all = false;
       app.add_option("path", path, "GGUF file, Hugging Face folder or .safetensors file")->required();
       app.add_flag("--all", all, "List every tensor");
       return std::function<int()>([] { return run_inspect(path, all); });
     }},
    {"tokenize", "Tokenize text (or decode ids) with a model's tokenizer",
     [](CLI::App& app) {
       static std::string model, text;
       static bool ids = false, no_special = false;
       add_model_flag(app, model);
       app.add_option("text", text, "Text to tokenize (\"-\" or nothing: read stdin)");
       app.add_flag("--ids", ids, "Treat the input as token ids and decode them");
       app.add_flag("--no-special", no_special,
                    "Encode without the model's BOS/EOS tokens; with --ids, drop special tokens from the text");
       return std::function<int()>([] { return run_tokenize(model, text, ids, no_special); });
     }},
    {"logits", "Write a model's logits for given input ids (parity tool)",
     [](CLI::App& app) {
       static std::string model, in, out;
       static int threads = 0;
       add_model_flag(app, model);
       app.add_option("--input", in, "safetensors with int64 input_ids [B,T]")->required();
       app.add_option("--out", out, "safetensors to write float32 logits [B,T,V] (encoders: last_hidden_state [B,T,D])")
           ->required();
       app.add_option("-t,--threads", threads, "CPU threads; 0 = all cores")->check(CLI::Range(0, 1024));
       return std::function<int()>([] { return run_logits(model, in, out, threads); });
     }},
    {"grads", "Write every parameter's gradient of the LM loss (parity tool)",
     [](CLI::App& app) {
       static std::string model, in, out;
       add_model_flag(app, model);
       app.add_option("--input", in, "safetensors with int64 input_ids [B,T]")->required();
       app.add_option("--out", out, "safetensors to write gradients and loss")->required();
       return std::function<int()>([] {
         const GradsFileResult r = grads_file(model.empty() ? default_model_path() : model, in, out);
         std::printf("%s: loss %.6f over %lld x %lld tokens, %lld gradients (Hugging Face names), %.2f s\n", out.c_str(),
                     r.loss, static_cast<long long>(r.batch), static_cast<long long>(r.tokens),
                     static_cast<long long>(r.n_gradients), r.seconds);
         return kExitOk;
       });
     }},
    {"bench", "Measure prompt-processing and decode speed (tokens/s)",
     [](CLI::App& app) {
       static std::string model;
       static int p = 512, n = 128, reps = 5, ub = 0;
       static std::string kv = "f32";
       static std::vector<int> t;
       static bool json = false;
       add_model_flag(app, model);
       app.add_option("-p,--n-prompt", p, "Prompt tokens (pp test); 0 = skip")->check(CLI::Range(0, 1 << 20));
       app.add_option("-n,--n-gen", n, "Generated tokens (tg test); 0 = skip")->check(CLI::Range(0, 1 << 20));
       app.add_option("-t,--threads", t, "CPU threads, repeatable or a comma list (1,2); 0 = all cores")
           ->delimiter(',');
       app.add_option("-r,--repetitions", reps, "Timed repetitions per test")->check(CLI::Range(1, 1000));
       app.add_option("--ubatch-size,--ub", ub, "Rows per forward pass (prompts run in micro-batches); 0 = the default (128 quantized, 512 dense)")
           ->check(CLI::Range(0, 1 << 20));
       app.add_option("--kv-type", kv, "KV cache values: f32 or f16")->check(CLI::IsMember({"f32", "f16"}))->capture_default_str();
       app.add_flag("--json", json, "Print the rows as JSON (with every sample) instead of the table");
       return std::function<int()>([] { return run_bench(model, p, n, t, reps, ub, kv, json); });
     }},
    {"perplexity", "Perplexity of a text file (llama.cpp's chunking, comparable numbers)",
     [](CLI::App& app) {
       static std::string model, file;
       static int ctx = 512, chunks = 0, threads = 0;
       add_model_flag(app, model);
       app.add_option("-f,--file", file, "Text file to score")->required();
       app.add_option("-c,--ctx-size", ctx, "Tokens per chunk")->check(CLI::Range(16, 1 << 20));
       app.add_option("--chunks", chunks, "Score at most this many chunks; 0 = all")->check(CLI::Range(0, 1 << 30));
       app.add_option("-t,--threads", threads, "CPU threads; 0 = all cores")->check(CLI::Range(0, 1024));
       return std::function<int()>([] { return run_perplexity(model, file, ctx, chunks, threads); });
     }},
    {"plan", "Estimate memory for inference or training before running it",
     [](CLI::App& app) {
       static std::string model;
       add_model_flag(app, model);
       return not_built("plan", "the training work (memory planner)");
     }},
};

}  // namespace

const std::vector<Command>& commands() { return kCommands; }

std::string models_dir() {
  if (const char* home = std::getenv("LLMKIT_HOME"); home && *home) return std::string(home) + "/models";
  const char* h = std::getenv("HOME");
  return std::string(h && *h ? h : ".") + "/.cache/llmkit/models";
}

std::string default_model_path() { return models_dir() + "/SmolLM2-135M-Instruct-Q4_1.gguf"; }

}  // namespace llmkit::cli

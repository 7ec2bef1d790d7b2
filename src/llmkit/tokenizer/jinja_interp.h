// The sandboxed tree-walking interpreter that renders a parsed chat template (jinja_ast.h).
//
// Sandbox: a template sees only the values passed in its context and the few globals jinja2 and
// transformers provide (range, namespace, dict, raise_exception, strftime_now); attribute access
// resolves against the closed value model (jinja_value.h), never against host objects. Every
// render runs under caps, each a typed llmkit::Error (kInvalidArgument) that names the cap:
//   max_depth         nesting of statements, expressions and macro calls (macro recursion)
//   max_steps         statement + expression evaluations + loop iterations
//   max_output_bytes  the rendered output and every string or list built while rendering
// range() is capped at 100000 items, as in jinja2's sandbox (MAX_RANGE), so `range(10**9)` fails
// fast with the same limit transformers has.
#pragma once

#include <cstdint>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "llmkit/tokenizer/jinja_ast.h"
#include "llmkit/tokenizer/jinja_value.h"

namespace llmkit::tokenizer::jinja {

struct Limits {
  int max_depth = 200;
  uint64_t max_steps = 2'000'000;           // a 1000-turn conversation with tools takes ~200k
  size_t max_output_bytes = 16u << 20;      // 16 MiB
  size_t max_list_items = 100'000;          // lists a template builds (range, +, *, append)
};

struct Scope {
  std::map<std::string, Value, std::less<>> vars;
  std::shared_ptr<Scope> parent;
};
using ScopePtr = std::shared_ptr<Scope>;

struct RenderOptions {
  Limits limits;
  std::time_t now = 0;  // strftime_now's clock (UTC); 0 = the real clock (local time)
};

class Interpreter {
 public:
  explicit Interpreter(RenderOptions opts) : opts_(opts) {}

  // Renders `prog` with `context` as its variables (messages, add_generation_prompt, ...).
  std::string render(const Program& prog, const std::map<std::string, Value>& context);

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  struct DepthGuard;

  // statements (jinja_interp.cc)
  Flow exec_list(const StmtList& body, const ScopePtr& scope, std::string* out);
  Flow exec(const Stmt& s, const ScopePtr& scope, std::string* out);
  Flow exec_for(const Stmt& s, const ScopePtr& scope, std::string* out);
  void exec_set(const Stmt& s, const ScopePtr& scope);
  void assign(const ScopePtr& scope, const std::vector<std::string>& targets, const Value& v, int line);
  std::string render_body(const StmtList& body, const ScopePtr& scope);

  // expressions (jinja_interp.cc)
  Value eval(const Expr& e, const ScopePtr& scope);
  Value eval_binary(const Expr& e, const ScopePtr& scope);
  Value eval_compare(const Expr& e, const ScopePtr& scope);
  Value eval_call(const Expr& e, const ScopePtr& scope);
  Value lookup(const std::string& name, const ScopePtr& scope) const;
  Value binary_op(const std::string& op, const Value& a, const Value& b, int line);

  // macros and callables (jinja_interp.cc)
  Value call_value(const Value& fn, std::vector<Value> args, std::vector<std::pair<std::string, Value>> kwargs,
                   int line);
  Value call_macro(const Callable& c, std::vector<Value> args, std::vector<std::pair<std::string, Value>> kwargs,
                   int line);

  // builtins (jinja_builtins.cc)
  Value get_attr(const Value& obj, const std::string& name, int line);
  Value get_item(const Value& obj, const Value& key, int line);
  Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step, int line);
  Value call_builtin(const std::string& name, std::vector<Value>& args,
                     std::vector<std::pair<std::string, Value>>& kwargs, int line);
  // Returns true and sets *out when `name` is a method of obj's kind.
  bool call_method(const Value& obj, const std::string& name, std::vector<Value>& args,
                   std::vector<std::pair<std::string, Value>>& kwargs, int line, Value* out);
  Value apply_filter(const std::string& name, const Value& v, std::vector<Value>& args,
                     std::vector<std::pair<std::string, Value>>& kwargs, int line);
  bool apply_test(const std::string& name, const Value& v, const std::vector<Value>& args, int line);
  bool contains(const Value& container, const Value& item, int line);
  std::string format_string(const std::string& fmt, const std::vector<Value>& args,
                            const std::vector<std::pair<std::string, Value>>& kwargs, int line);
  std::vector<Value> iterate(const Value& v, int line);

  // caps and errors
  void step();
  void check_string_size(size_t n, int line) const;
  void check_list_size(size_t n, int line) const;
  [[noreturn]] void fail(int line, const std::string& msg) const;
  Value make_string(std::string s, int line) const;
  Value make_list(List items, int line) const;

  // Containers a template mutated (list.append, namespace attributes): the only way to build a
  // reference cycle (`xs.append(xs)`, `set ns.me = ns`). render() clears them when it returns,
  // which breaks any cycle so nothing leaks across renders.
  void note_mutation(const std::shared_ptr<List>& l);
  void note_mutation(const std::shared_ptr<Dict>& d);
  std::vector<std::shared_ptr<List>> mutated_lists_;
  std::vector<std::shared_ptr<Dict>> mutated_dicts_;
  std::unordered_set<const void*> mutated_;

  RenderOptions opts_;
  uint64_t steps_ = 0;
  int depth_ = 0;
  const Stmt* pending_caller_ = nullptr;  // the {% call %} block whose macro call is being evaluated
  ScopePtr pending_caller_scope_;
};

}  // namespace llmkit::tokenizer::jinja

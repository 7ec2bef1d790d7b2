// Argument access for builtin filters, tests, methods and functions: positional-or-keyword
// parameters as Python declares them, with typed errors naming the function and template line.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/jinja_value.h"

namespace llmkit::tokenizer::jinja {

class Args {
 public:
  Args(const std::vector<Value>& args, const std::vector<std::pair<std::string, Value>>& kwargs,
       const std::string& fn, int line)
      : args_(args), kwargs_(kwargs), fn_(fn), line_(line) {}

  // Positional argument i, or the keyword argument `name`; null when absent.
  const Value* get(size_t i, const char* name) const {
    if (i < args_.size()) return &args_[i];
    for (const auto& [k, v] : kwargs_)
      if (k == name) return &v;
    return nullptr;
  }
  const Value& required(size_t i, const char* name) const {
    const Value* v = get(i, name);
    if (!v) fail(str_cat("missing argument '", name, "'"));
    return *v;
  }
  std::string str(size_t i, const char* name) const {
    const Value& v = required(i, name);
    if (!v.is_string()) fail(str_cat("argument '", name, "' must be a string, not ", v.type_name()));
    return v.str();
  }
  int64_t integer(size_t i, const char* name, int64_t dflt) const {
    const Value* v = get(i, name);
    if (!v || v->is_none()) return dflt;
    if (!v->is_int() && !v->is_bool()) fail(str_cat("argument '", name, "' must be an integer, not ", v->type_name()));
    return v->as_int();
  }
  bool boolean(size_t i, const char* name, bool dflt) const {
    const Value* v = get(i, name);
    return v ? v->truthy() : dflt;
  }
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(ErrorCode::kInvalidArgument, str_cat("chat template error at line ", line_, ": ", fn_, "(): ", msg));
  }

 private:
  const std::vector<Value>& args_;
  const std::vector<std::pair<std::string, Value>>& kwargs_;
  const std::string& fn_;
  int line_;
};

}  // namespace llmkit::tokenizer::jinja

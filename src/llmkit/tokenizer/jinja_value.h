// The value model of the chat-template interpreter: the only things a template can touch.
//
// Values mirror the Python objects jinja2 sees when transformers renders a chat template (str, int,
// float, bool, None, list, dict, jinja2's Undefined, namespace(), macros and the loop object), and
// their printing follows Python's str()/repr() so output matches byte for byte. There are no host
// objects: attribute access is resolved against this closed set of kinds (jinja_builtins.cc), which
// is what makes the interpreter a sandbox. Strings are immutable and shared, so passing a large
// string around costs a reference count, not a copy; lists and dicts are shared by reference, as
// in Python (list.append through one name is seen through every other).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace llmkit::tokenizer::jinja {

class Value;
struct Stmt;
struct Scope;

using List = std::vector<Value>;

class Dict;

// State of one `for` loop, read through the `loop` variable (loop.index, loop.last, ...).
struct LoopInfo {
  int64_t index0 = 0;
  int64_t length = 0;
  std::shared_ptr<const List> items;  // for previtem / nextitem
};

// Something callable from a template: a macro, the `caller` of a {% call %} block, or a global
// function (range, namespace, raise_exception, strftime_now, dict).
struct Callable {
  enum class Kind { kMacro, kCaller, kBuiltin } kind = Kind::kBuiltin;
  const Stmt* stmt = nullptr;     // kMacro: the {% macro %}; kCaller: the {% call %} statement
  // Where it was defined (the closure). Weak, so that a scope holding its own macros is not a
  // reference cycle; calling a macro whose defining block has ended is an error.
  std::weak_ptr<Scope> scope;
  std::string name;               // for messages, and the builtin's name
};

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace,
                    kLoop, kCallable };

  Value() = default;  // Undefined
  static Value undefined(std::string name = {});
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double f);
  static Value string(std::string s);
  static Value string(std::shared_ptr<const std::string> s);
  static Value list(List items = {});
  static Value list(std::shared_ptr<List> items);
  static Value dict(std::shared_ptr<Dict> d = nullptr);
  static Value ns(std::shared_ptr<Dict> d = nullptr);  // namespace(): a dict with attribute writes
  static Value loop(std::shared_ptr<LoopInfo> info);
  static Value callable(std::shared_ptr<Callable> c);
  static Value from_json(const nlohmann::ordered_json& j, int depth = 0);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }  // not namespaces
  bool is_mapping() const { return kind_ == Kind::kDict || kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::kBool ? (b_ ? 1 : 0) : i_; }  // bool is an int
  double as_double() const;  // int, bool or float
  const std::string& str() const { return *s_; }
  const std::shared_ptr<const std::string>& shared_str() const { return s_; }
  List& items() const { return *list_; }
  const std::shared_ptr<List>& shared_list() const { return list_; }
  Dict& dict_ref() const { return *dict_; }
  const std::shared_ptr<Dict>& shared_dict() const { return dict_; }
  const LoopInfo& loop_info() const { return *loop_; }
  const Callable& fn() const { return *fn_; }
  const std::string& undefined_name() const { return undefined_name_; }

  bool truthy() const;                 // Python bool()
  std::string to_str() const;          // Python str(); Undefined prints as ""
  std::string repr() const;            // Python repr()
  const char* type_name() const;       // Python's type name, for messages

 private:
  Kind kind_ = Kind::kUndefined;
  union {
    bool b_;
    int64_t i_ = 0;
    double f_;
  };
  std::shared_ptr<const std::string> s_;
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<LoopInfo> loop_;
  std::shared_ptr<Callable> fn_;
  std::string undefined_name_;
};

// An insertion-ordered dict with string keys (Python dicts keep insertion order; JSON objects and
// chat-template dicts only ever use string keys, and non-string keys are stringified).
class Dict {
 public:
  const Value* find(const std::string& key) const;
  Value* find(const std::string& key);
  void set(const std::string& key, Value v);
  size_t size() const { return entries_.size(); }
  void clear() {
    entries_.clear();
    index_.clear();
  }
  const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<std::string, Value>> entries_;
  std::map<std::string, size_t, std::less<>> index_;
};

// New lists and dicts. Their deleter frees nested containers iteratively, so dropping a value
// nested a million levels deep (which a template can build in a loop within the step cap) cannot
// overflow the stack. Always create containers through these.
std::shared_ptr<List> new_list(List items = {});
std::shared_ptr<Dict> new_dict();

// Python == between two values (1 == 1.0 == True; lists and dicts compare by content).
bool values_equal(const Value& a, const Value& b, int depth = 0);
// Python < ; sets *ok = false where Python raises TypeError (e.g. str < int).
bool value_less(const Value& a, const Value& b, bool* ok, int depth = 0);

// Python float repr (shortest round-trip digits, "1.0", "1e+16", "inf", "nan").
std::string format_python_float(double f);
// transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None,
// sort_keys=False) and its options. Throws llmkit::Error for values JSON cannot hold (Undefined,
// macros) or nesting deeper than 256.
struct JsonOptions {
  int indent = -1;               // -1: no newlines (indent=None)
  bool ensure_ascii = false;     // escape non-ASCII as \uXXXX (surrogate pairs above U+FFFF)
  bool sort_keys = false;
  std::string item_sep = ", ";   // Python's default separators: (", ", ": "), or (",", ": ") with indent
  std::string key_sep = ": ";
};
std::string to_json(const Value& v, const JsonOptions& opts);

// UTF-8 helpers: Python strings index code points, not bytes.
std::vector<uint32_t> utf8_decode(std::string_view s);
void utf8_append(std::string* out, uint32_t cp);
bool is_python_space(uint32_t cp);  // str.isspace()

}  // namespace llmkit::tokenizer::jinja

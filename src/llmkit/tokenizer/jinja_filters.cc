// Filters (`x | f`) and tests (`x is t`) of the template interpreter, following jinja2's
// filters.py / tests.py, with transformers' `tojson` override (json.dumps with
// ensure_ascii=False) in place of jinja2's HTML-safe one.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/jinja_builtins_args.h"
#include "llmkit/tokenizer/jinja_interp.h"
#include "llmkit/tokenizer/jinja_strings.h"

namespace llmkit::tokenizer::jinja {

namespace {

// "3", " 42 ", "-7", "1_000" -> Python int(); false when it is not an integer literal.
bool parse_python_int(const std::string& text, int64_t base, int64_t* out) {
  std::string s = py_strip(text, nullptr, StripSide::kBoth);
  std::string digits;
  for (char c : s)
    if (c != '_') digits += c;
  if (digits.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(digits.c_str(), &end, static_cast<int>(base));
  if (errno != 0 || end == nullptr || *end != '\0') return false;
  *out = v;
  return true;
}

bool parse_python_float(const std::string& text, double* out) {
  std::string s = py_strip(text, nullptr, StripSide::kBoth);
  if (s.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == nullptr || *end != '\0') return false;
  *out = v;
  return true;
}

}  // namespace

Value Interpreter::apply_filter(const std::string& name, const Value& v, std::vector<Value>& args,
                                std::vector<std::pair<std::string, Value>>& kwargs, int line) {
  Args a(args, kwargs, name, line);
  step();
  // Reads attribute path "a.b" (or an index "0") of an item, as jinja2's make_attrgetter does.
  auto attr_of = [&](const Value& item, const std::string& path) {
    Value cur = item;
    const std::string dot = ".";
    for (const std::string& part : py_split(path, &dot, -1)) {
      int64_t idx = 0;
      cur = parse_python_int(part, 10, &idx) ? get_item(cur, Value::integer(idx), line)
                                             : get_item(cur, Value::string(part), line);
    }
    return cur;
  };
  auto need_string = [&]() { return v.is_string() ? v.str() : v.to_str(); };

  if (name == "safe" || name == "string") return v.is_string() ? v : Value::string(v.to_str());
  if (name == "default" || name == "d") {
    bool use_default = a.boolean(1, "boolean", false) ? !v.truthy() : v.is_undefined();
    if (!use_default) return v;
    const Value* d = a.get(0, "default_value");
    return d ? *d : Value::string("");
  }
  if (name == "trim") {
    const Value* chars = a.get(0, "chars");
    std::string cs = chars && !chars->is_none() ? a.str(0, "chars") : std::string();
    return Value::string(py_strip(need_string(), chars && !chars->is_none() ? &cs : nullptr, StripSide::kBoth));
  }
  if (name == "upper") return Value::string(ascii_upper(need_string()));
  if (name == "lower") return Value::string(ascii_lower(need_string()));
  if (name == "title") return Value::string(jinja_title(need_string()));
  if (name == "capitalize") return Value::string(py_capitalize(need_string()));
  if (name == "escape" || name == "e" || name == "forceescape") return make_string(html_escape(need_string()), line);
  if (name == "wordcount") return Value::integer(static_cast<int64_t>(word_count(need_string())));
  if (name == "replace") {
    std::string r = py_replace(need_string(), a.str(0, "old"), a.str(1, "new"), a.integer(2, "count", -1));
    return make_string(std::move(r), line);
  }
  if (name == "indent") {
    const Value* w = a.get(0, "width");
    std::string ind = !w ? std::string(4, ' ') : w->is_string() ? w->str() : std::string(static_cast<size_t>(std::clamp<int64_t>(w->as_int(), 0, 1024)), ' ');
    bool first = a.boolean(1, "first", false), blank = a.boolean(2, "blank", false);
    const std::string nl = "\n";
    std::vector<std::string> lines = py_split(need_string() + "\n", &nl, -1);
    lines.pop_back();  // splitlines() of s + "\n"
    std::string r = lines.empty() ? std::string() : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      r += "\n";
      if (blank || !lines[i].empty()) r += ind;
      r += lines[i];
      check_string_size(r.size(), line);
    }
    if (first) r = ind + r;
    return make_string(std::move(r), line);
  }
  if (name == "length" || name == "count") {
    switch (v.kind()) {
      case Value::Kind::kUndefined: return Value::integer(0);
      case Value::Kind::kString: return Value::integer(static_cast<int64_t>(py_len(v.str())));
      case Value::Kind::kList: return Value::integer(static_cast<int64_t>(v.items().size()));
      case Value::Kind::kDict:
      case Value::Kind::kNamespace: return Value::integer(static_cast<int64_t>(v.dict_ref().size()));
      default: fail(line, str_cat("object of type '", v.type_name(), "' has no len()"));
    }
  }
  if (name == "first" || name == "last") {
    std::vector<Value> items = iterate(v, line);
    if (items.empty()) return Value::undefined();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return make_list(iterate(v, line), line);
  if (name == "reverse") {
    if (v.is_string()) {
      std::vector<uint32_t> cps = utf8_decode(v.str());
      std::reverse(cps.begin(), cps.end());
      return Value::string(py_encode(cps, 0, cps.size()));
    }
    std::vector<Value> items = iterate(v, line);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::list();
    if (!v.is_mapping()) fail(line, str_cat("items(): expected a mapping, got ", v.type_name()));
    List items;
    for (const auto& [k, e] : v.dict_ref().entries()) items.push_back(Value::list(List{Value::string(k), e}));
    return Value::list(std::move(items));
  }
  if (name == "join") {
    const Value* attr = a.get(1, "attribute");
    std::string sep = a.get(0, "d") ? a.required(0, "d").to_str() : std::string();
    std::string r;
    bool first = true;
    for (const Value& item : iterate(v, line)) {
      step();
      if (!first) r += sep;
      first = false;
      r += attr ? attr_of(item, attr->to_str()).to_str() : item.to_str();
      check_string_size(r.size(), line);
    }
    return Value::string(std::move(r));
  }
  if (name == "tojson") {
    JsonOptions o;
    o.ensure_ascii = a.boolean(0, "ensure_ascii", false);
    const Value* indent = a.get(1, "indent");
    if (indent && !indent->is_none()) {
      if (indent->is_string()) fail(line, "tojson(): string indents are not supported");
      o.indent = static_cast<int>(std::clamp<int64_t>(indent->as_int(), 0, 64));
    }
    const Value* seps = a.get(2, "separators");
    if (seps && !seps->is_none()) {
      if (!seps->is_list() || seps->items().size() != 2 || !seps->items()[0].is_string() || !seps->items()[1].is_string())
        fail(line, "tojson(): separators must be a pair of strings");
      o.item_sep = seps->items()[0].str();
      o.key_sep = seps->items()[1].str();
    } else {
      o.item_sep = o.indent >= 0 ? "," : ", ";
      o.key_sep = ": ";
    }
    o.sort_keys = a.boolean(3, "sort_keys", false);
    return make_string(to_json(v, o), line);
  }
  if (name == "int") {
    int64_t dflt = a.integer(0, "default", 0), base = a.integer(1, "base", 10), r = 0;
    if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());
    if (v.is_float()) {
      double f = v.as_double();
      if (!std::isfinite(f) || std::fabs(f) >= 9.2e18) return Value::integer(dflt);
      return Value::integer(static_cast<int64_t>(f));
    }
    if (v.is_string()) {
      if (base >= 2 && base <= 36 && parse_python_int(v.str(), base, &r)) return Value::integer(r);
      double f = 0;
      if (parse_python_float(v.str(), &f) && std::isfinite(f) && std::fabs(f) < 9.2e18)
        return Value::integer(static_cast<int64_t>(f));
    }
    return Value::integer(dflt);
  }
  if (name == "float") {
    const Value* d = a.get(0, "default");
    double f = 0;
    if (v.is_number()) return Value::number(v.as_double());
    if (v.is_string() && parse_python_float(v.str(), &f)) return Value::number(f);
    return d ? *d : Value::number(0.0);
  }
  if (name == "abs") {
    if (v.is_float()) return Value::number(std::fabs(v.as_double()));
    if (!v.is_number()) fail(line, str_cat("bad operand type for abs(): '", v.type_name(), "'"));
    if (v.as_int() == INT64_MIN) fail(line, "integer overflow in abs()");
    return Value::integer(std::llabs(v.as_int()));
  }
  if (name == "round") {
    int64_t precision = a.integer(0, "precision", 0);
    std::string method = a.get(1, "method") ? a.str(1, "method") : "common";
    if (!v.is_number()) fail(line, str_cat("round(): expected a number, got ", v.type_name()));
    if (method == "common" && !v.is_float() && precision >= 0) return Value::integer(v.as_int());
    double x = v.as_double();
    precision = std::clamp<int64_t>(precision, -20, 20);
    if (method == "common") {
      if (precision == 0) return Value::number(std::nearbyint(x));  // round-half-even, like Python
      char buf[512];
      if (precision > 0 && std::isfinite(x) && std::fabs(x) < 1e300) {
        std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(precision), x);  // correctly rounded
        return Value::number(std::strtod(buf, nullptr));
      }
      double p = std::pow(10.0, static_cast<double>(precision));
      return Value::number(std::nearbyint(x * p) / p);
    }
    double p = std::pow(10.0, static_cast<double>(precision));
    if (method == "ceil") return Value::number(std::ceil(x * p) / p);
    if (method == "floor") return Value::number(std::floor(x * p) / p);
    fail(line, "round(): method must be common, ceil or floor");
  }
  if (name == "unique" || name == "sort") {
    bool case_sensitive = a.boolean(name == "sort" ? 1 : 0, "case_sensitive", false);
    const Value* attr = a.get(name == "sort" ? 2 : 1, "attribute");
    std::vector<Value> items = iterate(v, line);
    auto key = [&](const Value& item) {
      Value k = attr ? attr_of(item, attr->to_str()) : item;
      if (!case_sensitive && k.is_string()) return Value::string(ascii_lower(k.str()));
      return k;
    };
    if (name == "unique") {
      std::vector<Value> seen, out;
      for (const Value& item : items) {
        Value k = key(item);
        bool dup = false;
        for (const Value& s : seen) {
          step();
          if (values_equal(s, k)) dup = true;
          if (dup) break;
        }
        if (!dup) {
          seen.push_back(k);
          out.push_back(item);
        }
      }
      return Value::list(std::move(out));
    }
    bool reverse = a.boolean(0, "reverse", false);
    std::vector<std::pair<Value, Value>> keyed;
    for (const Value& item : items) keyed.emplace_back(key(item), item);
    bool ok = true;
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
      bool cmp_ok = true;
      bool r = reverse ? value_less(y.first, x.first, &cmp_ok) : value_less(x.first, y.first, &cmp_ok);
      ok = ok && cmp_ok;
      return r;
    });
    if (!ok) fail(line, "sort(): items are not comparable");
    List out;
    for (auto& [k, item] : keyed) out.push_back(std::move(item));
    return Value::list(std::move(out));
  }
  if (name == "batch") {
    int64_t n = a.integer(0, "linecount", 0);
    if (n <= 0) fail(line, "batch(): linecount must be positive");
    const Value* fill = a.get(1, "fill_with");
    List out, cur;
    for (const Value& item : iterate(v, line)) {
      cur.push_back(item);
      if (static_cast<int64_t>(cur.size()) == n) out.push_back(Value::list(std::exchange(cur, {})));
    }
    if (!cur.empty()) {
      if (fill && !fill->is_none())
        while (static_cast<int64_t>(cur.size()) < n) cur.push_back(*fill);
      out.push_back(Value::list(std::move(cur)));
    }
    return Value::list(std::move(out));
  }
  if (name == "map") {
    std::vector<Value> items = iterate(v, line);
    List out;
    const Value* attr = nullptr;
    for (const auto& [k, kv] : kwargs)
      if (k == "attribute") attr = &kv;
    if (attr) {
      const Value* dflt = nullptr;
      for (const auto& [k, kv] : kwargs)
        if (k == "default") dflt = &kv;
      for (const Value& item : items) {
        Value r = attr_of(item, attr->to_str());
        out.push_back(r.is_undefined() && dflt ? *dflt : r);
      }
      return Value::list(std::move(out));
    }
    if (args.empty() || !args[0].is_string()) fail(line, "map(): needs a filter name or attribute=");
    std::string filter = args[0].str();
    std::vector<Value> rest(args.begin() + 1, args.end());
    std::vector<std::pair<std::string, Value>> no_kwargs;
    for (const Value& item : items) {
      std::vector<Value> fargs = rest;
      out.push_back(apply_filter(filter, item, fargs, no_kwargs, line));
    }
    return Value::list(std::move(out));
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    bool by_attr = name == "selectattr" || name == "rejectattr";
    bool keep_on = name == "select" || name == "selectattr";
    size_t base = by_attr ? 1 : 0;
    if (by_attr && (args.empty() || !args[0].is_string())) fail(line, str_cat(name, "(): needs an attribute name"));
    std::string test = args.size() > base ? args[base].to_str() : std::string();
    std::vector<Value> targs(args.begin() + static_cast<std::ptrdiff_t>(std::min(args.size(), base + 1)), args.end());
    List out;
    for (const Value& item : iterate(v, line)) {
      step();
      Value subject = by_attr ? attr_of(item, args[0].str()) : item;
      bool pass = test.empty() ? subject.truthy() : apply_test(test, subject, targs, line);
      if (pass == keep_on) out.push_back(item);
    }
    return Value::list(std::move(out));
  }
  if (name == "attr") return get_attr(v, a.str(0, "name"), line);
  if (name == "max" || name == "min" || name == "sum") {
    std::vector<Value> items = iterate(v, line);
    if (name == "sum") {
      Value total = a.get(1, "start") ? *a.get(1, "start") : Value::integer(0);
      const Value* attr = a.get(0, "attribute");
      for (const Value& item : items) total = binary_op("+", total, attr ? attr_of(item, attr->to_str()) : item, line);
      return total;
    }
    if (items.empty()) return Value::undefined();
    Value best = items[0];
    for (const Value& item : items) {
      bool ok = true;
      bool better = name == "max" ? value_less(best, item, &ok) : value_less(item, best, &ok);
      if (!ok) fail(line, str_cat(name, "(): items are not comparable"));
      if (better) best = item;
    }
    return best;
  }
  fail(line, str_cat("unknown filter '", name, "'"));
}

bool Interpreter::apply_test(const std::string& name, const Value& v, const std::vector<Value>& args, int line) {
  step();
  auto arg = [&](size_t i) -> const Value& {
    if (i >= args.size()) fail(line, str_cat("test '", name, "' needs an argument"));
    return args[i];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "mapping") return v.is_mapping();
  if (name == "iterable") return v.is_string() || v.is_list() || v.is_mapping() || v.is_undefined();
  if (name == "sequence") return v.is_string() || v.is_list() || v.is_mapping();
  if (name == "callable") return v.is_callable();
  if (name == "equalto" || name == "eq" || name == "==") return values_equal(v, arg(0));
  if (name == "sameas") return v.kind() == arg(0).kind() && values_equal(v, arg(0));
  if (name == "ne" || name == "!=") return !values_equal(v, arg(0));
  if (name == "in") return contains(arg(0), v, line);
  if (name == "lower" || name == "upper") {
    if (!v.is_string()) return false;
    return (name == "lower" ? ascii_lower(v.str()) : ascii_upper(v.str())) == v.str();
  }
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!v.is_int() && !v.is_bool()) fail(line, str_cat("test '", name, "' needs an integer, got ", v.type_name()));
    int64_t x = v.as_int();
    if (name == "odd") return x % 2 != 0;
    if (name == "even") return x % 2 == 0;
    const Value& d = arg(0);
    if (!d.is_int() || d.as_int() == 0) fail(line, "divisibleby: divisor must be a non-zero integer");
    return x % d.as_int() == 0;
  }
  static const std::pair<const char*, const char*> kCompare[] = {
      {"lt", "<"}, {"<", "<"}, {"lessthan", "<"}, {"le", "<="}, {"<=", "<="},
      {"gt", ">"}, {">", ">"}, {"greaterthan", ">"}, {"ge", ">="}, {">=", ">="}};
  for (const auto& [test, op] : kCompare) {
    if (name != test) continue;
    bool ok = true;
    std::string o = op;
    bool r = o == "<" ? value_less(v, arg(0), &ok)
             : o == ">" ? value_less(arg(0), v, &ok)
             : o == "<=" ? !value_less(arg(0), v, &ok)
                         : !value_less(v, arg(0), &ok);
    if (!ok) fail(line, str_cat("'", o, "' not supported between '", v.type_name(), "' and '", arg(0).type_name(), "'"));
    return r;
  }
  fail(line, str_cat("unknown test '", name, "'"));
}

}  // namespace llmkit::tokenizer::jinja

// Attribute and item access, slicing, iteration, membership, methods of str/list/dict/loop and
// the global functions (range, namespace, dict, raise_exception, strftime_now). Attribute access
// follows jinja2's environment.getattr/getitem: a missing key, index or attribute is Undefined,
// and only an Undefined object itself raises when indexed, as jinja2's default Undefined does.
#include <cmath>
#include <cstring>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/jinja_builtins_args.h"
#include "llmkit/tokenizer/jinja_interp.h"
#include "llmkit/tokenizer/jinja_strings.h"

namespace llmkit::tokenizer::jinja {

namespace {
constexpr int64_t kMaxRange = 100000;  // jinja2.sandbox.MAX_RANGE

std::string undefined_message(const Value& u) {
  return u.undefined_name().empty() ? "value is undefined" : str_cat("'", u.undefined_name(), "' is undefined");
}
}  // namespace

Value Interpreter::get_attr(const Value& obj, const std::string& name, int line) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined: fail(line, str_cat(undefined_message(obj), " (reading attribute '", name, "')"));
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      const Value* v = obj.dict_ref().find(name);
      return v ? *v : Value::undefined(name);
    }
    case Value::Kind::kLoop: {
      const LoopInfo& l = obj.loop_info();
      if (name == "index") return Value::integer(l.index0 + 1);
      if (name == "index0") return Value::integer(l.index0);
      if (name == "first") return Value::boolean(l.index0 == 0);
      if (name == "last") return Value::boolean(l.index0 + 1 == l.length);
      if (name == "length") return Value::integer(l.length);
      if (name == "revindex") return Value::integer(l.length - l.index0);
      if (name == "revindex0") return Value::integer(l.length - l.index0 - 1);
      if (name == "depth") return Value::integer(1);
      if (name == "depth0") return Value::integer(0);
      if (name == "previtem")
        return l.index0 > 0 ? (*l.items)[static_cast<size_t>(l.index0 - 1)] : Value::undefined(name);
      if (name == "nextitem")
        return l.index0 + 1 < l.length ? (*l.items)[static_cast<size_t>(l.index0 + 1)] : Value::undefined(name);
      return Value::undefined(name);
    }
    default: return Value::undefined(name);  // no host attributes: str/list/int expose only methods
  }
}

Value Interpreter::get_item(const Value& obj, const Value& key, int line) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined: fail(line, str_cat(undefined_message(obj), " (indexing it with ", key.repr(), ")"));
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      if (!key.is_string()) {
        const Value* v = obj.dict_ref().find(key.to_str());
        return v ? *v : Value::undefined();
      }
      const Value* v = obj.dict_ref().find(key.str());
      return v ? *v : Value::undefined(key.str());
    }
    case Value::Kind::kList:
    case Value::Kind::kString: {
      if (key.is_string()) return get_attr(obj, key.str(), line);
      if (!key.is_int() && !key.is_bool()) return Value::undefined();
      int64_t i = key.as_int();
      if (obj.is_list()) {
        int64_t n = static_cast<int64_t>(obj.items().size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined();
        return obj.items()[static_cast<size_t>(i)];
      }
      std::vector<uint32_t> cps = utf8_decode(obj.str());
      int64_t n = static_cast<int64_t>(cps.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined();
      return Value::string(py_encode(cps, static_cast<size_t>(i), static_cast<size_t>(i) + 1));
    }
    case Value::Kind::kLoop:
      if (key.is_string()) return get_attr(obj, key.str(), line);
      return Value::undefined();
    default: return Value::undefined();
  }
}

Value Interpreter::slice(const Value& obj, const Value& start, const Value& stop, const Value& step_v, int line) {
  if (obj.is_undefined()) fail(line, str_cat(undefined_message(obj), " (slicing it)"));
  if (!obj.is_list() && !obj.is_string()) fail(line, str_cat("'", obj.type_name(), "' object is not subscriptable"));
  for (const Value* v : {&start, &stop, &step_v})
    if (!v->is_none() && !v->is_int() && !v->is_bool()) fail(line, "slice indices must be integers or None");
  std::vector<uint32_t> cps;
  int64_t n;
  if (obj.is_list()) {
    n = static_cast<int64_t>(obj.items().size());
  } else {
    cps = utf8_decode(obj.str());
    n = static_cast<int64_t>(cps.size());
  }
  int64_t step = step_v.is_none() ? 1 : step_v.as_int();
  if (step == 0) fail(line, "slice step cannot be zero");
  if (step == INT64_MIN) step = -INT64_MAX;
  // Python's slice.indices()
  auto norm = [&](const Value& v, int64_t dflt) {
    if (v.is_none()) return dflt;
    int64_t i = v.as_int();
    if (i < 0) {
      i = (i < -n) ? -n : i;
      i += n;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= n) {
      i = step < 0 ? n - 1 : n;
    }
    return i;
  };
  int64_t b = norm(start, step < 0 ? n - 1 : 0);
  int64_t e = norm(stop, step < 0 ? -1 : n);
  List items;
  std::string s;
  for (int64_t i = b; step > 0 ? i < e : i > e; i += step) {
    if (obj.is_list()) items.push_back(obj.items()[static_cast<size_t>(i)]);
    else utf8_append(&s, cps[static_cast<size_t>(i)]);
    if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
  }
  if (obj.is_list()) return Value::list(std::move(items));
  return Value::string(std::move(s));
}

std::vector<Value> Interpreter::iterate(const Value& v, int line) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return {};
    case Value::Kind::kList: return v.items();
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& [k, e] : v.dict_ref().entries()) keys.push_back(Value::string(k));
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      std::vector<uint32_t> cps = utf8_decode(v.str());
      for (size_t i = 0; i < cps.size(); ++i) chars.push_back(Value::string(py_encode(cps, i, i + 1)));
      return chars;
    }
    default: fail(line, str_cat("'", v.type_name(), "' object is not iterable"));
  }
}

bool Interpreter::contains(const Value& container, const Value& item, int line) {
  switch (container.kind()) {
    case Value::Kind::kUndefined: return false;
    case Value::Kind::kString:
      if (!item.is_string())
        fail(line, str_cat("'in <string>' requires string as left operand, not ", item.type_name()));
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& e : container.items()) {
        step();
        if (values_equal(e, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
    case Value::Kind::kNamespace:
      return item.is_string() && container.dict_ref().find(item.str()) != nullptr;
    default: fail(line, str_cat("argument of type '", container.type_name(), "' is not iterable"));
  }
}

// ---- methods ---------------------------------------------------------------------------------

bool Interpreter::call_method(const Value& obj, const std::string& name, std::vector<Value>& args,
                              std::vector<std::pair<std::string, Value>>& kwargs, int line, Value* out) {
  Args a(args, kwargs, name, line);
  if (obj.is_string()) {
    const std::string& s = obj.str();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const Value* chars = a.get(0, "chars");
      std::string cs = chars && !chars->is_none() ? a.str(0, "chars") : std::string();
      StripSide side = name == "strip" ? StripSide::kBoth : name == "lstrip" ? StripSide::kLeft : StripSide::kRight;
      *out = Value::string(py_strip(s, chars && !chars->is_none() ? &cs : nullptr, side));
    } else if (name == "split" || name == "rsplit") {
      const Value* sep = a.get(0, "sep");
      int64_t maxsplit = a.integer(1, "maxsplit", -1);
      std::string sp = sep && !sep->is_none() ? a.str(0, "sep") : std::string();
      if (sep && !sep->is_none() && sp.empty()) fail(line, "split(): empty separator");
      if (name == "rsplit" && maxsplit >= 0) fail(line, "rsplit with maxsplit is not supported");
      List parts;
      for (std::string& p : py_split(s, sep && !sep->is_none() ? &sp : nullptr, maxsplit))
        parts.push_back(Value::string(std::move(p)));
      *out = make_list(std::move(parts), line);
    } else if (name == "startswith" || name == "endswith") {
      const Value& p = a.required(0, "prefix");
      std::vector<Value> options = p.is_list() ? p.items() : std::vector<Value>{p};
      bool hit = false;
      for (const Value& o : options) {
        if (!o.is_string()) fail(line, str_cat(name, "() argument must be str or a tuple of str"));
        const std::string& t = o.str();
        if (name == "startswith" ? s.compare(0, t.size(), t) == 0
                                 : (s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0))
          hit = true;
      }
      *out = Value::boolean(hit);
    } else if (name == "upper") {
      *out = Value::string(ascii_upper(s));
    } else if (name == "lower") {
      *out = Value::string(ascii_lower(s));
    } else if (name == "title") {
      *out = Value::string(py_title(s));
    } else if (name == "capitalize") {
      *out = Value::string(py_capitalize(s));
    } else if (name == "replace") {
      std::string r = py_replace(s, a.str(0, "old"), a.str(1, "new"), a.integer(2, "count", -1));
      *out = make_string(std::move(r), line);
    } else if (name == "find") {
      *out = Value::integer(py_find(s, a.str(0, "sub")));
    } else if (name == "count") {
      *out = Value::integer(static_cast<int64_t>(py_count(s, a.str(0, "sub"))));
    } else if (name == "join") {
      std::string r;
      bool first = true;
      for (const Value& v : iterate(a.required(0, "iterable"), line)) {
        if (!v.is_string()) fail(line, str_cat("join(): expected str items, got ", v.type_name()));
        if (!first) r += s;
        first = false;
        r += v.str();
        check_string_size(r.size(), line);
      }
      *out = Value::string(std::move(r));
    } else if (name == "splitlines") {
      List parts;
      size_t pos = 0;
      while (pos < s.size()) {
        size_t nl = s.find('\n', pos);
        if (nl == std::string::npos) nl = s.size();
        std::string line_text = s.substr(pos, nl - pos);
        if (!line_text.empty() && line_text.back() == '\r') line_text.pop_back();
        parts.push_back(Value::string(std::move(line_text)));
        pos = nl + 1;
      }
      *out = make_list(std::move(parts), line);
    } else if (name == "removeprefix" || name == "removesuffix") {
      std::string t = a.str(0, "affix");
      std::string r = s;
      if (name == "removeprefix" && s.compare(0, t.size(), t) == 0) r = s.substr(t.size());
      if (name == "removesuffix" && s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0)
        r = s.substr(0, s.size() - t.size());
      *out = Value::string(std::move(r));
    } else if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isupper" ||
               name == "islower") {
      bool r = !s.empty();
      bool any_cased = false;
      for (unsigned char c : s) {
        bool digit = c >= '0' && c <= '9', lower = c >= 'a' && c <= 'z', upper = c >= 'A' && c <= 'Z';
        any_cased |= lower || upper;
        if (name == "isdigit") r &= digit;
        else if (name == "isalpha") r &= lower || upper;
        else if (name == "isspace") r &= (c == ' ' || (c >= 9 && c <= 13));
        else if (name == "isupper") r &= !lower;
        else r &= !upper;
      }
      if (name == "isupper" || name == "islower") r = r && any_cased;
      *out = Value::boolean(r);
    } else if (name == "format") {
      *out = make_string(format_string(s, args, kwargs, line), line);
    } else {
      return false;
    }
    return true;
  }
  if (obj.is_list()) {
    List& items = obj.items();
    if (name == "append" || name == "extend") note_mutation(obj.shared_list());
    if (name == "append") {
      check_list_size(items.size() + 1, line);
      items.push_back(a.required(0, "object"));
      *out = Value::none();
    } else if (name == "extend") {
      std::vector<Value> more = iterate(a.required(0, "iterable"), line);
      check_list_size(items.size() + more.size(), line);
      items.insert(items.end(), more.begin(), more.end());
      *out = Value::none();
    } else if (name == "pop") {
      if (items.empty()) fail(line, "pop from empty list");
      int64_t n = static_cast<int64_t>(items.size());
      int64_t i = a.integer(0, "index", -1);
      if (i < 0) i += n;
      if (i < 0 || i >= n) fail(line, "pop index out of range");
      *out = items[static_cast<size_t>(i)];
      items.erase(items.begin() + i);
    } else if (name == "index" || name == "count") {
      const Value& x = a.required(0, "value");
      int64_t count = 0, index = -1;
      for (size_t i = 0; i < items.size(); ++i) {
        step();
        if (values_equal(items[i], x)) {
          if (index < 0) index = static_cast<int64_t>(i);
          ++count;
        }
      }
      if (name == "index" && index < 0) fail(line, "list.index(x): x not in list");
      *out = Value::integer(name == "index" ? index : count);
    } else {
      return false;
    }
    return true;
  }
  if (obj.is_dict()) {
    const Dict& d = obj.dict_ref();
    if (name == "items" || name == "keys" || name == "values") {
      List items;
      for (const auto& [k, v] : d.entries()) {
        if (name == "items") items.push_back(Value::list(List{Value::string(k), v}));
        else if (name == "keys") items.push_back(Value::string(k));
        else items.push_back(v);
      }
      *out = Value::list(std::move(items));
    } else if (name == "get") {
      const Value& key = a.required(0, "key");
      const Value* v = d.find(key.to_str());
      const Value* dflt = a.get(1, "default");
      *out = v ? *v : (dflt ? *dflt : Value::none());
    } else {
      return false;
    }
    return true;
  }
  if (obj.kind() == Value::Kind::kLoop && name == "cycle") {
    if (args.empty()) fail(line, "loop.cycle() needs at least one argument");
    *out = args[static_cast<size_t>(obj.loop_info().index0) % args.size()];
    return true;
  }
  return false;
}

// str.format with {} / {0} / {name} fields (no format specs), as chat templates use it.
std::string Interpreter::format_string(const std::string& fmt, const std::vector<Value>& args,
                                       const std::vector<std::pair<std::string, Value>>& kwargs, int line) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      else fail(line, "format(): single '}' in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t close = fmt.find('}', i);
    if (close == std::string::npos) fail(line, "format(): unmatched '{'");
    std::string field = fmt.substr(i + 1, close - i - 1);
    if (field.find_first_of(":!.[") != std::string::npos)
      fail(line, "format(): format specs and attribute fields are not supported");
    const Value* v = nullptr;
    if (field.empty() || field.find_first_not_of("0123456789") == std::string::npos) {
      size_t idx = field.empty() ? auto_index++ : static_cast<size_t>(std::strtoull(field.c_str(), nullptr, 10));
      if (idx >= args.size()) fail(line, str_cat("format(): replacement index ", idx, " out of range"));
      v = &args[idx];
    } else {
      for (const auto& [k, kv] : kwargs)
        if (k == field) v = &kv;
      if (!v) fail(line, str_cat("format(): missing keyword '", field, "'"));
    }
    out += v->to_str();
    check_string_size(out.size(), line);
    i = close;
  }
  return out;
}

// ---- global functions ------------------------------------------------------------------------

Value Interpreter::call_builtin(const std::string& name, std::vector<Value>& args,
                                std::vector<std::pair<std::string, Value>>& kwargs, int line) {
  Args a(args, kwargs, name, line);
  if (name == "range") {
    if (args.empty() || args.size() > 3) fail(line, "range() takes 1 to 3 integer arguments");
    for (const Value& v : args)
      if (!v.is_int() && !v.is_bool()) fail(line, str_cat("range(): '", v.type_name(), "' is not an integer"));
    int64_t start = args.size() == 1 ? 0 : args[0].as_int();
    int64_t stop = args.size() == 1 ? args[0].as_int() : args[1].as_int();
    int64_t st = args.size() == 3 ? args[2].as_int() : 1;
    if (st == 0) fail(line, "range() arg 3 must not be zero");
    long double count = std::ceil((static_cast<long double>(stop) - start) / st);
    if (count > kMaxRange)
      fail(line, str_cat("range of ", static_cast<double>(count), " items exceeds the sandbox range cap (",
                         kMaxRange, ", as jinja2's sandbox MAX_RANGE)"));
    List items;
    for (int64_t i = start; st > 0 ? i < stop : i > stop; i += st) items.push_back(Value::integer(i));
    return make_list(std::move(items), line);
  }
  if (name == "namespace" || name == "dict") {
    auto d = new_dict();
    for (const Value& v : args) {
      if (!v.is_mapping()) fail(line, str_cat(name, "(): positional argument must be a mapping"));
      for (const auto& [k, e] : v.dict_ref().entries()) d->set(k, e);
    }
    for (const auto& [k, v] : kwargs) d->set(k, v);
    if (name == "namespace")  // transformers' TemplateNamespace
      for (const auto& [k, v] : d->entries())
        if (!k.empty() && k[0] == '_') fail(line, str_cat("namespace(): underscore-prefixed attribute '", k, "' is not allowed"));
    return name == "dict" ? Value::dict(std::move(d)) : Value::ns(std::move(d));
  }
  if (name == "raise_exception") {
    std::string msg = args.empty() ? std::string() : args[0].to_str();
    throw Error(ErrorCode::kInvalidArgument, msg,
                "the model's chat template rejected this conversation (raise_exception)");
  }
  if (name == "strftime_now") {
    std::string fmt = a.str(0, "format");
    if (fmt.size() > 256) fail(line, "strftime_now(): format longer than 256 characters");
    std::time_t t = opts_.now ? opts_.now : std::time(nullptr);
    std::tm tm{};
    if (opts_.now) gmtime_r(&t, &tm);
    else localtime_r(&t, &tm);
    char buf[4096];
    size_t n = fmt.empty() ? 0 : std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
    return Value::string(std::string(buf, n));
  }
  fail(line, str_cat("unknown function '", name, "'"));
}

}  // namespace llmkit::tokenizer::jinja

// Value construction, Python-compatible printing (str/repr), equality and ordering, and the JSON
// encoder behind transformers' `tojson` filter. See jinja_value.h.
#include "llmkit/tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "llmkit/base/check.h"

namespace llmkit::tokenizer::jinja {

namespace {
constexpr int kMaxValueDepth = 256;  // nesting of lists/dicts in printing, equality and JSON
}

// ---- Dict ------------------------------------------------------------------------------------

const Value* Dict::find(const std::string& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

Value* Dict::find(const std::string& key) {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

void Dict::set(const std::string& key, Value v) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    entries_[it->second].second = std::move(v);
    return;
  }
  index_.emplace(key, entries_.size());
  entries_.emplace_back(key, std::move(v));
}

// ---- iterative destruction ----------------------------------------------------------------

namespace {

// Containers whose last reference is gone, waiting to be destroyed by the outermost deleter.
struct Graveyard {
  std::vector<List*> lists;
  std::vector<Dict*> dicts;
  bool reaping = false;
};
thread_local Graveyard graveyard;

void reap() {
  if (graveyard.reaping) return;  // an outer deleter is already draining the graveyard
  graveyard.reaping = true;
  while (!graveyard.lists.empty() || !graveyard.dicts.empty()) {
    if (!graveyard.lists.empty()) {
      List* l = graveyard.lists.back();
      graveyard.lists.pop_back();
      delete l;  // nested containers it held land in the graveyard instead of recursing
    } else {
      Dict* d = graveyard.dicts.back();
      graveyard.dicts.pop_back();
      delete d;
    }
  }
  graveyard.reaping = false;
}

}  // namespace

std::shared_ptr<List> new_list(List items) {
  return std::shared_ptr<List>(new List(std::move(items)), [](List* l) {
    graveyard.lists.push_back(l);
    reap();
  });
}

std::shared_ptr<Dict> new_dict() {
  return std::shared_ptr<Dict>(new Dict(), [](Dict* d) {
    graveyard.dicts.push_back(d);
    reap();
  });
}

// ---- construction ----------------------------------------------------------------------------

Value Value::undefined(std::string name) {
  Value v;
  v.undefined_name_ = std::move(name);
  return v;
}
Value Value::none() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.i_ = i;
  return v;
}
Value Value::number(double f) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.f_ = f;
  return v;
}
Value Value::string(std::string s) { return string(std::make_shared<const std::string>(std::move(s))); }
Value Value::string(std::shared_ptr<const std::string> s) {
  Value v;
  v.kind_ = Kind::kString;
  v.s_ = std::move(s);
  return v;
}
Value Value::list(List items) { return list(new_list(std::move(items))); }
Value Value::list(std::shared_ptr<List> items) {
  Value v;
  v.kind_ = Kind::kList;
  v.list_ = std::move(items);
  return v;
}
Value Value::dict(std::shared_ptr<Dict> d) {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = d ? std::move(d) : new_dict();
  return v;
}
Value Value::ns(std::shared_ptr<Dict> d) {
  Value v = dict(std::move(d));
  v.kind_ = Kind::kNamespace;
  return v;
}
Value Value::loop(std::shared_ptr<LoopInfo> info) {
  Value v;
  v.kind_ = Kind::kLoop;
  v.loop_ = std::move(info);
  return v;
}
Value Value::callable(std::shared_ptr<Callable> c) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.fn_ = std::move(c);
  return v;
}

Value Value::from_json(const nlohmann::ordered_json& j, int depth) {
  LLMKIT_CHECK(depth < kMaxValueDepth, kInvalidArgument, "chat template input nests deeper than ",
               kMaxValueDepth, " levels");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return none();
    case nlohmann::ordered_json::value_t::boolean: return boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return integer(static_cast<int64_t>(u));
      return number(static_cast<double>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return number(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e, depth + 1));
      return list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      auto d = new_dict();
      for (const auto& [k, e] : j.items()) d->set(k, from_json(e, depth + 1));
      return dict(std::move(d));
    }
    default: return undefined();  // binary / discarded: nothing a template can use
  }
}

double Value::as_double() const {
  if (kind_ == Kind::kFloat) return f_;
  return static_cast<double>(as_int());
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool: return b_;
    case Kind::kInt: return i_ != 0;
    case Kind::kFloat: return f_ != 0.0;
    case Kind::kString: return !s_->empty();
    case Kind::kList: return !list_->empty();
    case Kind::kDict: return dict_->size() != 0;
    default: return true;
  }
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kLoop: return "LoopContext";
    case Kind::kCallable: return "Macro";
  }
  return "object";
}

// ---- printing --------------------------------------------------------------------------------

std::string format_python_float(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
  // Shortest round-trip digits in scientific form, then laid out as Python's repr does: fixed
  // notation when -4 <= exponent < 16, else d.ddde+XX.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), f, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  size_t e_pos = sci.find('e');
  std::string mant = sci.substr(0, e_pos);
  int exp10 = std::atoi(sci.c_str() + e_pos + 1);
  bool neg = !mant.empty() && mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out = neg ? "-" : "";
  if (exp10 >= -4 && exp10 < 16) {
    if (exp10 < 0) {
      out += "0." + std::string(static_cast<size_t>(-exp10 - 1), '0') + digits;
    } else {
      size_t int_len = static_cast<size_t>(exp10) + 1;
      if (digits.size() <= int_len) {
        out += digits + std::string(int_len - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, int_len) + "." + digits.substr(int_len);
      }
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char e[16];
    std::snprintf(e, sizeof(e), "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    out += e;
  }
  return out;
}

namespace {

std::string repr_string(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char q = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == static_cast<unsigned char>(q)) out += std::string("\\") + q;
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += q;
  return out;
}

void repr_into(const Value& v, std::string* out, int depth) {
  LLMKIT_CHECK(depth < kMaxValueDepth, kInvalidArgument, "chat template value nests deeper than ",
               kMaxValueDepth, " levels");
  switch (v.kind()) {
    case Value::Kind::kString: *out += repr_string(v.str()); return;
    case Value::Kind::kList: {
      *out += '[';
      bool first = true;
      for (const Value& e : v.items()) {
        if (!first) *out += ", ";
        first = false;
        repr_into(e, out, depth + 1);
      }
      *out += ']';
      return;
    }
    case Value::Kind::kDict: {
      *out += '{';
      bool first = true;
      for (const auto& [k, e] : v.dict_ref().entries()) {
        if (!first) *out += ", ";
        first = false;
        *out += repr_string(k) + ": ";
        repr_into(e, out, depth + 1);
      }
      *out += '}';
      return;
    }
    case Value::Kind::kNamespace: {
      *out += "<Namespace {";
      bool first = true;
      for (const auto& [k, e] : v.dict_ref().entries()) {
        if (!first) *out += ", ";
        first = false;
        *out += repr_string(k) + ": ";
        repr_into(e, out, depth + 1);
      }
      *out += "}>";
      return;
    }
    case Value::Kind::kUndefined: *out += "Undefined"; return;
    default: *out += v.to_str(); return;
  }
}

}  // namespace

std::string Value::to_str() const {
  switch (kind_) {
    case Kind::kUndefined: return "";
    case Kind::kNone: return "None";
    case Kind::kBool: return b_ ? "True" : "False";
    case Kind::kInt: return std::to_string(i_);
    case Kind::kFloat: return format_python_float(f_);
    case Kind::kString: return *s_;
    case Kind::kLoop: return "<LoopContext>";
    case Kind::kCallable: return "<Macro '" + fn_->name + "'>";
    default: {
      std::string out;
      repr_into(*this, &out, 0);
      return out;
    }
  }
}

std::string Value::repr() const {
  std::string out;
  repr_into(*this, &out, 0);
  return out;
}

// ---- comparison ------------------------------------------------------------------------------

bool values_equal(const Value& a, const Value& b, int depth) {
  LLMKIT_CHECK(depth < kMaxValueDepth, kInvalidArgument, "chat template value nests deeper than ",
               kMaxValueDepth, " levels");
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kString: return a.str() == b.str();
    case Value::Kind::kList: {
      if (a.items().size() != b.items().size()) return false;
      for (size_t i = 0; i < a.items().size(); ++i)
        if (!values_equal(a.items()[i], b.items()[i], depth + 1)) return false;
      return true;
    }
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      if (a.dict_ref().size() != b.dict_ref().size()) return false;
      for (const auto& [k, e] : a.dict_ref().entries()) {
        const Value* o = b.dict_ref().find(k);
        if (!o || !values_equal(e, *o, depth + 1)) return false;
      }
      return true;
    }
    case Value::Kind::kLoop: return &a.loop_info() == &b.loop_info();
    case Value::Kind::kCallable: return &a.fn() == &b.fn();
    default: return false;
  }
}

bool value_less(const Value& a, const Value& b, bool* ok, int depth) {
  *ok = true;
  LLMKIT_CHECK(depth < kMaxValueDepth, kInvalidArgument, "chat template value nests deeper than ",
               kMaxValueDepth, " levels");
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 byte order = code point order
  if (a.is_list() && b.is_list()) {
    const List& x = a.items();
    const List& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (values_equal(x[i], y[i], depth + 1)) continue;
      return value_less(x[i], y[i], ok, depth + 1);
    }
    return x.size() < y.size();
  }
  *ok = false;
  return false;
}

// ---- JSON (transformers' tojson) -------------------------------------------------------------

namespace {

void json_char(unsigned char c, std::string* out);

void json_string(const std::string& s, bool ensure_ascii, std::string* out) {
  *out += '"';
  if (ensure_ascii) {
    for (uint32_t cp : utf8_decode(s)) {
      if (cp < 0x80) {
        json_char(static_cast<unsigned char>(cp), out);
        continue;
      }
      if (cp >= 0x110000u) cp = 0xfffd;  // invalid byte
      char b[16];
      if (cp >= 0x10000) {
        uint32_t v = cp - 0x10000;
        std::snprintf(b, sizeof(b), "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
      } else {
        std::snprintf(b, sizeof(b), "\\u%04x", cp);
      }
      *out += b;
    }
    *out += '"';
    return;
  }
  for (unsigned char c : s) json_char(c, out);
  *out += '"';
}

// One byte of a JSON string; bytes >= 0x80 (UTF-8) pass through, as with ensure_ascii=False.
void json_char(unsigned char c, std::string* out) {
  switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof(b), "\\u%04x", c);
          *out += b;
        } else {
          *out += static_cast<char>(c);
        }
  }
}

void json_into(const Value& v, const JsonOptions& o, int depth, std::string* out) {
  LLMKIT_CHECK(depth < kMaxValueDepth, kInvalidArgument, "tojson: value nests deeper than ",
               kMaxValueDepth, " levels");
  auto newline = [&](int level) {
    if (o.indent < 0) return;
    *out += '\n';
    out->append(static_cast<size_t>(o.indent) * static_cast<size_t>(level), ' ');
  };
  const std::string& item_sep = o.item_sep;
  switch (v.kind()) {
    case Value::Kind::kNone: *out += "null"; return;
    case Value::Kind::kBool: *out += v.as_bool() ? "true" : "false"; return;
    case Value::Kind::kInt: *out += std::to_string(v.as_int()); return;
    case Value::Kind::kFloat: {
      double f = v.as_double();
      if (std::isnan(f)) *out += "NaN";
      else if (std::isinf(f)) *out += f < 0 ? "-Infinity" : "Infinity";
      else *out += format_python_float(f);
      return;
    }
    case Value::Kind::kString: json_string(v.str(), o.ensure_ascii, out); return;
    case Value::Kind::kList: {
      if (v.items().empty()) {
        *out += "[]";
        return;
      }
      *out += '[';
      bool first = true;
      for (const Value& e : v.items()) {
        if (!first) *out += item_sep;
        first = false;
        newline(depth + 1);
        json_into(e, o, depth + 1, out);
      }
      newline(depth);
      *out += ']';
      return;
    }
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      if (v.dict_ref().size() == 0) {
        *out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& e : v.dict_ref().entries()) entries.push_back(&e);
      if (o.sort_keys)
        std::sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->first < b->first; });
      *out += '{';
      bool first = true;
      for (const auto* e : entries) {
        if (!first) *out += item_sep;
        first = false;
        newline(depth + 1);
        json_string(e->first, o.ensure_ascii, out);
        *out += o.key_sep;
        json_into(e->second, o, depth + 1, out);
      }
      newline(depth);
      *out += '}';
      return;
    }
    default:
      throw Error(ErrorCode::kInvalidArgument,
                  str_cat("tojson: object of type ", v.type_name(), " is not JSON serializable"));
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonOptions& opts) {
  std::string out;
  json_into(v, opts, 0, &out);
  return out;
}

// ---- UTF-8 -----------------------------------------------------------------------------------

std::vector<uint32_t> utf8_decode(std::string_view s) {
  // An invalid byte b decodes to 0x110000 + b (beyond Unicode), so utf8_append restores it
  // exactly: malformed input passes through unchanged instead of being replaced.
  std::vector<uint32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + static_cast<size_t>(len) <= s.size();
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (int k = 1; ok && k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((cc & 0xc0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (!ok) {
      out.push_back(0x110000u + c);
      i += 1;
    } else {
      out.push_back(cp);
      i += static_cast<size_t>(len);
    }
  }
  return out;
}

void utf8_append(std::string* out, uint32_t cp) {
  if (cp >= 0x110000u) {
    out->push_back(static_cast<char>(cp - 0x110000u));  // a raw invalid byte, restored as it was
  } else if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

bool is_python_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

}  // namespace llmkit::tokenizer::jinja

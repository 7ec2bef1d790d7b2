// Python str methods on UTF-8 text (see jinja_strings.h).
#include "llmkit/tokenizer/jinja_strings.h"

#include <algorithm>

#include "llmkit/tokenizer/jinja_value.h"

namespace llmkit::tokenizer::jinja {

size_t py_len(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;  // count non-continuation bytes
  // Malformed input counts each stray continuation byte as utf8_decode does.
  if (n == s.size()) return n;
  return utf8_decode(s).size();
}

std::string py_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end && i < cps.size(); ++i) utf8_append(&out, cps[i]);
  return out;
}

std::string py_strip(const std::string& s, const std::string* chars, StripSide side) {
  std::vector<uint32_t> cps = utf8_decode(s);
  std::vector<uint32_t> set;
  if (chars) set = utf8_decode(*chars);
  auto strip_it = [&](uint32_t cp) {
    return chars ? std::find(set.begin(), set.end(), cp) != set.end() : is_python_space(cp);
  };
  size_t b = 0, e = cps.size();
  if (side != StripSide::kRight)
    while (b < e && strip_it(cps[b])) ++b;
  if (side != StripSide::kLeft)
    while (e > b && strip_it(cps[e - 1])) --e;
  return py_encode(cps, b, e);
}

std::vector<std::string> py_split(const std::string& s, const std::string* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      size_t hit = s.find(*sep, pos);
      if (hit == std::string::npos) break;
      out.push_back(s.substr(pos, hit - pos));
      pos = hit + sep->size();
    }
    out.push_back(s.substr(pos));
    return out;
  }
  std::vector<uint32_t> cps = utf8_decode(s);
  size_t i = 0;
  while (true) {
    while (i < cps.size() && is_python_space(cps[i])) ++i;
    if (i >= cps.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      size_t e = cps.size();
      while (e > i && is_python_space(cps[e - 1])) --e;
      out.push_back(py_encode(cps, i, e));
      break;
    }
    size_t b = i;
    while (i < cps.size() && !is_python_space(cps[i])) ++i;
    out.push_back(py_encode(cps, b, i));
  }
  return out;
}

std::string py_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  int64_t done = 0;
  if (from.empty()) {  // Python inserts `to` before every code point and at the end
    std::vector<uint32_t> cps = utf8_decode(s);
    for (uint32_t cp : cps) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      utf8_append(&out, cp);
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t pos = 0;
  while (count < 0 || done < count) {
    size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

size_t py_count(const std::string& s, const std::string& sub) {
  if (sub.empty()) return py_len(s) + 1;
  size_t n = 0, pos = 0;
  while ((pos = s.find(sub, pos)) != std::string::npos) {
    ++n;
    pos += sub.size();
  }
  return n;
}

int64_t py_find(const std::string& s, const std::string& sub) {
  size_t hit = s.find(sub);
  if (hit == std::string::npos) return -1;
  return static_cast<int64_t>(py_len(s.substr(0, hit)));
}

namespace {
bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
char to_upper(char c) { return is_lower(c) ? static_cast<char>(c - 32) : c; }
char to_lower(char c) { return is_upper(c) ? static_cast<char>(c + 32) : c; }
}  // namespace

std::string ascii_upper(std::string s) {
  for (char& c : s) c = to_upper(c);
  return s;
}

std::string ascii_lower(std::string s) {
  for (char& c : s) c = to_lower(c);
  return s;
}

std::string py_title(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (char& c : out) {
    bool cased = is_lower(c) || is_upper(c);
    if (cased) c = prev_cased ? to_lower(c) : to_upper(c);
    prev_cased = cased;
  }
  return out;
}

std::string jinja_title(const std::string& s) {
  // "".join(item[0].upper() + item[1:].lower() for item in re.split(r"([-\s({\[<]+)", s) if item)
  std::string out = s;
  bool word_start = true;
  for (char& c : out) {
    bool sep = c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' ||
               c == '(' || c == '{' || c == '[' || c == '<';
    if (sep) {
      word_start = true;
      continue;
    }
    c = word_start ? to_upper(c) : to_lower(c);
    word_start = false;
  }
  return out;
}

std::string py_capitalize(const std::string& s) {
  std::string out = ascii_lower(s);
  if (!out.empty()) out[0] = to_upper(out[0]);
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

size_t word_count(const std::string& s) {
  // \w in Python's re (Unicode): letters, digits and underscore. Non-ASCII code points other than
  // whitespace and common punctuation count as word characters.
  size_t n = 0;
  bool in_word = false;
  for (uint32_t cp : utf8_decode(s)) {
    bool w = (cp < 0x80) ? ((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_')
                         : !(is_python_space(cp) || (cp >= 0x2000 && cp <= 0x206f) || (cp >= 0x3000 && cp <= 0x303f) ||
                             (cp >= 0xff00 && cp <= 0xff0f) || cp >= 0x110000u);
    if (w && !in_word) ++n;
    in_word = w;
  }
  return n;
}

}  // namespace llmkit::tokenizer::jinja

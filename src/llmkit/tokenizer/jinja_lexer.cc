// Template lexer; the whitespace rules follow jinja2's Lexer.tokeniter (see jinja_lexer.h).
#include "llmkit/tokenizer/jinja_lexer.h"

#include <cerrno>
#include <cstdlib>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/jinja_value.h"

namespace llmkit::tokenizer::jinja {

namespace {

[[noreturn]] void fail(int line, const std::string& msg) {
  throw Error(ErrorCode::kInvalidArgument, str_cat("chat template syntax error at line ", line, ": ", msg),
              "fix the template (jinja2 syntax, as transformers renders it)");
}

// Python's str.rstrip() / the regex \s* (Unicode whitespace), on UTF-8 text.
std::string rstrip_py(const std::string& s) {
  std::vector<uint32_t> cps = utf8_decode(s);
  size_t n = cps.size();
  while (n > 0 && is_python_space(cps[n - 1])) --n;
  std::string out;
  for (size_t i = 0; i < n; ++i) utf8_append(&out, cps[i]);
  return out;
}

// Number of bytes of leading Unicode whitespace at s[pos..].
size_t leading_space_bytes(std::string_view s, size_t pos) {
  size_t p = pos;
  while (p < s.size()) {
    std::vector<uint32_t> cps = utf8_decode(s.substr(p, 4));
    if (cps.empty() || cps[0] >= 0x110000u || !is_python_space(cps[0])) break;
    std::string enc;
    utf8_append(&enc, cps[0]);
    p += enc.size();
  }
  return p - pos;
}

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  explicit Lexer(std::string_view source) {
    // Newline normalization and keep_trailing_newline=False, as jinja2 does before lexing.
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    bool line_starting = true;  // the previous match ended with a newline (or we are at the start)
    bool strip_leading = false;  // the previous tag ended with '-'
    while (pos_ < src_.size()) {
      if (strip_leading) {
        advance(leading_space_bytes(src_, pos_));
        strip_leading = false;
      }
      size_t start = find_tag(pos_);
      std::string text = src_.substr(pos_, start - pos_);
      int text_line = line_;
      advance(start - pos_);
      if (start >= src_.size()) {
        emit_text(std::move(text), text_line);
        break;
      }
      char kind = src_[start + 1];  // '{', '%' or '#'
      char sign = start + 2 < src_.size() ? src_[start + 2] : '\0';
      if (sign == '-') {
        text = rstrip_py(text);
      } else if (sign != '+' && kind != '{') {
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if (l_pos > 0 || line_starting) {
          // whitespace_re.fullmatch(text, l_pos): only (Unicode) whitespace up to the tag.
          if (l_pos < text.size() && leading_space_bytes(text, l_pos) == text.size() - l_pos) text.resize(l_pos);
        }
      }
      emit_text(std::move(text), text_line);
      int tag_line = line_;
      advance(2 + ((sign == '-' || sign == '+') ? 1 : 0));
      char end_sign = '\0';
      if (kind == '#') {
        size_t end = src_.find("#}", pos_);
        if (end == std::string::npos) fail(tag_line, "unclosed comment {# ... #}");
        if (end > pos_ && (src_[end - 1] == '-' || src_[end - 1] == '+')) end_sign = src_[end - 1];
        advance(end + 2 - pos_);
      } else {
        push(kind == '{' ? TokenType::kVarBegin : TokenType::kBlockBegin, kind == '{' ? "{{" : "{%", tag_line);
        end_sign = lex_tag(kind == '{' ? '}' : '%', tag_line);
      }
      if (end_sign == '-') {
        strip_leading = true;
        line_starting = false;
        // The match of `-%}\s*` ends in a newline when the stripped whitespace does.
        size_t n = leading_space_bytes(src_, pos_);
        line_starting = n > 0 && src_[pos_ + n - 1] == '\n';
      } else if (kind != '{' && end_sign != '+' && pos_ < src_.size() && src_[pos_] == '\n') {
        advance(1);  // trim_blocks
        line_starting = true;
      } else {
        line_starting = false;
      }
    }
    push(TokenType::kEof, "", line_);
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    size_t p = from;
    while (true) {
      p = src_.find('{', p);
      if (p == std::string::npos || p + 1 >= src_.size()) return src_.size();
      char c = src_[p + 1];
      if (c == '{' || c == '%' || c == '#') return p;
      ++p;
    }
  }

  void advance(size_t n) {
    for (size_t i = 0; i < n && pos_ < src_.size(); ++i, ++pos_)
      if (src_[pos_] == '\n') ++line_;
  }

  void emit_text(std::string text, int line) {
    if (!text.empty()) push(TokenType::kText, std::move(text), line);
  }

  Token& push(TokenType t, std::string text, int line) {
    Token tok;
    tok.type = t;
    tok.text = std::move(text);
    tok.line = line;
    tokens_.push_back(std::move(tok));
    return tokens_.back();
  }

  // Lexes the inside of a tag up to its end delimiter ("}}" or "%}"); returns the end's sign.
  char lex_tag(char end_char, int tag_line) {
    int balance = 0;  // (), [], {} nesting: "}}" inside a dict literal does not end the tag
    while (true) {
      while (pos_ < src_.size() && (src_[pos_] == ' ' || src_[pos_] == '\t' || src_[pos_] == '\n'))
        advance(1);
      if (pos_ >= src_.size()) fail(tag_line, end_char == '}' ? "unclosed {{ tag" : "unclosed {% tag");
      char c = src_[pos_];
      char n1 = pos_ + 1 < src_.size() ? src_[pos_ + 1] : '\0';
      char n2 = pos_ + 2 < src_.size() ? src_[pos_ + 2] : '\0';
      if (balance == 0) {
        if ((c == '-' || c == '+') && n1 == end_char && n2 == '}') {
          push(end_char == '}' ? TokenType::kVarEnd : TokenType::kBlockEnd, "", line_);
          advance(3);
          return c;
        }
        if (c == end_char && n1 == '}') {
          push(end_char == '}' ? TokenType::kVarEnd : TokenType::kBlockEnd, "", line_);
          advance(2);
          return '\0';
        }
      }
      if (is_name_start(c)) {
        size_t b = pos_;
        while (pos_ < src_.size() && (is_name_start(src_[pos_]) || is_digit(src_[pos_]))) ++pos_;
        push(TokenType::kName, src_.substr(b, pos_ - b), line_);
      } else if (is_digit(c)) {
        lex_number();
      } else if (c == '\'' || c == '"') {
        lex_string(c);
      } else {
        static const char* const kTwo[] = {"**", "//", "==", "!=", "<=", ">="};
        std::string op(1, c);
        for (const char* t : kTwo)
          if (c == t[0] && n1 == t[1]) op = t;
        if (op.size() == 1 && std::string_view("+-*/%~<>=()[]{},.:|").find(c) == std::string_view::npos)
          fail(line_, str_cat("unexpected character '", c, "' in tag"));
        if (c == '(' || c == '[' || c == '{') ++balance;
        if ((c == ')' || c == ']' || c == '}') && balance > 0) --balance;
        push(TokenType::kOp, op, line_);
        advance(op.size());
      }
    }
  }

  void lex_number() {
    size_t b = pos_;
    bool is_float = false;
    while (pos_ < src_.size() && (is_digit(src_[pos_]) || src_[pos_] == '_')) ++pos_;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && is_digit(src_[pos_ + 1])) {
      is_float = true;
      ++pos_;
      while (pos_ < src_.size() && (is_digit(src_[pos_]) || src_[pos_] == '_')) ++pos_;
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t q = pos_ + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && is_digit(src_[q])) {
        is_float = true;
        pos_ = q;
        while (pos_ < src_.size() && is_digit(src_[pos_])) ++pos_;
      }
    }
    std::string digits;
    for (size_t i = b; i < pos_; ++i)
      if (src_[i] != '_') digits += src_[i];
    Token& t = push(is_float ? TokenType::kFloat : TokenType::kInt, digits, line_);
    errno = 0;
    if (is_float) {
      t.fval = std::strtod(digits.c_str(), nullptr);
    } else {
      t.ival = std::strtoll(digits.c_str(), nullptr, 10);
      if (errno == ERANGE) fail(line_, str_cat("integer literal ", digits, " does not fit in 64 bits"));
    }
  }

  void lex_string(char quote) {
    int start_line = line_;
    advance(1);
    std::string out;
    while (true) {
      if (pos_ >= src_.size()) fail(start_line, "unterminated string literal");
      char c = src_[pos_];
      if (c == quote) {
        advance(1);
        break;
      }
      if (c != '\\') {
        out += c;
        advance(1);
        continue;
      }
      if (pos_ + 1 >= src_.size()) fail(start_line, "unterminated string literal");
      char e = src_[pos_ + 1];
      advance(2);
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '0': out += '\0'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\n': break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          size_t len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (pos_ + len > src_.size()) fail(line_, "truncated \\" + std::string(1, e) + " escape");
          std::string hex = src_.substr(pos_, len);
          if (hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
            fail(line_, "bad \\" + std::string(1, e) + " escape");
          uint32_t cp = static_cast<uint32_t>(std::strtoul(hex.c_str(), nullptr, 16));
          if (cp > 0x10ffff) fail(line_, "escape out of Unicode range");
          utf8_append(&out, cp);
          advance(len);
          break;
        }
        default:
          out += '\\';
          out += e;  // Python keeps unknown escapes verbatim
      }
    }
    push(TokenType::kString, std::move(out), start_line);
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex_template(std::string_view source) { return Lexer(source).run(); }

}  // namespace llmkit::tokenizer::jinja

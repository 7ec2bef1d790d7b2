// Lexer for the Jinja subset of chat templates: splits a template into text and the tokens inside
// {{ }}, {% %} (comments {# #} are dropped), applying jinja2's whitespace rules exactly as
// transformers configures them: trim_blocks=True (the first newline after a block or comment tag
// is removed), lstrip_blocks=True (spaces and tabs before a block or comment tag on its own line are
// removed), `-` on either side of a tag strips all whitespace on that side, `+` disables the
// lstrip/trim for that tag, line endings are normalized to \n and one trailing newline of the
// template is dropped (keep_trailing_newline=False). Errors are llmkit::Error (kInvalidArgument)
// naming the line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace llmkit::tokenizer::jinja {

enum class TokenType {
  kText,        // literal template text (already whitespace-processed)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // identifiers and keywords (for, in, not, is, ...)
  kString,      // a string literal, unescaped
  kInt,
  kFloat,
  kOp,          // operators and punctuation: + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
  kEof,
};

struct Token {
  TokenType type = TokenType::kEof;
  std::string text;  // name, string contents, operator, or text
  int64_t ival = 0;
  double fval = 0.0;
  int line = 1;
};

// Throws llmkit::Error (kInvalidArgument) on an unclosed tag, comment or string, a bad character,
// or an integer literal out of 64-bit range.
std::vector<Token> lex_template(std::string_view source);

}  // namespace llmkit::tokenizer::jinja

// The template parser (internal to jinja_parser*.cc): statements in jinja_parser.cc, expressions
// in jinja_parser_expr.cc. See jinja_ast.h for the tree it builds and the public entry point.
#pragma once

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/jinja_ast.h"
#include "llmkit/tokenizer/jinja_lexer.h"

namespace llmkit::tokenizer::jinja {

class Parser {
 public:
  Parser(std::vector<Token> tokens, int max_depth) : toks_(std::move(tokens)), max_depth_(max_depth) {}

  std::unique_ptr<Program> run() {
    auto prog = std::make_unique<Program>();
    std::string stop;
    prog->body = parse_body({}, &stop);
    return prog;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return toks_[pos_]; }
  const Token& peek(size_t k = 1) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  void next() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  bool is_op(const char* op) const { return cur().type == TokenType::kOp && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == TokenType::kName && cur().text == n; }
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(ErrorCode::kInvalidArgument, str_cat("chat template syntax error at line ", cur().line, ": ", msg),
                "fix the template (jinja2 syntax, as transformers renders it)");
  }
  std::string describe() const {
    switch (cur().type) {
      case TokenType::kEof: return "end of template";
      case TokenType::kBlockEnd: return "'%}'";
      case TokenType::kVarEnd: return "'}}'";
      case TokenType::kText: return "text";
      case TokenType::kString: return "a string";
      default: return "'" + cur().text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(str_cat("expected '", op, "', got ", describe()));
    next();
  }
  std::string expect_name() {
    if (cur().type != TokenType::kName) fail(str_cat("expected a name, got ", describe()));
    std::string n = cur().text;
    next();
    return n;
  }
  void expect_block_end() {
    if (cur().type != TokenType::kBlockEnd) fail(str_cat("expected '%}', got ", describe()));
    next();
  }

  struct DepthGuard {
    DepthGuard(Parser* p) : p_(p) {
      if (++p_->depth_ > p_->max_depth_)
        p_->fail(str_cat("template nests deeper than the recursion depth cap (max_depth=", p_->max_depth_, ")"));
    }
    ~DepthGuard() { --p_->depth_; }
    Parser* p_;
  };

  ExprPtr make(ExprKind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }

  // statements (jinja_parser.cc)
  // Parses until a block tag whose keyword is in `stops` (returned in *stop, positioned after it).
  StmtList parse_body(const std::set<std::string>& stops, std::string* stop);
  StmtPtr parse_statement();
  // (a, b=default, ...) for macros and call blocks.
  void parse_params(Stmt* s);

  // expressions (jinja_parser_expr.cc)
  // `a, b` without parentheses is a tuple where jinja2 calls parse_tuple (set values, {{ }}).
  ExprPtr parse_tuple_or_expression();
  ExprPtr parse_expression(bool allow_cond = true);
  ExprPtr binary(const std::string& op, ExprPtr a, ExprPtr b, int line);
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_primary();
  ExprPtr literal(Value v, int line);
  ExprPtr parse_postfix(ExprPtr e);
  ExprPtr parse_subscript(ExprPtr obj, int line);
  // Call arguments into e->args (after any existing ones) and e->kwargs.
  void parse_args(Expr* e);
  ExprPtr parse_call(ExprPtr callee);
  // `| name(args)` chain; obj may be null for {% filter %} blocks and {% set x | f %}.
  ExprPtr parse_filter_chain(ExprPtr obj);
  ExprPtr parse_filters(ExprPtr e);

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  int max_depth_;
};

}  // namespace llmkit::tokenizer::jinja

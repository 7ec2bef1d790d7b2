// Recursive-descent parser for the chat-template Jinja subset. Expression precedence follows
// jinja2's Parser (lowest first): conditional `a if c else b`, or, and, not, comparisons (chained,
// with in / not in), + -, ~, * / // %, **, unary - +, then postfix (.attr, [item], [a:b:c],
// calls) with filters `|f` and tests `is [not] t` binding tighter than any binary operator.
#include <set>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/jinja_ast.h"
#include "llmkit/tokenizer/jinja_lexer.h"

namespace llmkit::tokenizer::jinja {

namespace {

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

  // ---- statements ----
  // Parses until a block tag whose keyword is in `stops` (returned in *stop, positioned after it).
  StmtList parse_body(const std::set<std::string>& stops, std::string* stop) {
    DepthGuard guard(this);
    StmtList body;
    while (true) {
      const Token& t = cur();
      if (t.type == TokenType::kEof) {
        if (!stops.empty()) {
          std::string want = *stops.begin();
          for (const std::string& st : stops)
            if (st.rfind("end", 0) == 0) want = st;
          fail(str_cat("unexpected end of template: missing {% ", want, " %}"));
        }
        return body;
      }
      if (t.type == TokenType::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kText;
        s->line = t.line;
        s->text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.type == TokenType::kVarBegin) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kOutput;
        s->line = t.line;
        next();
        s->expr = parse_tuple_or_expression();
        if (cur().type != TokenType::kVarEnd) fail(str_cat("expected '}}', got ", describe()));
        next();
        body.push_back(std::move(s));
      } else if (t.type == TokenType::kBlockBegin) {
        next();
        if (cur().type != TokenType::kName) fail(str_cat("expected a statement keyword, got ", describe()));
        std::string kw = cur().text;
        if (stops.count(kw)) {
          *stop = kw;
          next();
          return body;
        }
        body.push_back(parse_statement());
      } else {
        fail(str_cat("unexpected ", describe()));
      }
    }
  }

  StmtPtr parse_statement() {
    auto s = std::make_unique<Stmt>();
    s->line = cur().line;
    std::string kw = expect_name();
    std::string stop;
    if (kw == "if") {
      s->kind = StmtKind::kIf;
      s->expr = parse_expression();
      expect_block_end();
      s->body = parse_body({"elif", "else", "endif"}, &stop);
      Stmt* tail = s.get();
      while (stop == "elif") {
        auto e = std::make_unique<Stmt>();
        e->kind = StmtKind::kIf;
        e->line = cur().line;
        e->expr = parse_expression();
        expect_block_end();
        e->body = parse_body({"elif", "else", "endif"}, &stop);
        Stmt* raw = e.get();
        tail->orelse.push_back(std::move(e));
        tail = raw;
      }
      if (stop == "else") {
        expect_block_end();
        tail->orelse = parse_body({"endif"}, &stop);
      }
      expect_block_end();
    } else if (kw == "for") {
      s->kind = StmtKind::kFor;
      s->targets.push_back(expect_name());
      while (is_op(",")) {
        next();
        s->targets.push_back(expect_name());
      }
      if (!is_name("in")) fail(str_cat("expected 'in' in for loop, got ", describe()));
      next();
      s->expr = parse_expression(/*allow_cond=*/false);
      if (is_name("if")) {
        next();
        s->cond = parse_expression();
      }
      if (is_name("recursive")) fail("recursive for loops are not supported");
      expect_block_end();
      s->body = parse_body({"else", "endfor"}, &stop);
      if (stop == "else") {
        expect_block_end();
        s->orelse = parse_body({"endfor"}, &stop);
      }
      expect_block_end();
    } else if (kw == "set") {
      s->targets.push_back(expect_name());
      if (is_op(".")) {
        next();
        s->attr = expect_name();
      } else {
        while (is_op(",")) {
          next();
          s->targets.push_back(expect_name());
        }
      }
      if (is_op("=")) {
        next();
        s->kind = StmtKind::kSet;
        s->expr = parse_tuple_or_expression();
        expect_block_end();
      } else {
        if (!s->attr.empty() || s->targets.size() != 1) fail("block set needs a single name");
        s->kind = StmtKind::kSetBlock;
        if (is_op("|")) s->expr = parse_filters(nullptr);
        expect_block_end();
        s->body = parse_body({"endset"}, &stop);
        expect_block_end();
      }
    } else if (kw == "macro") {
      s->kind = StmtKind::kMacro;
      s->name = expect_name();
      parse_params(s.get());
      expect_block_end();
      s->body = parse_body({"endmacro"}, &stop);
      if (cur().type == TokenType::kName) next();  // {% endmacro name %}
      expect_block_end();
    } else if (kw == "call") {
      s->kind = StmtKind::kCallBlock;
      if (is_op("(")) parse_params(s.get());
      s->expr = parse_expression();
      if (s->expr->kind != ExprKind::kCall) fail("{% call %} needs a macro call");
      expect_block_end();
      s->body = parse_body({"endcall"}, &stop);
      expect_block_end();
    } else if (kw == "filter") {
      s->kind = StmtKind::kFilterBlock;
      s->expr = parse_filter_chain(nullptr);
      expect_block_end();
      s->body = parse_body({"endfilter"}, &stop);
      expect_block_end();
    } else if (kw == "break" || kw == "continue") {
      s->kind = kw == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      expect_block_end();
    } else if (kw == "generation") {  // transformers' AssistantTracker extension: renders its body
      s->kind = StmtKind::kScope;
      expect_block_end();
      s->body = parse_body({"endgeneration"}, &stop);
      expect_block_end();
    } else if (kw == "include" || kw == "import" || kw == "from" || kw == "extends" || kw == "block" ||
               kw == "raw" || kw == "with" || kw == "autoescape") {
      throw Error(ErrorCode::kUnsupported,
                  str_cat("chat template line ", s->line, ": {% ", kw, " %} is not supported in chat templates"));
    } else {
      fail(str_cat("unknown or misplaced statement '", kw, "'"));
    }
    return s;
  }

  // (a, b=default, ...) for macros and call blocks.
  void parse_params(Stmt* s) {
    expect_op("(");
    while (!is_op(")")) {
      s->params.push_back(expect_name());
      if (is_op("=")) {
        next();
        s->defaults.push_back(parse_expression());
      } else {
        s->defaults.push_back(nullptr);
      }
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
  }

  // ---- expressions ----
  // `a, b` without parentheses is a tuple where jinja2 calls parse_tuple (set values, {{ }}).
  ExprPtr parse_tuple_or_expression() {
    ExprPtr e = parse_expression();
    if (!is_op(",")) return e;
    auto tup = make(ExprKind::kTuple, e->line);
    tup->args.push_back(std::move(e));
    while (is_op(",")) {
      next();
      if (cur().type == TokenType::kBlockEnd || cur().type == TokenType::kVarEnd) break;
      tup->args.push_back(parse_expression());
    }
    return tup;
  }

  ExprPtr parse_expression(bool allow_cond = true) {
    DepthGuard guard(this);
    ExprPtr e = parse_or();
    while (allow_cond && is_name("if")) {
      int line = cur().line;
      next();
      auto c = make(ExprKind::kCond, line);
      c->args.push_back(std::move(e));
      c->args.push_back(parse_or());
      if (is_name("else")) {
        next();
        c->args.push_back(parse_expression());
      } else {
        c->args.push_back(nullptr);
      }
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr a, ExprPtr b, int line) {
    auto e = make(ExprKind::kBinary, line);
    e->name = op;
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      int line = cur().line;
      next();
      e = binary("or", std::move(e), parse_and(), line);
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      int line = cur().line;
      next();
      e = binary("and", std::move(e), parse_not(), line);
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(this);
      auto e = make(ExprKind::kUnary, cur().line);
      next();
      e->name = "not";
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == TokenType::kOp &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" ||
           cur().text == ">" || cur().text == ">=")) {
        op = cur().text;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().type == TokenType::kName && peek().text == "in") {
        op = "notin";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(ExprKind::kCompare, first->line);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().text;
      int line = cur().line;
      next();
      e = binary(op, std::move(e), parse_concat(), line);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      int line = cur().line;
      next();
      e = binary("~", std::move(e), parse_math2(), line);
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().text;
      int line = cur().line;
      next();
      e = binary(op, std::move(e), parse_pow(), line);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      int line = cur().line;
      next();
      e = binary("**", std::move(e), parse_unary(true), line);
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = make(ExprKind::kUnary, cur().line);
      e->name = cur().text;
      next();
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filters(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    int line = t.line;
    if (t.type == TokenType::kName) {
      std::string n = t.text;
      next();
      if (n == "true" || n == "True") return literal(Value::boolean(true), line);
      if (n == "false" || n == "False") return literal(Value::boolean(false), line);
      if (n == "none" || n == "None") return literal(Value::none(), line);
      auto e = make(ExprKind::kName, line);
      e->name = n;
      return e;
    }
    if (t.type == TokenType::kString) {
      std::string s = t.text;
      next();
      while (cur().type == TokenType::kString) {  // adjacent literals concatenate
        s += cur().text;
        next();
      }
      return literal(Value::string(std::move(s)), line);
    }
    if (t.type == TokenType::kInt) {
      int64_t v = t.ival;
      next();
      return literal(Value::integer(v), line);
    }
    if (t.type == TokenType::kFloat) {
      double v = t.fval;
      next();
      return literal(Value::number(v), line);
    }
    if (is_op("(")) {
      next();
      if (is_op(")")) {
        next();
        return make(ExprKind::kTuple, line);
      }
      ExprPtr e = parse_expression();
      if (is_op(",")) {
        auto tup = make(ExprKind::kTuple, line);
        tup->args.push_back(std::move(e));
        while (is_op(",")) {
          next();
          if (is_op(")")) break;
          tup->args.push_back(parse_expression());
        }
        e = std::move(tup);
      }
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      next();
      auto e = make(ExprKind::kList, line);
      while (!is_op("]")) {
        e->args.push_back(parse_expression());
        if (!is_op(",")) break;
        next();
      }
      expect_op("]");
      return e;
    }
    if (is_op("{")) {
      next();
      auto e = make(ExprKind::kDict, line);
      while (!is_op("}")) {
        e->args.push_back(parse_expression());
        expect_op(":");
        e->args.push_back(parse_expression());
        if (!is_op(",")) break;
        next();
      }
      expect_op("}");
      return e;
    }
    fail(str_cat("unexpected ", describe(), " in expression"));
  }

  ExprPtr literal(Value v, int line) {
    auto e = make(ExprKind::kLiteral, line);
    e->literal = std::move(v);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      int line = cur().line;
      if (is_op(".")) {
        next();
        if (cur().type == TokenType::kInt) {  // x.0 is x[0]
          auto item = make(ExprKind::kItem, line);
          item->args.push_back(std::move(e));
          item->args.push_back(literal(Value::integer(cur().ival), line));
          next();
          e = std::move(item);
        } else {
          auto a = make(ExprKind::kAttr, line);
          a->name = expect_name();
          a->args.push_back(std::move(e));
          e = std::move(a);
        }
      } else if (is_op("[")) {
        next();
        e = parse_subscript(std::move(e), line);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, int line) {
    ExprPtr parts[3];
    bool is_slice = false;
    for (int i = 0; i < 3; ++i) {
      if (!is_op(":") && !is_op("]")) parts[i] = parse_expression();
      if (i < 2 && is_op(":")) {
        is_slice = true;
        next();
      } else {
        break;
      }
    }
    expect_op("]");
    auto e = make(is_slice ? ExprKind::kSlice : ExprKind::kItem, line);
    e->args.push_back(std::move(obj));
    if (!is_slice) {
      if (!parts[0]) fail("empty subscript []");
      e->args.push_back(std::move(parts[0]));
    } else {
      for (auto& p : parts) e->args.push_back(std::move(p));
    }
    return e;
  }

  // Call arguments into e->args (after any existing ones) and e->kwargs.
  void parse_args(Expr* e) {
    expect_op("(");
    while (!is_op(")")) {
      if (cur().type == TokenType::kName && peek().type == TokenType::kOp && peek().text == "=") {
        std::string key = cur().text;
        next();
        next();
        e->kwargs.emplace_back(key, parse_expression());
      } else {
        if (!e->kwargs.empty()) fail("positional argument after keyword argument");
        e->args.push_back(parse_expression());
      }
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = make(ExprKind::kCall, cur().line);
    e->args.push_back(std::move(callee));
    parse_args(e.get());
    return e;
  }

  // `| name(args)` chain; obj may be null for {% filter %} blocks and {% set x | f %}.
  ExprPtr parse_filter_chain(ExprPtr obj) {
    ExprPtr e = std::move(obj);
    bool first = true;
    while (first || is_op("|")) {
      if (!first || is_op("|")) next();
      first = false;
      auto f = make(ExprKind::kFilter, cur().line);
      f->name = expect_name();
      while (is_op(".")) {
        next();
        f->name += "." + expect_name();
      }
      f->args.push_back(std::move(e));
      if (is_op("(")) parse_args(f.get());
      e = std::move(f);
    }
    return e;
  }

  ExprPtr parse_filters(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        next();
        auto f = make(ExprKind::kFilter, cur().line);
        f->name = expect_name();
        f->args.push_back(std::move(e));
        if (is_op("(")) parse_args(f.get());
        e = std::move(f);
      } else if (is_name("is")) {
        auto t = make(ExprKind::kTest, cur().line);
        next();
        if (is_name("not")) {
          t->negate = true;
          next();
        }
        t->name = expect_name();
        t->args.push_back(std::move(e));
        if (is_op("(")) {
          parse_args(t.get());
        } else if ((cur().type == TokenType::kName || cur().type == TokenType::kString ||
                    cur().type == TokenType::kInt || cur().type == TokenType::kFloat || is_op("[") ||
                    is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and") && !is_name("if")) {
          if (is_name("is")) fail("you cannot chain multiple tests with is");
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  int max_depth_;
};

}  // namespace

std::unique_ptr<Program> parse_template(std::string_view source, int max_depth) {
  return Parser(lex_template(source), max_depth).run();
}

}  // namespace llmkit::tokenizer::jinja

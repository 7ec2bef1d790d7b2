// Expression parsing. Precedence follows jinja2's Parser (lowest first): conditional
// `a if c else b`, or, and, not, comparisons (chained, with in / not in), + -, ~, * / // %, **,
// unary - +, then postfix (.attr, [item], [a:b:c], calls) with filters `|f` and tests
// `is [not] t` binding tighter than any binary operator.
#include "llmkit/tokenizer/jinja_parser.h"

namespace llmkit::tokenizer::jinja {

// `a, b` without parentheses is a tuple where jinja2 calls parse_tuple (set values, {{ }}).
ExprPtr Parser::parse_tuple_or_expression() {
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

ExprPtr Parser::parse_expression(bool allow_cond) {
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

ExprPtr Parser::binary(const std::string& op, ExprPtr a, ExprPtr b, int line) {
  auto e = make(ExprKind::kBinary, line);
  e->name = op;
  e->args.push_back(std::move(a));
  e->args.push_back(std::move(b));
  return e;
}

ExprPtr Parser::parse_or() {
  ExprPtr e = parse_and();
  while (is_name("or")) {
    int line = cur().line;
    next();
    e = binary("or", std::move(e), parse_and(), line);
  }
  return e;
}

ExprPtr Parser::parse_and() {
  ExprPtr e = parse_not();
  while (is_name("and")) {
    int line = cur().line;
    next();
    e = binary("and", std::move(e), parse_not(), line);
  }
  return e;
}

ExprPtr Parser::parse_not() {
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

ExprPtr Parser::parse_compare() {
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

ExprPtr Parser::parse_math1() {
  ExprPtr e = parse_concat();
  while (is_op("+") || is_op("-")) {
    std::string op = cur().text;
    int line = cur().line;
    next();
    e = binary(op, std::move(e), parse_concat(), line);
  }
  return e;
}

ExprPtr Parser::parse_concat() {
  ExprPtr e = parse_math2();
  while (is_op("~")) {
    int line = cur().line;
    next();
    e = binary("~", std::move(e), parse_math2(), line);
  }
  return e;
}

ExprPtr Parser::parse_math2() {
  ExprPtr e = parse_pow();
  while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
    std::string op = cur().text;
    int line = cur().line;
    next();
    e = binary(op, std::move(e), parse_pow(), line);
  }
  return e;
}

ExprPtr Parser::parse_pow() {
  ExprPtr e = parse_unary(true);
  while (is_op("**")) {
    int line = cur().line;
    next();
    e = binary("**", std::move(e), parse_unary(true), line);
  }
  return e;
}

ExprPtr Parser::parse_unary(bool with_filter) {
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

ExprPtr Parser::parse_primary() {
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

ExprPtr Parser::literal(Value v, int line) {
  auto e = make(ExprKind::kLiteral, line);
  e->literal = std::move(v);
  return e;
}

ExprPtr Parser::parse_postfix(ExprPtr e) {
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

ExprPtr Parser::parse_subscript(ExprPtr obj, int line) {
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
void Parser::parse_args(Expr* e) {
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

ExprPtr Parser::parse_call(ExprPtr callee) {
  auto e = make(ExprKind::kCall, cur().line);
  e->args.push_back(std::move(callee));
  parse_args(e.get());
  return e;
}

// `| name(args)` chain; obj may be null for {% filter %} blocks and {% set x | f %}.
ExprPtr Parser::parse_filter_chain(ExprPtr obj) {
  ExprPtr e = std::move(obj);
  bool first = true;
  while (first || is_op("|")) {
    if (!first || is_op("|")) next();
    first = false;
    auto f = make(ExprKind::kFilter, cur().line);
    f->name = expect_name();
    while (is_op(".")) {
      next();
      f->name += '.';  // (not "." + name: GCC 12 -Wrestrict false positive on operator+)
      f->name += expect_name();
    }
    f->args.push_back(std::move(e));
    if (is_op("(")) parse_args(f.get());
    e = std::move(f);
  }
  return e;
}

ExprPtr Parser::parse_filters(ExprPtr e) {
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

}  // namespace llmkit::tokenizer::jinja

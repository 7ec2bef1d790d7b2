// Recursive-descent parser for the chat-template Jinja subset: statements ({% if %}, {% for %},
// {% set %}, {% macro %}, {% call %}, {% filter %}, loop controls) and the entry point. Expressions
// are in jinja_parser_expr.cc.
#include "llmkit/tokenizer/jinja_parser.h"

namespace llmkit::tokenizer::jinja {

// Parses until a block tag whose keyword is in `stops` (returned in *stop, positioned after it).
StmtList Parser::parse_body(const std::set<std::string>& stops, std::string* stop) {
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

StmtPtr Parser::parse_statement() {
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
void Parser::parse_params(Stmt* s) {
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

std::unique_ptr<Program> parse_template(std::string_view source, int max_depth) {
  return Parser(lex_template(source), max_depth).run();
}

}  // namespace llmkit::tokenizer::jinja

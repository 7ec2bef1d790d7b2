// Syntax tree of a parsed chat template, and the parser that builds it from jinja_lexer tokens.
//
// One node struct per category (Expr, Stmt) with a kind tag keeps the tree small to read; each
// field's comment says which kinds use it. The tree is immutable once parsed and owned by
// jinja::Program; values (macros, callers) point into it, so a Program must outlive its renders.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llmkit/tokenizer/jinja_value.h"

namespace llmkit::tokenizer::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;
struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using StmtList = std::vector<StmtPtr>;

enum class ExprKind {
  kLiteral,  // literal
  kName,     // name
  kList,     // args = elements
  kTuple,    // args = elements (a tuple is a list in this value model)
  kDict,     // args = k0, v0, k1, v1, ...
  kAttr,     // args[0].name
  kItem,     // args[0][args[1]]
  kSlice,    // args[0][args[1]:args[2]:args[3]], missing parts are null
  kCall,     // args[0](args[1..], kwargs)
  kFilter,   // args[0] | name(args[1..], kwargs)
  kTest,     // args[0] is [not] name(args[1..]); negate
  kUnary,    // op args[0]: "-", "+", "not"
  kBinary,   // args[0] op args[1]: + - * / // % ** ~ and or
  kCompare,  // args[0] ops[0] args[1] ops[1] args[2] ...: == != < <= > >= in notin
  kCond,     // args[0] if args[1] else args[2] (args[2] may be null)
};

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  int line = 0;
  Value literal;
  std::string name;  // kName, kAttr, kFilter, kTest, and the operator of kUnary / kBinary
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // kCompare
  bool negate = false;           // kTest
};

enum class StmtKind {
  kText,       // text
  kOutput,     // {{ expr }}
  kIf,         // if expr: body, else: orelse (elif is a nested kIf in orelse)
  kFor,        // for targets in expr [if cond]: body, else: orelse
  kSet,        // set targets = expr, or set targets[0].attr = expr
  kSetBlock,   // {% set targets[0] %}body{% endset %}, with optional filter (expr = filter chain)
  kMacro,      // macro name(params = defaults): body
  kCallBlock,  // {% call(params) expr %}body{% endcall %}: expr is the macro call
  kFilterBlock,// {% filter f %}body{% endfilter %}: expr is a kFilter whose args[0] is null
  kBreak,
  kContinue,
  kScope,      // body with no scope of its own ({% generation %}): just renders body
};

struct Stmt {
  StmtKind kind = StmtKind::kText;
  int line = 0;
  std::string text;               // kText
  ExprPtr expr;                   // kOutput, kIf, kFor (iterable), kSet, kCallBlock, kFilterBlock
  ExprPtr cond;                   // kFor: the `if` filter
  std::vector<std::string> targets;  // kFor, kSet, kSetBlock
  std::string attr;               // kSet: namespace attribute target
  std::string name;               // kMacro
  std::vector<std::string> params;   // kMacro, kCallBlock
  std::vector<ExprPtr> defaults;     // kMacro, kCallBlock: one per param, null when none
  StmtList body;
  StmtList orelse;
};

// A parsed template. Throws llmkit::Error (kInvalidArgument, with the line) on syntax errors and
// when nesting exceeds max_depth (so deep nesting cannot exhaust the stack).
struct Program {
  StmtList body;
};
std::unique_ptr<Program> parse_template(std::string_view source, int max_depth);

}  // namespace llmkit::tokenizer::jinja
